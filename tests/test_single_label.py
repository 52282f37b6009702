"""Single-label collections train as their field does: softmax cross-entropy by default (recorded in
the run), probabilities that sum to 1 from `eval`'s scores and from `predict`; AudioSet keeps BCE."""

from __future__ import annotations

import json

import pytest

from audiotok_cli.training.runs import read_record
from collections_kit import folders, tone, write

QUICK = ["--model", "baseline", "--epochs", "3", "--batch-size", "4"]


@pytest.fixture
def instruments(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_SPLIT__VAL_RATIO", "0.3")
    assert cli("import", str(folders(tmp_path / "instruments", per_class=8))).exit_code == 0
    assert cli("split").exit_code == 0
    assert cli("featurize", "--clip-seconds", "1").exit_code == 0
    return tmp_path


def test_single_label_trains_with_softmax_and_predicts_a_distribution(cli, instruments, tmp_path):
    assert cli("train", *QUICK, "--run-name", "ce").exit_code == 0
    run = read_record(tmp_path / "data" / "runs" / "ce")
    assert run.train["loss"] == "ce" and run.loss == "ce"

    clip = write(tmp_path / "new.wav", tone(1, group=5, seconds=2.5))  # three 1 s windows
    shown = cli("predict", "ce", str(clip), "--top", "3", "--json")
    assert shown.exit_code == 0, shown.output
    prediction = json.loads(shown.stdout)
    probabilities = [p for _, p in prediction["files"][0]["top"]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)  # all 3 classes shown: a distribution
    assert prediction["pooling"].startswith("mean over 1 s windows (softmax")

    assert cli("train", *QUICK, "--run-name", "bce", "--loss", "bce").exit_code == 0
    assert read_record(tmp_path / "data" / "runs" / "bce").loss == "bce"
    sigmoids = json.loads(cli("predict", "bce", str(clip), "--top", "3", "--json").stdout)
    assert sum(p for _, p in sigmoids["files"][0]["top"]) != pytest.approx(1.0, abs=1e-3)
    assert sigmoids["pooling"] == "max over 1 s windows"

    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert rows["ce"]["recipe"] == rows["bce"]["recipe"] == "batch 4, seed 0"  # the loss has a column
    assert rows["ce"]["loss"] == "ce" and rows["bce"]["loss"] == "bce"


def test_audioset_keeps_bce(cli, tokenized):
    assert cli("train", "--model", "simple", "--epochs", "1", "--run-name", "multi").exit_code == 0
    assert read_record(tokenized.runs_dir / "multi").loss == "bce"
    refused = cli("train", "--model", "simple", "--loss", "softmax")
    assert refused.exit_code == 3 and "train.loss: Input should be 'auto', 'ce' or 'bce'" in refused.stderr


def test_eval_of_a_single_label_run_leads_with_accuracy_and_draws_its_confusion(cli, instruments, tmp_path):
    from sklearn.metrics import f1_score, precision_score

    from audiotok_cli.results.evaluate import read_predictions

    assert cli("train", *QUICK, "--run-name", "ce").exit_code == 0
    shown = cli("eval", "--run", "ce")
    assert shown.exit_code == 0, shown.output
    header = next(line for line in shown.stdout.splitlines() if "accuracy" in line)
    assert header.index("accuracy") < header.index("macro F1") < header.index("mAP")
    run = tmp_path / "data" / "runs" / "ce"
    assert f"confusion matrix: {run / 'confusion.png'}" in shown.stdout
    assert (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    test = json.loads((run / "eval.json").read_text())["splits"]["test"]
    scored = read_predictions(run, "test")
    truth, chosen = scored.labels.argmax(axis=1), scored.scores.argmax(axis=1)
    single = test["single_label"]
    assert sum(map(sum, single["confusion"])) == test["n_clips"] == len(scored.clips)
    assert all(clip.startswith("instruments/") for clip in scored.clips)
    assert test["accuracy"] == pytest.approx((truth == chosen).mean())
    assert test["macro_f1"] == pytest.approx(f1_score(truth, chosen, average="macro", zero_division=0))
    precision = precision_score(truth, chosen, labels=[0], average=None, zero_division=0)[0]
    assert single["per_class"]["bell"]["precision"] == pytest.approx(precision)
