"""`train --seeds N` and the `runs` row that sums up runs differing only by their seed: a mean
with its 95% interval, so that a difference between two models can be told from the luck of a seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import t

from audiotok_cli.training.runs import REPORT

QUICK = ["--model", "simple", "--epochs", "2", "--batch-size", "8", "--embed-dim", "16"]


def test_seeds_trains_scores_and_sums_up_each_seed(cli, tokenized):
    result = cli("train", *QUICK, "--seeds", "3", "--seed", "5")
    assert result.exit_code == 0, result.output
    runs = tokenized.runs_dir
    names = [f"simple-logmel-k16-seed{seed}" for seed in (5, 6, 7)]
    tests = [json.loads((runs / name / REPORT).read_text())["splits"]["test"]["mAP"] for name in names]
    seeds = [json.loads((runs / name / "run.json").read_text())["seed"] for name in names]
    assert seeds == [5, 6, 7] and len(set(tests)) > 1  # three different runs, each scored on test
    half = t.ppf(0.975, 2) * np.std(tests, ddof=1) / np.sqrt(3)
    assert f"simple-logmel-k16: test mAP {np.mean(tests):.4f} ± {half:.4f} (95% interval" in result.stdout

    model = runs / names[1] / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    assert cli("train", *QUICK, "--seeds", "3", "--seed", "5").exit_code == 0
    assert model.stat().st_mtime_ns == stamp  # finished seeds are kept

    # one more run by hand with seed 8, and one with another learning rate: only the first joins
    assert cli("train", *QUICK, "--seed", "8", "--run-name", "by-hand").exit_code == 0
    assert cli("eval", "--run", "by-hand").exit_code == 0
    assert cli("train", *QUICK, "--seed", "9", "--lr", "0.01", "--run-name", "other-lr").exit_code == 0
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    summary = rows["by-hand (seeds)"]  # names not all NAME-seedS: the row is named after the first
    tests.append(json.loads((runs / "by-hand" / REPORT).read_text())["splits"]["test"]["mAP"])
    assert summary["seeds"] == 4 and summary["test_mAP"] == pytest.approx(np.mean(tests))
    assert summary["test_mAP_ci95"] == pytest.approx(t.ppf(0.975, 3) * np.std(tests, ddof=1) / 2)
    assert summary["test_mAP_std"] == pytest.approx(np.std(tests, ddof=1))
    assert summary["recipe"] == "batch 8, seeds 5,6,7,8"
    assert sum(1 for row in rows.values() if row["seeds"]) == 1  # other-lr is another recipe

    table = cli("runs")
    assert table.exit_code == 0 and "(seeds) 4 runs" in table.stdout and "95% interval" in table.stdout


def test_seeds_and_cv_together_are_refused(cli, tokenized):
    result = cli("train", *QUICK, "--seeds", "2", "--cv")
    assert result.exit_code == 3 and "--cv and --seeds: choose one" in result.stderr
