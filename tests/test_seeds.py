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
    for name in names:  # the log says which seed is training
        assert f"{name} epoch 1/" in result.stdout

    model = runs / names[1] / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    assert cli("train", *QUICK, "--seeds", "3", "--seed", "5").exit_code == 0
    assert model.stat().st_mtime_ns == stamp  # finished seeds are kept

    # one more run by hand with seed 8, and one with another learning rate: only the first joins
    assert cli("train", *QUICK, "--seed", "8", "--run-name", "by-hand").exit_code == 0
    assert cli("eval", "--run", "by-hand").exit_code == 0
    assert cli("train", *QUICK, "--seed", "9", "--lr", "0.01", "--run-name", "other-lr").exit_code == 0
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    summary = rows[
        "simple on tokens logmel-k16, embed-dim 16, batch 8 (seeds)"
    ]  # names of their own: named by settings
    assert rows["by-hand"]["member_of"] == rows["simple-logmel-k16-seed5"]["member_of"] == summary["name"]
    tests.append(json.loads((runs / "by-hand" / REPORT).read_text())["splits"]["test"]["mAP"])
    assert summary["seeds"] == 4 and summary["test_mAP"] == pytest.approx(np.mean(tests))
    assert summary["test_mAP_ci95"] == pytest.approx(t.ppf(0.975, 3) * np.std(tests, ddof=1) / 2)
    assert summary["test_mAP_std"] == pytest.approx(np.std(tests, ddof=1))
    assert summary["recipe"] == "embed-dim 16, batch 8, seeds 5,6,7,8"
    assert sum(1 for row in rows.values() if row["seeds"]) == 1  # other-lr is another recipe

    table = cli("runs")
    assert table.exit_code == 0 and "(seeds) 4 runs" in table.stdout and "95% interval" in table.stdout


def test_seeds_with_other_settings_train_a_new_set_and_never_report_the_old_one(cli, tokenized):
    runs = tokenized.runs_dir
    assert cli("train", *QUICK, "--seeds", "2").exit_code == 0
    first = {
        seed: (runs / f"simple-logmel-k16-seed{seed}" / "model.safetensors").read_bytes() for seed in (0, 1)
    }

    other = cli("train", *QUICK, "--seeds", "2", "--lr", "0.003")
    assert other.exit_code == 0, other.output
    assert "simple-logmel-k16-lr0.003: 2 seeds" in other.stdout  # a new set, named for what differs
    for seed in (0, 1):
        record = json.loads((runs / f"simple-logmel-k16-lr0.003-seed{seed}" / "run.json").read_text())
        assert record["train"]["learning_rate"] == 0.003 and record["complete"]
        assert (runs / f"simple-logmel-k16-seed{seed}" / "model.safetensors").read_bytes() == first[seed]

    frames = ["--model", "baseline", "--epochs", "1", "--batch-size", "8", "--seeds", "2"]
    assert cli("train", *frames).exit_code == 0
    transformed = cli("train", *frames, "--frame-transform", "clip-mean", "--frame-transform", "deltas")
    assert transformed.exit_code == 0 and "baseline-logmel-clip-mean-deltas: 2 seeds" in transformed.stdout
    record = json.loads((runs / "baseline-logmel-clip-mean-deltas-seed1" / "run.json").read_text())
    assert record["inputs"]["transforms"] == ["clip-mean", "deltas"]

    again = cli("train", *QUICK, "--seeds", "2", "--lr", "0.003")  # the same settings: that set, kept
    assert again.exit_code == 0 and "simple-logmel-k16-lr0.003: 2 seeds" in again.stdout
    assert not (runs / "simple-logmel-k16-2-seed0").exists()

    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert (
        rows["simple-logmel-k16 (seeds)"]["seeds"] == 2
        and rows["simple-logmel-k16-lr0.003 (seeds)"]["seeds"] == 2
    )


def test_a_named_set_of_seeds_with_other_settings_is_refused_naming_them(cli, tokenized):
    assert cli("train", *QUICK, "--seeds", "2", "--run-name", "mine").exit_code == 0
    refused = cli("train", *QUICK, "--seeds", "2", "--run-name", "mine", "--lr", "0.003")
    assert refused.exit_code == 6
    assert "mine-seed0 was made with other settings (train.learning_rate 0.001 there, 0.003 asked)" in (
        refused.stderr
    )
    assert "pass --overwrite to replace the set, or another --run-name" in refused.stderr
    replaced = cli("train", *QUICK, "--seeds", "2", "--run-name", "mine", "--lr", "0.003", "--overwrite")
    assert replaced.exit_code == 0
    record = json.loads((tokenized.runs_dir / "mine-seed1" / "run.json").read_text())
    assert record["train"]["learning_rate"] == 0.003


def test_a_sets_runs_are_known_by_their_records_not_their_folder_names(cli, tokenized):
    """`train --seeds` records each run's set and seed; `runs`, `compare` and `predict` read the set
    from the records, so its runs keep their set when their folders are renamed (no name is parsed
    for a seed, but an older audiotok's record's, which names no set)."""
    from audiotok_cli.training.runs import read_record

    assert cli("train", *QUICK, "--seeds", "2", "--run-name", "mine").exit_code == 0
    runs = tokenized.runs_dir
    assert [read_record(runs / f"mine-seed{seed}").member.model_dump() for seed in (0, 1)] == [
        {"name": "mine", "fold": None, "seed": 0},
        {"name": "mine", "fold": None, "seed": 1},
    ]
    for seed, new in ((0, "first"), (1, "second")):
        (runs / f"mine-seed{seed}").rename(runs / new)
    assert cli("train", *QUICK, "--seed", "7", "--lr", "0.01", "--run-name", "other").exit_code == 0
    assert cli("eval", "--run", "other").exit_code == 0
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert rows["mine (seeds)"]["seeds"] == 2
    assert rows["first"]["member_of"] == rows["second"]["member_of"] == "mine (seeds)"
    compared = cli("compare", "mine", "other", "--json")
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.stdout)["a_runs"] == ["first", "second"]
