"""`train --cv`: one run per fold, each on its own split (and, for tokens, its own vocabulary),
mean and deviation over the folds, resumable, and the store's split put back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiotok_cli.settings import load_settings
from audiotok_cli.store import Store
from audiotok_cli.training.runs import read_record
from collections_kit import esc50, folders


@pytest.fixture
def three_folds(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_SPLIT__VAL_RATIO", "0.4")
    assert cli("import", str(esc50(tmp_path / "ESC-50", folds=3)), "--name", "esc").exit_code == 0
    assert cli("split", "--test-fold", "3").exit_code == 0
    assert cli("featurize", "--clip-seconds", "1").exit_code == 0
    return load_settings({})


def test_cv_trains_one_run_per_fold_and_reports_mean_and_deviation(cli, three_folds):
    before = Store.open(three_folds.store_path).split
    result = cli("train", "--model", "baseline", "--epochs", "2", "--cv")
    assert result.exit_code == 0, result.output
    assert "baseline-logmel: 3 folds" in result.stdout
    assert "baseline-logmel: test mAP " in result.stdout and " over 3 folds" in result.stdout
    assert "test accuracy" in result.stdout
    runs = three_folds.runs_dir
    for fold in (1, 2, 3):
        record = read_record(runs / f"baseline-logmel-fold{fold}")
        assert record.complete and record.inputs.split.test_fold == fold
        assert record.inputs.split.val_by_group
    assert Store.open(three_folds.store_path).split == before  # put back as it was

    model = runs / "baseline-logmel-fold2" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    again = cli("train", "--model", "baseline", "--epochs", "2", "--cv")
    assert again.exit_code == 0 and model.stat().st_mtime_ns == stamp  # finished folds are kept

    table = cli("runs")
    assert table.exit_code == 0
    assert "baseline-logmel (cv) 3 folds" in table.stdout and " ± " in table.stdout


def test_token_cv_clusters_each_folds_vocabulary_on_that_folds_train_clips(cli, three_folds, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_VOCAB__TRANSFORMS", "clip-mean")
    result = cli("train", "--model", "simple", "--k", "8", "--epochs", "1", "--cv")
    assert result.exit_code == 0, result.output
    store = Store.open(three_folds.store_path)
    folds = store.folds()
    for fold in (1, 2, 3):
        vocab = store.vocab_record(f"logmel-clip-mean-k8-fold{fold}")
        assert vocab.split.test_fold == fold and vocab.transforms == ["clip-mean"]
        assert vocab.n_train_clips < int((folds != fold).sum())  # train only: no test, no val clips
        run = read_record(three_folds.runs_dir / f"simple-logmel-clip-mean-k8-fold{fold}")
        assert run.inputs.tokens == f"logmel-clip-mean-k8-fold{fold}" and run.inputs.transforms == [
            "clip-mean"
        ]
    assert len({store.vocab_record(f"logmel-clip-mean-k8-fold{f}").fingerprint for f in (1, 2, 3)}) == 3


def test_cv_without_folds_or_with_a_named_vocabulary_is_refused(cli, tmp_path, three_folds):
    refused = cli("train", "--model", "simple", "--vocab", "logmel-k8", "--cv")
    assert refused.exit_code == 3
    assert "--cv clusters a vocabulary per fold; choose its size and features with --k" in refused.stderr

    store = tmp_path / "nofolds.zarr"
    assert cli("import", str(folders(tmp_path / "f", per_class=3)), "--store", str(store)).exit_code == 0
    assert cli("split", "--store", str(store)).exit_code == 0
    assert cli("featurize", "--store", str(store), "--clip-seconds", "1").exit_code == 0
    result = cli("train", "--model", "baseline", "--cv", "--store", str(store))
    assert result.exit_code == 4
    assert (
        "--cv needs clips in 2 folds or more;" in result.stderr and "has none (import ESC-50" in result.stderr
    )


def test_cv_with_other_settings_trains_a_new_set_and_a_stale_fold_is_trained_again(
    cli, three_folds, monkeypatch
):
    runs = three_folds.runs_dir
    quick = ["--model", "baseline", "--epochs", "1", "--cv"]
    assert cli("train", *quick).exit_code == 0
    kept = (runs / "baseline-logmel-fold1" / "model.safetensors").read_bytes()

    other = cli("train", *quick, "--lr", "0.01")
    assert other.exit_code == 0, other.output
    assert "baseline-logmel-lr0.01: 3 folds" in other.stdout  # named for what differs
    for fold in (1, 2, 3):
        assert read_record(runs / f"baseline-logmel-lr0.01-fold{fold}").train["learning_rate"] == 0.01
    assert (runs / "baseline-logmel-fold1" / "model.safetensors").read_bytes() == kept

    seeded = cli("train", *quick, "--seed", "3")  # the seed is part of the recipe: a set of its own
    assert seeded.exit_code == 0 and "baseline-logmel-2: 3 folds" in seeded.stdout

    # the same recipe on another split of each fold (more val clips): its folds are trained again
    monkeypatch.setenv("AUDIOTOK_SPLIT__VAL_RATIO", "0.3")
    stale = cli("train", *quick)
    assert stale.exit_code == 0 and "baseline-logmel: 3 folds" in stale.stdout
    assert read_record(runs / "baseline-logmel-fold1").inputs.split.val_ratio == 0.3
    refused = cli("train", *quick, "--run-name", "baseline-logmel", "--lr", "0.01")
    assert refused.exit_code == 6 and "train.learning_rate 0.001 there, 0.01 asked" in refused.stderr
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert {name for name in rows if name.endswith("(cv)")} == {
        "baseline-logmel (cv)",
        "baseline-logmel-lr0.01 (cv)",
        "baseline-logmel-2 (cv)",
    }


def test_cv_with_seeds_scores_each_fold_as_the_mean_of_its_seeds(cli, three_folds):
    from scipy.stats import t

    quick = ["--model", "baseline", "--epochs", "1", "--cv", "--seeds", "2"]
    result = cli("train", *quick, "--json")
    assert result.exit_code == 0, result.output
    folds = json.loads(result.stdout)["repeats"]
    runs = three_folds.runs_dir
    for fold in folds:  # per-fold rows, each seed beside
        assert [seed["run"] for seed in fold["seeds"]] == [
            f"baseline-logmel-fold{fold['index']}-seed{s}" for s in (0, 1)
        ]
        for seed in (0, 1):  # each run's record names its set, fold and seed (run_sets.py)
            member = read_record(runs / f"baseline-logmel-fold{fold['index']}-seed{seed}").member
            assert (member.name, member.fold, member.seed) == ("baseline-logmel", fold["index"], seed)
        assert fold["test_accuracy"] == pytest.approx(
            np.mean([seed["test_accuracy"] for seed in fold["seeds"]])
        )
        assert read_record(runs / f"baseline-logmel-fold{fold['index']}-seed1").seed == 1
    shown = cli("train", *quick)  # finished: kept, and said as papers print it
    assert "baseline-logmel: 3 folds, each the mean of 2 seeds" in shown.stdout
    means = [fold["test_accuracy"] for fold in folds]
    half = t.ppf(0.975, 2) * np.std(means, ddof=1) / np.sqrt(3)
    assert f"test accuracy {np.mean(means):.4f} ± {half:.4f}" in shown.stdout

    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    summary = rows["baseline-logmel (cv)"]
    assert summary["folds"] == 3 and summary["test_accuracy_ci95"] == pytest.approx(half)  # over folds
    assert not any(name.endswith("(seeds)") for name in rows)  # a fold's seeds belong to the (cv) row

    assert cli("train", *quick, "--lr", "0.01").exit_code == 0
    compared = cli("compare", "baseline-logmel", "baseline-logmel-lr0.01", "--resamples", "200", "--json")
    assert compared.exit_code == 0, compared.output
    accuracy = json.loads(compared.stdout)["differences"][0]
    assert accuracy["runs_test"] == "paired t over 3 folds" and accuracy["clips_p_value"] is not None


def test_a_cv_killed_mid_fold_puts_back_the_stores_own_split_when_it_runs_again(cli, three_folds):
    import signal
    import subprocess
    import sys
    import time

    before = Store.open(three_folds.store_path).split  # the fixture's: test fold 3
    command = ["train", "--model", "baseline", "--epochs", "15", "--batch-size", "2", "--cv", "--quiet"]
    victim = subprocess.Popen(
        [sys.executable, "-m", "audiotok_cli", *command], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while Store.open(three_folds.store_path, mode="r").split.test_fold != 2:  # fold 2 has begun
            assert time.monotonic() < deadline and victim.poll() is None, victim.communicate()
            time.sleep(0.02)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    killed = Store.open(three_folds.store_path)
    assert killed.split.test_fold == 2 and killed.clips_record.split_before_cv == before
    plain = cli("train", "--model", "baseline", "--epochs", "1", "--run-name", "meanwhile")
    scored = cli("eval", "--run", "meanwhile")
    for said in (plain, scored):  # the store knows: said before any figure is made on that fold
        assert said.exit_code == 0 and "the store's split is one fold's (test: fold 2), left by an " in (
            " ".join(said.stderr.split())
        )

    again = cli(*command)
    assert again.exit_code == 0, again.output
    assert Store.open(three_folds.store_path).split == before  # the store's own split, not fold 2's
    assert Store.open(three_folds.store_path).clips_record.split_before_cv is None
