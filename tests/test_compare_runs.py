"""`audiotok runs`: one row per run, equal to the runs' own records and eval reports."""

from __future__ import annotations

import json

import pytest

from audiotok_cli.training.runs import REPORT, load_run


@pytest.fixture
def three_runs(cli, featurized):
    for args in (["vocab", "--k", "16"], ["tokenize"], ["split", "--val-ratio", "0.25"]):
        assert cli(*args).exit_code == 0, args
    assert cli("vocab", "--k", "16", "--overwrite").exit_code == 0  # on the new split
    assert cli("tokenize", "--overwrite").exit_code == 0
    quick = ["--epochs", "3", "--batch-size", "8"]
    for model in ("simple", "baseline", "lstm"):
        recipe = ["--lr", "3e-3", "--mixup", "0.2", "--seed", "3"] if model == "baseline" else []
        trained = cli("train", "--model", model, *quick, "--hidden-size", "16", "--embed-dim", "16", *recipe)
        assert trained.exit_code == 0, trained.output
    for run in ("simple-logmel-k16", "baseline-logmel"):
        assert cli("eval", "--run", run).exit_code == 0
    for scored in ("eval.json", "predictions.safetensors"):  # train scored it: the lstm run is left unscored
        (featurized.runs_dir / "lstm-logmel-k16" / scored).unlink()
    return featurized.runs_dir


def test_runs_rows_equal_each_runs_record_and_report(cli, three_runs):
    result = cli("runs", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"simple-logmel-k16", "baseline-logmel", "lstm-logmel-k16"}
    for name, row in rows.items():
        run = load_run(three_runs / name)
        assert row["parameters"] == sum(p.numel() for p in run.model.parameters())
        assert row["epochs"] == 3 and row["val_mAP"] == max(e["val_mAP"] for e in run.record.history)
        assert row["train_seconds"] == pytest.approx(sum(e["seconds"] for e in run.record.history), abs=0.1)
    for name in ("simple-logmel-k16", "baseline-logmel"):
        test = json.loads((three_runs / name / REPORT).read_text())["splits"]["test"]
        assert rows[name]["test_mAP"] == test["mAP"] and rows[name]["prior_mAP"] == test["prior_mAP"]
    assert rows["simple-logmel-k16"]["input"] == "tokens logmel-k16"
    # how each was trained, where it differs from the defaults (the name says none of it)
    assert (
        rows["baseline-logmel"]["recipe"]
        == "embed-dim 16, hidden-size 16, batch 8, lr 0.003, mixup 0.2, seed 3"
    )
    assert rows["simple-logmel-k16"]["recipe"] == "embed-dim 16, hidden-size 16, batch 8, seed 0"
    assert rows["baseline-logmel"]["input"] == "frames logmel"
    assert rows["baseline-logmel"]["gap_to_best_frames"] == 0.0
    expected_gap = rows["simple-logmel-k16"]["test_mAP"] - rows["baseline-logmel"]["test_mAP"]
    assert rows["simple-logmel-k16"]["gap_to_best_frames"] == pytest.approx(expected_gap)
    assert (
        rows["lstm-logmel-k16"]["test_mAP"] is None and rows["lstm-logmel-k16"]["gap_to_best_frames"] is None
    )
    ordered = [row["name"] for row in json.loads(result.stdout)]
    assert ordered[-1] == "lstm-logmel-k16"  # unscored runs sort last


def test_runs_table_sort_and_plot(cli, three_runs, tmp_path):
    by_name = cli("runs", "--sort", "name", "--json")
    names = [row["name"] for row in json.loads(by_name.stdout)]
    assert names == ["baseline-logmel", "lstm-logmel-k16", "simple-logmel-k16"]
    table = cli("runs", "--plot", str(tmp_path / "runs.png"))
    assert table.exit_code == 0 and "frames logmel" in table.stdout and "tokens logmel-k16" in table.stdout
    assert (tmp_path / "runs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"chart: {tmp_path / 'runs.png'}" in table.stdout
    assert "lstm-logmel-k16 is not scored on test yet: `audiotok eval --run lstm-logmel-k16`" in table.stdout
    assert "simple-logmel-k16 is not scored" not in table.stdout
    bad = cli("runs", "--sort", "speed")
    assert bad.exit_code == 3 and "invalid --sort 'speed'" in bad.stderr


def test_runs_without_any_run_names_the_fix(cli):
    result = cli("runs")
    assert result.exit_code == 4 and "run `audiotok train` first" in result.stderr


def _table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line[:1] in (" ", "│", "┃", "┏", "┡", "└", "─")]


def test_at_80_columns_run_names_fold_only_at_their_joints_and_the_prior_stays(cli, three_runs, monkeypatch):
    long = "simple-logmel-clip-mean.deltas-pq8x256-seed2"  # the name the issue saw cut mid-word
    trained = cli("train", "--model", "simple", "--epochs", "1", "--batch-size", "8", "--run-name", long)
    assert trained.exit_code == 0, trained.output
    monkeypatch.setenv("COLUMNS", "80")
    table = cli("runs")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == [] and "…" not in table.stdout
    start = next(i for i, line in enumerate(lines) if line.startswith("simple-logmel-clip-"))
    pieces = [line.split()[0] for line in lines[start : start + 3]]
    assert "".join(pieces) == long and all(piece[-1] in "-." for piece in pieces[:-1])  # never mid-word
    prior = json.loads(cli("runs", "--json").stdout)[0]["prior_mAP"]
    assert f"label prior's test mAP: {prior:.3f}" in table.stdout


