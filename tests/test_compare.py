"""`compare`: a difference between two runs, or two sets of seeds, with its 95% interval and p-value,
paired over the same test clips; the figures agree with scipy's on the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from audiotok_cli.results import compare as compare_module
from audiotok_cli.results.evaluate import read_predictions
from audiotok_cli.training.metrics import fast_mean_average_precision, mean_average_precision
from collections_kit import folders

QUICK = ["--model", "baseline", "--epochs", "2", "--batch-size", "4"]


@pytest.fixture
def two_recipes(cli, tmp_path, monkeypatch):
    """Six classes of 10 clips; a frame model under 3 seeds at two learning rates, each scored."""
    monkeypatch.setenv("AUDIOTOK_SPLIT__VAL_RATIO", "0.25")
    classes = tuple(f"class{index}" for index in range(6))
    assert cli("import", str(folders(tmp_path / "six", classes=classes, per_class=10))).exit_code == 0
    assert cli("split").exit_code == 0
    assert cli("featurize", "--clip-seconds", "1").exit_code == 0
    assert cli("train", *QUICK, "--seeds", "3", "--run-name", "fast", "--lr", "0.01").exit_code == 0
    assert cli("train", *QUICK, "--seeds", "3", "--run-name", "slow", "--lr", "0.0001").exit_code == 0
    return tmp_path / "data" / "runs"


def _correct(runs, name):
    scored = read_predictions(runs / name)
    order = np.argsort(scored.clips)
    labels, scores = scored.labels[order], scored.scores[order]
    return labels[np.arange(len(labels)), scores.argmax(axis=1)].astype(float)


def test_two_runs_are_compared_clip_by_clip_as_scipy_does(cli, two_recipes, monkeypatch):
    result = cli("compare", "fast-seed0", "slow-seed0", "--resamples", "999", "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    assert [d["metric"] for d in compared["differences"]] == [
        "accuracy",
        "mAP",
    ]  # single-label: accuracy first
    accuracy = compared["differences"][0]
    a, b = _correct(two_recipes, "fast-seed0"), _correct(two_recipes, "slow-seed0")
    assert compared["n_clips"] == len(a) and accuracy["difference"] == pytest.approx(a.mean() - b.mean())

    rng = np.random.default_rng(0)  # the root --seed, 0 by default
    clips = np.arange(len(a))  # resampled as clips: each side's accuracy on the drawn clips

    def difference(picks):
        return a[picks].mean() - b[picks].mean()

    interval = stats.bootstrap(
        (clips,), difference, n_resamples=999, method="BCa", vectorized=False, random_state=rng
    ).confidence_interval
    assert accuracy["clips_ci95"] == pytest.approx([interval.low, interval.high])
    test = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=999,
        random_state=rng,
    )
    assert accuracy["clips_p_value"] == pytest.approx(test.pvalue)
    assert accuracy["runs_ci95"] is None  # one run a side: nothing over runs
    assert compared["clips_method"] == "paired bootstrap over clips (BCa), paired permutation test"

    # past BCA_MAX_CLIPS clips the percentile interval: BCa's jackknife costs a metric a clip
    monkeypatch.setattr(compare_module, "BCA_MAX_CLIPS", len(a) - 1)
    many = json.loads(cli("compare", "fast-seed0", "slow-seed0", "--resamples", "999", "--json").stdout)
    percentile = stats.bootstrap(
        (clips,), difference, n_resamples=999, method="percentile", vectorized=False,
        random_state=np.random.default_rng(0),
    ).confidence_interval  # fmt: skip
    assert many["differences"][0]["clips_ci95"] == pytest.approx([percentile.low, percentile.high])
    assert "(percentile)" in many["clips_method"]

    shown = cli("compare", "fast-seed0", "slow-seed0", "--resamples", "999")
    assert (
        f"accuracy: {a.mean():.4f} - {b.mean():.4f} = {a.mean() - b.mean():+.4f}, 95% interval"
        in shown.stdout
    )


def test_sets_of_seeds_are_compared_over_clips_and_over_runs(cli, two_recipes):
    result = cli("compare", "fast", "slow", "--resamples", "500", "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.stdout)
    assert compared["a_runs"] == ["fast-seed0", "fast-seed1", "fast-seed2"]
    runs = {"fast": [], "slow": []}
    for name in runs:
        for seed in range(3):
            test = json.loads((two_recipes / f"{name}-seed{seed}" / "eval.json").read_text())["splits"][
                "test"
            ]
            runs[name].append(test["accuracy"])
    accuracy = compared["differences"][0]
    assert accuracy["a"] == pytest.approx(np.mean(runs["fast"]))  # a set's figure: its runs' mean
    welch = stats.ttest_ind(runs["fast"], runs["slow"], equal_var=False)
    assert accuracy["runs_ci95"] == pytest.approx(list(welch.confidence_interval(0.95)))
    assert accuracy["runs_p_value"] == pytest.approx(welch.pvalue)
    assert accuracy["runs_test"] == "Welch's t over 3 and 3 seeds"
    low, high = accuracy["clips_ci95"]
    assert low <= accuracy["difference"] <= high and 0 < accuracy["clips_p_value"] <= 1

    unknown = cli("compare", "fast", "nothing")
    assert unknown.exit_code == 4 and "no run 'nothing'" in unknown.stderr
    assert cli("train", *QUICK, "--run-name", "unscored").exit_code == 0
    for scored in ("eval.json", "predictions.safetensors"):  # train scores its run: unscore this one
        (two_recipes / "unscored" / scored).unlink()
    unscored = cli("compare", "fast-seed0", "unscored")
    assert unscored.exit_code == 4 and "run `audiotok eval --run unscored`" in unscored.stderr


def test_the_fast_map_is_scikit_learns_ties_included():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n, classes = int(rng.integers(2, 50)), int(rng.integers(1, 6))
        labels = rng.random((n, classes)) < 0.3
        scores = np.round(rng.random((n, classes)), 1)  # many ties
        picks = rng.integers(0, n, n)  # and repeated clips, as a bootstrap draws them
        fast = fast_mean_average_precision(labels[picks], scores[picks])
        slow = mean_average_precision(labels[picks], scores[picks])
        assert (np.isnan(fast) and np.isnan(slow)) or fast == pytest.approx(slow, abs=1e-12)


def test_runs_measure_against_the_best_frame_set_mean_and_filter_by_name(cli, two_recipes, tmp_path):
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    fast, slow = rows["fast (seeds)"], rows["slow (seeds)"]
    assert rows["fast-seed1"]["member_of"] == "fast (seeds)" and fast["member_of"] == ""
    best = max(fast["test_accuracy"], slow["test_accuracy"])  # set means, never one lucky seed
    assert fast["gap_metric"] == "accuracy"  # single-label: the headline figure
    assert slow["gap_to_best_frames"] == pytest.approx(slow["test_accuracy"] - best)
    seeds = [rows[f"fast-seed{seed}"]["test_accuracy"] for seed in range(3)]
    assert rows["fast-seed0"]["gap_to_best_frames"] == pytest.approx(seeds[0] - best)

    only = cli("runs", "--only", "slow-*", "--json", "--plot", str(tmp_path / "slow.png"))
    assert only.exit_code == 0, only.output
    assert {row["name"] for row in json.loads(only.stdout)} == {f"slow-seed{s}" for s in range(3)} | {
        "slow (seeds)"
    }
    assert (tmp_path / "slow.png").read_bytes()[:4] == b"\x89PNG"
    none = cli("runs", "--only", "nothing-*")
    assert none.exit_code == 4 and "no runs matching 'nothing-*'" in none.stderr


def test_scores_changed_after_eval_are_refused_by_compare_and_named_by_verify_and_runs(cli, two_recipes):
    """predictions.safetensors and eval.json are under digests (eval.json keeps them): a seed's
    damaged test scores no longer move an interval without a word."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    path = two_recipes / "fast-seed1" / "predictions.safetensors"
    with safe_open(path, framework="np") as handle:  # the metadata (clip ids) kept, the scores damaged
        metadata = handle.metadata()
    tensors = load_file(path)
    tensors["test.scores"][:40] = tensors["test.scores"][:40, ::-1]
    save_file(tensors, path, metadata=metadata)

    refused = cli("compare", "fast", "slow", "--resamples", "200")
    assert refused.exit_code == 5
    assert "fast-seed1/predictions.safetensors: its content differs from the digest in eval.json" in (
        refused.stderr
    )
    assert "run `audiotok eval --run fast-seed1` again" in refused.stderr
    verified = cli("verify", "--runs")
    assert (
        verified.exit_code == 5 and "fast-seed1/predictions.safetensors" in verified.stdout + verified.stderr
    )

    report = two_recipes / "slow-seed2" / "eval.json"
    edited = json.loads(report.read_text())
    edited["splits"]["test"]["accuracy"] = 0.99  # a figure edited by hand
    report.write_text(json.dumps(edited))
    listed = cli("runs")
    assert listed.exit_code == 0 and "slow-seed2 is damaged" in " ".join(listed.stderr.split())
    assert "differs from its digest" in " ".join(listed.stderr.split())

    assert (
        cli("eval", "--run", "fast-seed1").exit_code == 0
        and cli("eval", "--run", "slow-seed2").exit_code == 0
    )
    assert cli("compare", "fast", "slow", "--resamples", "200").exit_code == 0  # the repair named works
