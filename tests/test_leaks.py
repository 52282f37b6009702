"""Leaked copies: a published split (a hub upload's `train/` and `test/`, a fold) may put one copy of
a recording in train and another in test. `split` counts them whatever the protocol, says so and
records it; `eval`, `compare`, `runs` and `report` give every test figure twice, over all test clips
and over the leak-free ones; `split --drop-leaked` leaves them out instead."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from audiotok_cli.results.evaluate import read_predictions
from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store, split_code
from audiotok_cli.store.leaks import find_leaks
from collections_kit import tone, write

CLASSES = ("bell", "kalimba", "ocarina")
LEAK = "leaked copies"


def _store() -> Store:
    return Store.open(load_settings().store_path)


def _split_of(store: Store) -> dict[str, int]:
    return dict(zip(store.ytids().tolist(), store.splits().tolist(), strict=True))


def _metadata(folder: Path, rows: list[tuple[str, str]]) -> None:
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "label"])
        writer.writerows(rows)


def _published(root: Path) -> Path:
    """An audiofolder with a published train/test split that ignores copies: six takes a class in
    train, two in test, and in test a byte-identical copy of train's take0 of bell and of kalimba."""
    for folder, takes in (("train", range(6)), ("test", range(6, 8))):
        rows = []
        for label, name in enumerate(CLASSES):
            for take in takes:
                write(root / folder / name / f"take{take}.wav", tone(label, group=take))
                rows.append((f"{name}/take{take}.wav", name))
        if folder == "test":
            for name in CLASSES[:2]:
                shutil.copy(root / "train" / name / "take0.wav", root / "test" / name / "copy.wav")
                rows.append((f"{name}/copy.wav", name))
        _metadata(root / folder, rows)
    return root


def test_leaks_are_the_sets_of_copies_on_more_than_one_side():
    digests = np.array(["a", "a", "b", "b", "c", "c", "d", "", ""], dtype=object)
    train = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
    val = np.array([0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    test = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1], dtype=bool)
    leaks = find_leaks(digests, train, val, test)
    assert leaks.sets == 2  # a (train + val), b (train + test); c is all train, d alone, "" unknown
    assert leaks.test.tolist() == [False, False, False, True, False, False, False, False, False]
    assert leaks.val.tolist() == [False, True, False, False, False, False, False, False, False]
    unassigned = find_leaks(digests, train & False, val, test)  # a copy left out of every side
    assert unassigned.sets == 0 and not unassigned.test.any() and not unassigned.val.any()


def test_a_published_split_is_the_default_its_leaks_are_counted_and_drop_leaked_leaves_them(cli, tmp_path):
    root = _published(tmp_path / "instruments")
    assert cli("import", str(root)).exit_code == 0
    split = cli("split")
    assert split.exit_code == 0, split.output
    assert "test is the collection's published test split; --test-ratio R draws one instead" in split.stdout
    assert (
        "2 sets of copies (the same bytes) lie on more than one side of train/val/test: 2 of 8 test clips "
        "have a copy in train or val, 0 of" in split.stderr
    )
    assert "`split --drop-leaked` leaves them out" in split.stderr
    store = _store()
    record, split_of = store.split, _split_of(store)
    assert (record.test_sources, record.leaked_sets, record.leaked_test, record.dropped_leaked) == (
        ("test",),
        2,
        2,
        0,
    )
    tested = {clip for clip, code in split_of.items() if code == split_code("test")}
    assert tested == {clip for clip in split_of if clip.startswith("instruments/test/")}

    dropped = cli("split", "--drop-leaked")
    assert dropped.exit_code == 0 and LEAK not in dropped.stderr, dropped.output
    assert "2 clips with an identical copy on a training side left out of test and val" in dropped.stdout
    store = _store()
    split_of = _split_of(store)
    assert split_of["instruments/test/bell/copy.wav"] == split_of["instruments/test/kalimba/copy.wav"] == 0
    assert (store.split.leaked_sets, store.split.leaked_test, store.split.dropped_leaked) == (0, 0, 2)
    assert sum(code == split_code("test") for code in split_of.values()) == 6

    drawn = cli("split", "--test-ratio", "0.3")  # a fresh draw keeps each set of copies in one group
    assert drawn.exit_code == 0 and "of imported clips" in drawn.stdout, drawn.output
    assert LEAK not in drawn.stderr and "published" not in drawn.stdout
    assert _store().split.leaked_sets == 0