@pytest.mark.parametrize("columns", [80, 200])
def test_runs_and_eval_tables_fit_the_terminal_with_every_name_and_score_whole(
    cli, three_runs, monkeypatch, columns
):
    rows = json.loads(cli("runs", "--json").stdout)
    monkeypatch.setenv("COLUMNS", str(columns))
    table = cli("runs")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines() if columns == 80 else _table_lines(table.stdout)
    assert lines and max(map(len, lines)) <= columns
    digits = 3 if columns == 80 else 4  # the narrow form rounds to what a comparison needs
    for row in rows:
        assert any(row["name"] in line for line in lines), row["name"]  # never `lst…`
        line = next(line for line in lines if row["name"] in line)
        assert f"{row['val_mAP']:.{digits}f}" in line
        if row["test_mAP"] is not None:
            assert f"{row['test_mAP']:.{digits}f}" in line
    wide_only = any("parameters" in line for line in _table_lines(table.stdout))
    assert wide_only == (columns == 200)
    if columns == 80:  # what the narrow table leaves out is said below it
        assert "baseline-logmel: embed-dim 16, hidden-size 16, batch 8, lr 0.003, mixup 0.2, seed 3" in (
            " ".join(table.stdout.split())
        )
        assert "a wider terminal or --json" in table.stdout
    report = cli("eval", "--run", "baseline-logmel")
    assert report.exit_code == 0, report.output
    lines = _table_lines(report.stdout)
    assert lines and max(map(len, lines)) <= columns
    scores = json.loads((three_runs / "baseline-logmel" / REPORT).read_text())["splits"]
    for split in ("val", "test"):
        for key in ("mAP", "AUC", "f1_macro_tuned"):
            assert f"{scores[split][key]:.4f}" in report.stdout
    assert any("F1 macro tuned" in line for line in lines)


def test_runs_lists_every_readable_run_and_marks_the_damaged_ones(cli, three_runs):
    (three_runs / "lstm-logmel-k16" / "last.safetensors").write_bytes(b"not a checkpoint")
    (three_runs / "simple-logmel-k16" / REPORT).write_text("{")
    result = cli("runs")
    assert result.exit_code == 0, result.output
    assert "baseline-logmel" in result.stdout and "simple-logmel-k16" in result.stdout
    assert "lstm-logmel-k16" in result.stdout  # listed, marked
    warnings = " ".join(result.stderr.split())
    assert "lstm-logmel-k16 is damaged:" in warnings and "last.safetensors" in warnings
    assert f"simple-logmel-k16 is damaged: {three_runs / 'simple-logmel-k16' / REPORT} is damaged" in warnings
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert rows["lstm-logmel-k16"]["model"] == "damaged" and rows["baseline-logmel"]["damaged"] == ""


def test_token_rows_are_measured_against_the_frame_row_of_best_val_never_of_best_test(cli, three_runs):
    """Model selection on val: where val and test disagree, the frame row chosen is val's best."""
    trained = cli("train", "--model", "baseline", "--epochs", "1", "--batch-size", "8", "--run-name", "other")
    assert trained.exit_code == 0, trained.output
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    by_val = max(("baseline-logmel", "other"), key=lambda name: rows[name]["val_mAP"])
    by_test = "other" if by_val == "baseline-logmel" else "baseline-logmel"
    report = json.loads((three_runs / by_test / REPORT).read_text())
    report["splits"]["test"]["mAP"] = rows[by_val]["test_mAP"] + 0.1  # test now prefers the other one
    (three_runs / by_test / REPORT).write_text(json.dumps(report))
    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    token = rows["simple-logmel-k16"]
    assert token["compared_with"] == by_val
    assert token["gap_to_best_frames"] == pytest.approx(token["test_mAP"] - rows[by_val]["test_mAP"])


def test_a_set_sits_above_its_runs_with_epochs_at_80_columns_and_only_selects_sets(
    cli, three_runs, monkeypatch
):
    assert (
        cli("train", "--model", "simple", "--epochs", "2", "--batch-size", "8", "--seeds", "2").exit_code == 0
    )
    rows = json.loads(cli("runs", "--json").stdout)
    names = [row["name"] for row in rows]
    at = names.index("simple-logmel-k16 (seeds)")
    assert sorted(names[at + 1 : at + 3]) == ["simple-logmel-k16-seed0", "simple-logmel-k16-seed1"]
    assert all(not row["member_of"] for row in rows[:at])  # nothing between a set and its runs
    monkeypatch.setenv("COLUMNS", "80")
    table = cli("runs")
    header = " ".join(table.stdout.split("\n")[1:4])
    assert "ep." in header and "val" in header and "mAP" in header
    lines = table.stdout.splitlines()
    row = next(
        i for i, line in enumerate(lines) if lines[i + 1].startswith("(seeds) 2 runs")
    )  # its name folds
    assert lines[row].split()[4].rstrip("*") == "2"  # run, model, input (2 words), then the epochs
    only = json.loads(cli("runs", "--only", "*(seeds)*", "--json").stdout)
    assert [row["name"] for row in only] == names[at : at + 3]
