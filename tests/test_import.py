"""`audiotok import`: local collections in every layout, every audio format, their own class lists,
and the split protocols published results use (folds, unseen groups, val by group)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from audiotok_cli.class_lists import audioset_classes, is_audioset
from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store, split_code
from collections_kit import RATE, esc50, folders, mp3_in_wav, tone, urbansound8k, write


def _store() -> Store:
    return Store.open(load_settings({}).store_path)


def _rows(store: Store, split: str) -> np.ndarray:
    return store.splits() == split_code(split)


def test_esc50_imports_its_folds_and_groups_and_the_test_fold_is_that_fold(cli, tmp_path):
    root = esc50(tmp_path / "ESC-50-master")
    result = cli("import", str(root), "--name", "esc50")
    assert result.exit_code == 0, result.output
    assert "esc50 (esc50, " in result.stdout and "30 clips added, 0 already in the store" in result.stdout
    assert "its own 3 classes; folds 1, 2, 3, 4, 5; 15 groups" in result.stdout
    store = _store()
    assert (
        store.classes.mids == ("crackling_fire", "dog", "rain")
        and store.labels().sum(axis=1).tolist() == [1] * 30
    )
    assert all(ytid.startswith("esc50/audio/") for ytid in store.ytids())
    assert sorted(set(store.folds().tolist())) == [1, 2, 3, 4, 5]

    result = cli("split", "--test-fold", "2", "--val-ratio", "0.3")
    assert result.exit_code == 0, result.output
    assert "by group" in result.stdout and "test: fold 2" in result.stdout
    store = _store()
    assert (_rows(store, "test") == (store.folds() == 2)).all()
    groups = store.groups()
    assert _rows(store, "val").any()
    assert not set(groups[_rows(store, "val")]) & set(groups[_rows(store, "train")])

    again = cli("import", str(root), "--name", "esc50")
    assert again.exit_code == 0 and "0 clips added, 30 already in the store" in again.stdout


def test_urbansound8k_holds_out_named_recordings_and_refuses_unknown_ones(cli, tmp_path):
    root = urbansound8k(tmp_path / "UrbanSound8K")
    assert cli("import", str(root)).exit_code == 0
    store = _store()
    assert store.collections["UrbanSound8K"].layout == "urbansound8k"
    assert "UrbanSound8K/audio/fold1/1000-0-0-0.wav" in store.row_of

    result = cli("split", "--test-group", "1000,3010")
    assert result.exit_code == 0, result.output
    store = _store()
    assert (_rows(store, "test") == np.isin(store.groups(), ["1000", "3010"])).all()
    assert _rows(store, "test").sum() == 4

    refused = cli("split", "--test-group", "nope")
    assert refused.exit_code == 3
    assert "no clip has group nope; the store's groups: 1000, 1010, 2000" in refused.stderr


def test_a_manifest_of_every_format_joins_audioset_classes_and_skips_what_cannot_be_read(cli, tmp_path):
    root = tmp_path / "mine"
    write(root / "u8.wav", tone(0, seconds=0.5, rate=8000), 8000, subtype="PCM_U8")
    write(root / "alaw.wav", tone(1, seconds=0.5, rate=8000), 8000, subtype="ALAW")
    write(root / "stereo.flac", tone(2, rate=48000, channels=2), 48000)
    write(root / "sub/c.ogg", tone(0), RATE)
    write(root / "d.mp3", tone(1), RATE, format="MP3")
    mp3_in_wav(root / "mp3.wav", tone(2))
    write(root / "long.wav", tone(1, seconds=25.0), RATE)
    (root / "broken.wav").write_bytes(b"RIFF not audio at all")
    manifest = tmp_path / "labels.csv"
    rows = [
        ("u8.wav", "Dog"),
        ("alaw.wav", "/m/0bt9lr;Bark"),  # a MID and a display name of AudioSet
        ("stereo.flac", "dog"),  # case aside
        ("sub/c.ogg", "Bark"),
        ("d.mp3", "Dog"),
        ("mp3.wav", "Bark"),
        ("long.wav", "Dog"),
        ("broken.wav", "Dog"),
        ("d.mp3", "Dog"),  # listed twice with the same label: one clip
    ]
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "labels"), *rows])

    result = cli("import", str(root), "--manifest", str(manifest))
    assert result.exit_code == 0, result.output
    assert (
        "7 clips added" in result.stdout
        and "1 unreadable file skipped; AudioSet's 527 classes" in result.stdout
    )
    assert "warning: 1 file(s) of" in result.stderr and "broken.wav" in result.stderr
    assert "WARNING:" not in result.stderr  # the level once, not logging's own LEVEL:name: prefix too
    store = _store()
    assert is_audioset(store.classes)
    dog, bark = (audioset_classes().mid_to_index[mid] for mid in ("/m/0bt9lr", "/m/05tny_"))
    labels = store.labels()
    assert labels[:, dog].sum() == 5 and labels[:, bark].sum() == 3
    assert labels[store.row_of["mine/alaw.wav"], [dog, bark]].all() and labels.sum() == 8
    assert store.collections["mine"].unreadable == {
        "broken.wav": store.collections["mine"].unreadable["broken.wav"]
    }

    assert cli("split").exit_code == 0
    featurized = cli("featurize", "--clip-seconds", "10")
    assert featurized.exit_code == 0, featurized.output
    features = _store().features()
    assert (features.all_lengths() > 0).all()
    assert features.all_lengths()[store.row_of["mine/long.wav"]] == features.record.max_frames

    write(root / "new.wav", tone(0), RATE)
    with manifest.open("a", newline="") as handle:
        csv.writer(handle).writerow(("new.wav", "Dog"))
    again = cli("import", str(root), "--manifest", str(manifest))
    assert again.exit_code == 0 and "1 clip added, 7 already in the store" in again.stdout


@pytest.fixture
def own_classes(cli, tmp_path) -> Path:
    """A store of class folders (3 classes of their own), split and featurized."""
    root = folders(tmp_path / "instruments")
    assert cli("import", str(root)).exit_code == 0
    assert cli("split", "--val-ratio", "0.3", "--test-ratio", "0.3").exit_code == 0
    assert cli("featurize", "--clip-seconds", "1").exit_code == 0
    return root


def test_models_train_and_score_on_a_collections_own_classes(cli, own_classes, tmp_path):
    result = cli("train", "--model", "baseline", "--epochs", "2")
    assert result.exit_code == 0, result.output
    run = load_settings({}).runs_dir / "baseline-logmel"
    assert (run / "classes.csv").read_text().splitlines() == [
        "index,mid,display_name",
        "0,bell,bell",
        "1,kalimba,kalimba",
        "2,ocarina,ocarina",
    ]
    evaluated = cli("eval", "--model", "baseline")
    assert evaluated.exit_code == 0, evaluated.output
    assert "test (30% of imported clips, stratified by class)" in evaluated.stdout
    assert "official eval" not in evaluated.stdout
    assert "accuracy" in evaluated.stdout
    predicted = cli("predict", "baseline-logmel", str(own_classes / "kalimba" / "take0.wav"), "--top", "3")
    assert predicted.exit_code == 0 and {"bell", "kalimba", "ocarina"} <= set(predicted.stdout.split())
    store = _store()  # predict says when a file is one the run trained (or chose its epoch) on
    by_split = {split: store.ytids()[store.splits() == split_code(split)][0] for split in ("train", "test")}
    for split, clip in by_split.items():
        file = own_classes / clip.partition("/")[2]
        said = cli("predict", "baseline-logmel", str(file), "--json")
        assert json.loads(said.stdout)["files"][0]["split"] == split
    trained_on = cli("predict", "baseline-logmel", str(own_classes / by_split["train"].partition("/")[2]))
    assert "is in the run's train split: its score is not a held-out one" in " ".join(
        trained_on.stderr.split()
    )

    assert cli("vocab", "--k", "8").exit_code == 0 and cli("tokenize").exit_code == 0
    tokens = cli("train", "--model", "simple", "--epochs", "2")
    assert tokens.exit_code == 0, tokens.output
    assert cli("eval", "--model", "simple").exit_code == 0

    other = folders(tmp_path / "four", classes=("a", "b", "c", "d"), per_class=3)
    other_store = tmp_path / "other.zarr"
    assert cli("import", str(other), "--store", str(other_store)).exit_code == 0
    assert cli("split", "--store", str(other_store)).exit_code == 0
    assert cli("featurize", "--store", str(other_store), "--clip-seconds", "1").exit_code == 0
    refused = cli("eval", "--run", "baseline-logmel", "--store", str(other_store))
    assert refused.exit_code == 6
    assert "was trained on 3 classes (bell, kalimba, ocarina), the store" in refused.stderr
    assert "holds 4 (a, b, c, ...)" in refused.stderr


def test_labels_outside_the_stores_class_list_are_refused_before_anything_is_written(
    cli, own_classes, tmp_path, small_mirrors
):
    before = _store().n_clips
    extra = folders(tmp_path / "extra", classes=("bell", "kazoo"), per_class=2)
    refused = cli("import", str(extra))
    assert refused.exit_code == 6
    assert "labels clips with its own 3 classes; 1 labels of this collection are not among them (kazoo)" in (
        refused.stderr
    )
    assert "import it into a fresh store with --store" in refused.stderr
    assert _store().n_clips == before and "extra" not in _store().collections
    info = cli("info")
    assert info.exit_code == 0 and "classes: its own 3 (bell, kalimba, ocarina)" in info.stdout
    assert f"collection instruments (folders): {own_classes}" in info.stdout

    expanded = cli("expand", "--mirror-dir", str(small_mirrors["parquet"].mirror_dir))
    assert expanded.exit_code == 6
    assert "holds a collection with its own 3 classes; expand AudioSet into another store" in expanded.stderr

    unknown = cli("featurize", "--source", "bal-train")
    assert unknown.exit_code == 3
    assert (
        "unknown source 'bal-train';" in unknown.stderr
        and "holds bal_train, unbal_train, eval, instruments" in (unknown.stderr)
    )


def test_bad_collections_are_one_line_naming_the_file(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("import", str(empty))
    assert result.exit_code == 4 and "no audio files in class folders under" in result.stderr

    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\nx.wav,dog\n")
    result = cli("import", str(tmp_path), "--manifest", str(manifest))
    assert result.exit_code == 5
    assert f"{manifest} lacks the column(s) path, labels (it has file, label)" in result.stderr

    manifest.write_text("path,labels\n../outside.wav,dog\n")
    result = cli("import", str(tmp_path), "--manifest", str(manifest))
    assert result.exit_code == 5 and "line 2: path '../outside.wav' must be relative to" in result.stderr
    assert not (tmp_path / "data").exists() or not (tmp_path / "data" / "audiotok.zarr").exists()


def test_unseen_speakers_are_test_and_val_is_a_whole_speaker_of_the_others(cli, tmp_path):
    """The spoken-digit protocol: two speakers never heard in training are test; val is drawn by
    speaker, at least one whole speaker even where the ratio would draw none of four."""
    root = tmp_path / "digits"
    rows = [("path", "labels", "group")]
    for speaker in range(6):
        for digit in range(3):
            for take in range(3):
                name = f"{digit}_s{speaker}_{take}.wav"
                write(root / name, tone(digit, group=speaker, seconds=0.3))
                rows.append((name, f"digit{digit}", f"s{speaker}"))
    manifest = tmp_path / "digits.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert cli("import", str(root), "--manifest", str(manifest)).exit_code == 0

    result = cli("split", "--test-group", "s4", "--test-group", "s5", "--val-ratio", "0.05")
    assert result.exit_code == 0, result.output
    assert "by group" in result.stdout and "test: groups s4,s5" in result.stdout
    store = _store()
    groups = store.groups()
    assert set(groups[_rows(store, "test")]) == {"s4", "s5"}
    val, train = set(groups[_rows(store, "val")]), set(groups[_rows(store, "train")])
    assert len(val) == 1 and not val & train and len(train) == 3

    shared = cli("split", "--test-group", "s4,s5", "--val-ratio", "0.3", "--no-val-by-group")
    assert shared.exit_code == 0 and "by group" not in shared.stdout
    store = _store()
    assert set(store.groups()[_rows(store, "val")]) & set(store.groups()[_rows(store, "train")])


def test_a_collection_sorted_by_class_is_stored_with_its_classes_mixed_in_every_shard(cli, tmp_path):
    """The batch reader draws a batch from one shard: shards of one class would make one-class batches."""
    root = folders(tmp_path / "sorted", classes=("bell", "kalimba", "ocarina"), per_class=8)
    assert cli("import", str(root)).exit_code == 0
    labels = _store().labels().argmax(axis=1)
    assert sorted(labels.tolist()) == [0] * 8 + [1] * 8 + [2] * 8
    for shard in range(3):  # shards of 8 clips, as `featurize` would cut them with 8 clips a shard
        assert len(set(labels[8 * shard : 8 * shard + 8].tolist())) >= 2
