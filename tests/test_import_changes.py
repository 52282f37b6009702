"""A re-import says what changed on disk since the last one, as `git status` or `dvc status` do: files
gone, files changed (their clips' features and tokens made again), files new, and entries it
cannot read (a dangling git-annex symlink) counted and listed; a manifest giving one file two label
sets is refused naming both rows. Real files edited, deleted and replaced under a collection."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from audiotok_cli.settings import load_settings
from audiotok_cli.store import Pick, Store
from collections_kit import RATE, folders, tone, write


def _store() -> Store:
    return Store.open(load_settings().store_path)


def test_a_reimport_reports_files_gone_changed_and_new_and_their_stages_redo_the_changed(cli, tmp_path):
    root = folders(tmp_path / "instruments")
    assert cli("import", str(root)).exit_code == 0
    assert cli("split", "--val-ratio", "0.3", "--test-ratio", "0.3").exit_code == 0
    assert cli("featurize", "--clip-seconds", "1").exit_code == 0
    assert cli("vocab", "--k", "4").exit_code == 0
    assert cli("tokenize").exit_code == 0
    store = _store()
    replaced, kept = store.row_of["instruments/ocarina/take2.wav"], store.row_of["instruments/bell/take4.wav"]
    frames_before = store.features().data[:]
    tokens_before = store.tokens(Pick(k=4)).data[:]

    (root / "bell" / "take0.wav").unlink()
    (root / "kalimba" / "take1.wav").unlink()
    write(root / "ocarina" / "take2.wav", tone(0, group=5))  # another recording under the old name
    os.utime(root / "bell" / "take3.wav", ns=(1, 1))  # touched, the same bytes: not a change
    write(root / "bell" / "take9.wav", tone(0, group=9))
    (root / "bell" / "annexed.wav").symlink_to("../.git/annex/objects/Xk/SHA256E-s1--00.wav")

    again = cli("import", str(root))
    assert again.exit_code == 0, again.output
    said = " ".join(again.stdout.split())
    assert "1 clip added, 16 already in the store" in said and "1 unreadable file skipped" in said
    assert "unreadable bell/annexed.wav: a symlink to ../.git/annex/objects/Xk/SHA256E-s1--00.wav" in said
    assert "2 files imported before are gone" in said and "bell/take0.wav, kalimba/take1.wav" in said
    assert "1 file changed since imported: ocarina/take2.wav; 2 rows of their features and tokens" in said
    assert "run `audiotok featurize`, then `audiotok tokenize`" in said
    reported = json.loads(cli("import", str(root), "--json").stdout)
    assert reported["files_changed"] == [] and reported["files_gone"] == [
        "bell/take0.wav",
        "kalimba/take1.wav",
    ]
    assert list(reported["unreadable"]) == ["bell/annexed.wav"]

    info = " ".join(cli("info").stdout.split())
    assert "2 file(s) gone since imported" in info
    assert "features, vocabularies and tokens" in info  # not import's groups (speakers, recordings)
    store = _store()
    assert store.features().all_lengths()[replaced] < 0  # pending again: featurize redoes it
    assert store.tokens(Pick(k=4)).all_lengths()[replaced] < 0

    featurized = cli("featurize", "--clip-seconds", "1")
    assert featurized.exit_code == 0 and "2 clips featurized" in featurized.stdout, featurized.output
    assert cli("tokenize").exit_code == 0
    store = _store()
    frames_after, tokens_after = store.features().data[:], store.tokens(Pick(k=4)).data[:]
    assert not np.array_equal(frames_after[replaced], frames_before[replaced])  # the new recording's
    assert np.array_equal(frames_after[kept], frames_before[kept])  # the others untouched
    assert np.array_equal(
        np.delete(tokens_after, [replaced], 0)[: len(tokens_before) - 1],
        np.delete(tokens_before, [replaced], 0),
    )


def test_a_manifest_giving_one_file_two_label_sets_is_refused_naming_both_rows(cli, tmp_path):
    root = tmp_path / "mine"
    write(root / "a.wav", tone(0), RATE)
    write(root / "b.wav", tone(1), RATE)
    manifest = tmp_path / "labels.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [("path", "labels"), ("a.wav", "dog"), ("b.wav", "cat"), ("a.wav", "cat")]
        )
    result = cli("import", str(root), "--manifest", str(manifest))
    assert result.exit_code == 5
    line = result.stderr.strip().splitlines()[-1]
    assert (
        f"a.wav is listed twice with different labels: {manifest} line 2 (dog) and {manifest} line 4 (cat)"
        in line
    )
    assert not load_settings().store_path.exists()  # nothing written


def test_a_manifest_giving_one_file_two_folds_or_groups_is_refused_naming_both_rows(cli, tmp_path):
    root = tmp_path / "mine"
    write(root / "a.wav", tone(0), RATE)
    manifest = tmp_path / "labels.csv"
    for column, first, second in (("fold", "1", "2"), ("group", "ann", "bob")):
        with manifest.open("w", newline="") as handle:
            csv.writer(handle).writerows(
                [("path", "labels", column), ("a.wav", "dog", first), ("a.wav", "dog", second)]
            )
        result = cli("import", str(root), "--manifest", str(manifest))
        assert result.exit_code == 5
        said = " ".join(result.stderr.split())
        assert (
            f"a.wav is listed twice with different {column}s: {manifest} line 2 ({first}) and {manifest} "
            f"line 3 ({second}); keep the row that is right"
        ) in said
    assert not load_settings().store_path.exists()  # nothing written


def test_a_manifest_path_not_found_says_it_is_read_from_the_current_folder(cli, tmp_path):
    root = tmp_path / "mine"
    write(root / "a.wav", tone(0), RATE)
    (root / "labels.csv").write_text("path,labels\na.wav,dog\n")
    result = cli("import", str(root), "--manifest", "labels.csv")  # the test runs in tmp_path
    assert result.exit_code == 4
    assert " ".join(result.stderr.split()) == (
        f"error: no manifest {tmp_path / 'labels.csv'} (--manifest is a path from the current folder, not "
        f"the collection's root); did you mean {root / 'labels.csv'}?"
    )


def test_a_label_corrected_in_the_manifest_is_relabeled_on_reimport(cli, tmp_path):
    root = tmp_path / "mine"
    for name in ("a", "b", "c"):
        write(root / f"{name}.wav", tone(0), RATE)
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,labels\na.wav,dog\nb.wav,cat\nc.wav,dog\n")
    assert cli("import", str(root), "--manifest", str(manifest)).exit_code == 0
    manifest.write_text("path,labels\na.wav,dog\nb.wav,dog;cat\nc.wav,cat\n")  # two corrected
    again = cli("import", str(root), "--manifest", str(manifest), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["relabeled"] == ["b.wav", "c.wav"]
    store = Store.open(load_settings().store_path)
    names = [name.lower() for name in store.classes.names]  # dog and cat are AudioSet's Dog and Cat
    labels = {
        clip: sorted(names[c] for c in np.flatnonzero(row))
        for clip, row in zip(store.ytids(), store.labels(), strict=True)
    }
    assert labels == {"mine/a.wav": ["dog"], "mine/b.wav": ["cat", "dog"], "mine/c.wav": ["cat"]}
    shown = cli("import", str(root), "--manifest", str(manifest))  # nothing more to change
    assert shown.exit_code == 0 and "relabeled" not in shown.stdout


def test_a_fold_or_group_corrected_in_the_manifest_moves_the_clip_on_reimport(cli, tmp_path):
    root = tmp_path / "mine"
    for name, seed in (("a", 0), ("b", 1), ("c", 2), ("d", 2)):  # c and d: copies, one group joined
        write(root / f"{name}.wav", tone(seed), RATE)
    manifest = tmp_path / "labels.csv"

    def listing(rows: list[tuple[str, str, str]]) -> None:
        with manifest.open("w", newline="") as handle:
            csv.writer(handle).writerows([("path", "labels", "fold", "group"), *rows])

    listing([("a.wav", "dog", "1", "ann"), ("b.wav", "cat", "1", "bob"), ("c.wav", "dog", "2", "cy"),
             ("d.wav", "dog", "2", "")])  # fmt: skip
    assert cli("import", str(root), "--manifest", str(manifest)).exit_code == 0
    assert cli("import", str(root), "--manifest", str(manifest), "--json").stdout.count('"moved": []') == 1
    listing([("a.wav", "dog", "2", "ann"), ("b.wav", "cat", "1", "bea"), ("c.wav", "dog", "2", "cy"),
             ("d.wav", "dog", "2", "")])  # fmt: skip
    again = cli("import", str(root), "--manifest", str(manifest))
    assert again.exit_code == 0, again.output
    assert "2 clips moved to the fold or group the collection now gives them: a.wav" in " ".join(
        again.stdout.split()
    )
    store = _store()
    places = zip(store.folds().tolist(), store.groups().tolist(), strict=True)
    by_clip = dict(zip(store.ytids(), places, strict=True))
    assert by_clip == {
        "mine/a.wav": (2, "ann"),
        "mine/b.wav": (1, "bea"),
        "mine/c.wav": (2, "cy"),  # d, its copy, joined c's group: still as the metadata gives it
        "mine/d.wav": (2, "cy"),
    }
    moved = json.loads(cli("import", str(root), "--manifest", str(manifest), "--json").stdout)["moved"]
    assert moved == []
