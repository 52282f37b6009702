"""The whole pipeline through the CLI, on a small generated dataset in each hub layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.class_lists import audioset_classes
from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store


@pytest.mark.parametrize("layout", ["parquet", "tar"])
def test_every_stage_through_the_cli(cli, layout):
    ok = cli("demo-data", "--layout", layout, "--clips", "64", "--seconds", "5")
    assert ok.exit_code == 0, ok.output
    assert f"wrote a {layout} demo mirror" in ok.stdout
    assert cli("demo-data", "--layout", layout).exit_code == 7  # never overwritten silently

    assert cli("expand").exit_code == 0
    settings = load_settings({"vocab": {"n_clusters": 16}})
    store = Store.open(settings.store_path)
    assert store.n_clips == 64
    truth = _generator_labels(settings.mirror_dir, layout)
    index = audioset_classes()
    for row, ytid in enumerate(store.ytids()):
        expected, _ = index.multi_hot(list(truth[SOURCES[store.sources()[row]]][ytid]))
        assert np.array_equal(store.labels(slice(row, row + 1))[0], expected), ytid

    assert "test" in cli("split", "--val-ratio", "0.2").stdout
    assert "64 clips featurized" in cli("featurize").stdout
    assert "0 clips featurized, 64 already done" in cli("featurize").stdout  # rerun skips
    rerun = cli("expand")
    assert rerun.exit_code == 0 and "0 files expanded" in rerun.stdout and "0 clips added" in rerun.stdout
    assert Store.open(settings.store_path).n_clips == 64

    made = cli("vocab", "--k", "16", "--workers", "2")
    assert made.exit_code == 0 and "vocab 'logmel-k16': 16 centroids" in made.stdout
    again = cli("vocab", "--k", "16")
    assert again.exit_code == 7 and "vocab 'logmel-k16' already exists" in again.stderr
    assert cli("tokenize", "--k", "16").exit_code == 0
    tokens = Store.open(settings.store_path).tokens()
    ids, lengths = tokens.data[:], tokens.all_lengths()
    valid = np.arange(ids.shape[1]) < lengths[:, None]
    assert ids[valid].min() >= 0 and ids[valid].max() < 16 and (ids[~valid] == -1).all()

    mismatch = cli("train", "--k", "16", "--vocab-size", "32")
    assert mismatch.exit_code == 3 and "model.vocab_size 32 != --k 16" in mismatch.stderr
    no_tokens = cli("train", "--k", "32")
    assert no_tokens.exit_code == 4 and "no tokens with k=32" in no_tokens.stderr
    resumed = cli("tokenize", "--k", "16")
    assert resumed.exit_code == 0 and "0 clips tokenized, 64 already done" in resumed.stdout
    changed = cli("featurize", "--n-mels", "32")
    assert changed.exit_code == 6 and "n_mels 64 (wanted 32)" in changed.stderr

    trained = cli(
        "train", "--model", "simple", "--k", "16", "--epochs", "40", "--batch-size", "8", "--lr", "3e-3"
    )
    assert trained.exit_code == 0, trained.output
    report = cli("eval", "--model", "simple", "--k", "16", "--json")
    assert report.exit_code == 0
    splits = json.loads(report.stdout)["splits"]
    assert set(splits) == {"val", "test"}
    test = splits["test"]
    assert test["n_clips"] == 16
    assert test["mAP"] > test["prior_mAP"] + 0.2, test
    table = cli("eval", "--model", "simple", "--k", "16")
    assert "prior mAP" in table.stdout and "test" in table.stdout

    assert cli("split", "--val-ratio", "0.3").exit_code == 0
    resplit = cli("eval", "--model", "simple", "--k", "16")
    assert resplit.exit_code == 6 and "its val clips may be training clips" in resplit.stderr
    assert cli("split", "--val-ratio", "0.2").exit_code == 0

    info = json.loads(cli("info", "--json").stdout)
    assert info["store"]["n_clips"] == 64 and info["store"]["tokens"][0]["done"] == 64
    mirror = info["mirror"]["sources"]
    assert mirror["bal_train"]["clips"] == 48 and mirror["eval"]["clips"] == 16
    assert info["mirror"]["layout"] == layout


def test_bert_trains_and_evaluates_through_the_cli(cli):
    cli("demo-data", "--clips", "24", "--seconds", "3")
    for args in (
        ["expand"],
        ["split", "--val-ratio", "0.3"],
        ["featurize"],
        ["vocab", "--k", "8"],
        ["tokenize", "--k", "8"],
    ):
        assert cli(*args).exit_code == 0, args
    trained = cli(
        "train", "--model", "bert", "--k", "8", "--epochs", "1", "--hidden-size", "32", "--num-heads", "2"
    )
    assert trained.exit_code == 0, trained.output
    record = json.loads((load_settings().runs_dir / "bert-logmel-k8" / "run.json").read_text())
    assert record["model"]["kind"] == "bert" and record["model"]["max_frames"] == 431
    assert record["format"] == 3 and record["inputs"]["tokens"] == "logmel-k8"
    assert cli("eval", "--model", "bert", "--k", "8").exit_code == 0
    shape = ["--epochs", "1", "--hidden-size", "32", "--num-heads", "2"]
    again = cli("train", "--model", "bert", "--k", "8", *shape)  # the default name is never taken twice
    assert again.exit_code == 0 and "bert-logmel-k8-2" in again.stdout
    named = cli("train", "--model", "bert", "--k", "8", "--run-name", "bert-logmel-k8", *shape)
    assert named.exit_code == 7 and "--overwrite" in named.stderr


def _generator_labels(mirror_dir, layout):
    """The labels the demo generator wrote, read back from the mirror's own files."""
    from audiotok_cli.audioset.mirror import iter_clips, read_segments, source_files

    labels = {}
    for source in ("bal_train", "eval"):
        segments = read_segments(mirror_dir, source) if layout == "tar" else {}
        labels[source] = {
            clip.ytid: clip.mids
            for path in source_files(mirror_dir, source, layout)
            for clip in iter_clips(path, source, layout, segments)
        }
    return labels