def test_copies_across_folds_and_a_val_drawn_clip_by_clip_are_counted(cli, tmp_path):
    """The fold protocol (ESC-50's, UrbanSound8K's) and `--no-val-by-group` leak too; the counts are
    those of the pairs of copies the test wrote, found by hand."""
    root = tmp_path / "calls"
    rows, pairs = [], []
    for label, name in enumerate(CLASSES):
        for take in range(8):
            path = write(root / f"{name}-{take}.wav", tone(label, group=take))
            rows.append([path.name, name, 1 + take % 4])
            if take < 4:  # a copy in the next fold
                copy = root / f"{name}-{take}-copy.wav"
                shutil.copy(path, copy)
                rows.append([copy.name, name, 1 + (take + 1) % 4])
                pairs.append((f"calls/{path.name}", f"calls/{copy.name}"))
    with (root / "manifest.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["path", "labels", "fold"], *rows])
    imported = cli("import", str(root), "--manifest", str(root / "manifest.csv"))
    assert imported.exit_code == 0, imported.output

    def by_hand() -> tuple[int, int, int]:
        split_of = _split_of(_store())
        sides = [(split_of[a], split_of[b]) for a, b in pairs]
        train, val, test = (split_code(name) for name in ("train", "val", "test"))
        straddling = sum(a != b and {a, b} <= {train, val, test} for a, b in sides)
        leaked_test = sum(
            (a == test and b in (train, val)) + (b == test and a in (train, val)) for a, b in sides
        )
        leaked_val = sum((a == val and b == train) + (b == val and a == train) for a, b in sides)
        return straddling, leaked_test, leaked_val

    folds = cli("split", "--test-fold", "2")
    assert folds.exit_code == 0, folds.output
    record = _store().split
    assert (record.leaked_sets, record.leaked_test, record.leaked_val) == by_hand()
    assert record.leaked_test > 0 and f"{record.leaked_sets} sets of copies" in folds.stderr

    val_leaks = 0
    for seed in range(4):
        clip_by_clip = cli(
            "split", "--test-fold", "2", "--no-val-by-group", "--val-ratio", "0.3", "--seed", str(seed)
        )
        assert clip_by_clip.exit_code == 0, clip_by_clip.output
        record = _store().split
        assert (record.leaked_sets, record.leaked_test, record.leaked_val) == by_hand()
        val_leaks += record.leaked_val
    assert val_leaks > 0  # some draw put a copy in val and its original in train


def test_every_figure_on_a_leaky_split_is_given_leak_free_beside_the_full_one(cli, tmp_path):
    root = _published(tmp_path / "instruments")
    for command in (
        ["import", str(root)],
        ["split", "--val-ratio", "0.2"],
        ["featurize", "--clip-seconds", "1"],
        ["vocab", "--k", "8"],
        ["tokenize", "--k", "8"],
    ):
        assert cli(*command).exit_code == 0, command
    for model in ("simple", "baseline"):
        trained = cli("train", "--model", model, "--epochs", "3", "--run-name", model)
        assert trained.exit_code == 0, trained.output
    evaluated = cli("eval", "--run", "simple")
    assert evaluated.exit_code == 0, evaluated.output
    assert "test: 2 of 8 clips have an identical copy in train or val" in evaluated.stdout
    assert "test leak-free" in evaluated.stdout
    assert cli("eval", "--run", "baseline").exit_code == 0

    runs_dir = load_settings().runs_dir
    figures = {}
    for run in ("simple", "baseline"):
        test = json.loads((runs_dir / run / "eval.json").read_text())["splits"]["test"]
        scored = read_predictions(runs_dir / run)
        clean = np.array([not clip.endswith("copy.wav") for clip in scored.clips])
        assert scored.leaked.tolist() == (~clean).tolist()
        labels, scores = scored.labels[clean], scored.scores[clean]
        by_hand_accuracy = float((labels.argmax(axis=1) == scores.argmax(axis=1)).mean())
        by_hand_mAP = float(average_precision_score(labels, scores, average="macro"))
        assert test["leaked_clips"] == 2 and test["leak_free"]["n_clips"] == 6 and test["n_clips"] == 8
        assert test["leak_free"]["accuracy"] == by_hand_accuracy
        assert abs(test["leak_free"]["mAP"] - by_hand_mAP) < 1e-12
        figures[run] = test["leak_free"]

    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    for run in ("simple", "baseline"):
        assert rows[run]["leaked_clips"] == 2
        assert rows[run]["test_accuracy_leak_free"] == figures[run]["accuracy"]
        assert rows[run]["test_mAP_leak_free"] == figures[run]["mAP"]
    shown = cli("runs")
    assert "2 test clips have an identical copy in train or val; without them (leak-free)" in shown.stdout

    compared = cli("compare", "simple", "baseline", "--resamples", "200", "--json")
    assert compared.exit_code == 0, compared.output
    comparison = json.loads(compared.stdout)
    assert comparison["leaked_clips"] == 2 and comparison["n_clips"] == 8
    free = {d["metric"]: d for d in comparison["leak_free"]}
    assert free["accuracy"]["a"] == figures["simple"]["accuracy"]
    assert free["accuracy"]["b"] == figures["baseline"]["accuracy"]
    assert abs(free["mAP"]["difference"] - (figures["simple"]["mAP"] - figures["baseline"]["mAP"])) < 1e-9
    said = cli("compare", "simple", "baseline", "--resamples", "200")
    assert "leak-free, without the 2 test clips with an identical copy on a training side" in said.stdout

    reported = cli("report", str(tmp_path / "report"), "--resamples", "200")
    assert reported.exit_code == 0, reported.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "2 sets of copies lie on more than one side of train/val/test" in text
    assert "kept whole" not in text
    assert "leak-free" in text and f"{figures['simple']['accuracy']:.4f}" in text


def test_the_report_methods_rebuild_each_run_to_the_same_figures(cli, tmp_path, monkeypatch):
    """Methods gives the version and the commands (split, featurize, vocab, tokenize, train), paths
    in the data dir; run in a fresh data dir they give runs whose test figures are the same."""
    root = _published(tmp_path / "instruments")
    for command in (
        ["import", str(root)],
        ["--seed", "3", "split", "--val-ratio", "0.2"],
        ["featurize", "--clip-seconds", "1"],
        ["--seed", "2", "vocab", "--k", "8", "--transform", "clip-mean"],
        ["tokenize", "--k", "8"],
    ):
        assert cli(*command).exit_code == 0, command
    bert = [
        "--model",
        "bert",
        "--hidden-size",
        "32",
        "--num-heads",
        "2",
        "--num-layers",
        "1",
        "--lr",
        "0.003",
    ]
    trained = cli("train", *bert, "--epochs", "2", "--batch-size", "8", "--run-name", "tokens")
    assert trained.exit_code == 0, trained.output
    frames = ["--model", "baseline", "--epochs", "2", "--frame-transform", "clip-mean", "--seeds", "2"]
    assert cli("train", *frames, "--run-name", "frames").exit_code == 0
    assert cli("eval", "--run", "tokens").exit_code == 0
    recipes = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert (
        recipes["tokens"]["recipe"] == "hidden-size 32, num-layers 1, num-heads 2, batch 8, lr 0.003, seed 0"
    )
    assert recipes["tokens"]["front_end"] == "log-mel: n_fft 1024, hop 512, 64 mels, 1 s clips at 22050 Hz"
    assert (
        recipes["tokens"]["vocabulary"]
        == "logmel-clip-mean-k8: k 8, kmeans over logmel, transforms clip-mean"
    )

    assert cli("report", str(tmp_path / "out"), "--resamples", "100").exit_code == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert str(tmp_path) not in markdown  # no absolute path of the author's machine
    methods = markdown.split("## Methods")[1]
    assert "Made with audiotok " in methods
    commands = methods.split("```sh\n")[1].split("```")[0].splitlines()
    assert commands[0].startswith("audiotok import PATH/TO/instruments --name instruments")
    assert commands[1] == (
        "audiotok --seed 3 split --val-ratio 0.2 --test-source test --val-by-group --stratify"
    )

    monkeypatch.setenv("AUDIOTOK_DATA_DIR", str(tmp_path / "again"))
    for line in commands:
        argv = shlex.split(line.split("  #")[0].replace("PATH/TO/instruments", str(root)))
        assert argv[0] == "audiotok"
        done = cli(*argv[1:])
        assert done.exit_code == 0, (line, done.output)
    for run in ("tokens", "frames-seed0", "frames-seed1"):
        before, after = (
            json.loads((home / "runs" / run / "eval.json").read_text())["splits"]["test"]
            for home in (tmp_path / "data", tmp_path / "again")
        )
        assert (after["accuracy"], after["mAP"]) == (before["accuracy"], before["mAP"]), run
