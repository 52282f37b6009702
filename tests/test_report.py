"""`audiotok report`: one Markdown file whose every number is what `runs --json` and `compare --json`
say of the same store and run folders, with its figures beside it."""

from __future__ import annotations

import json
import shutil

from collections_kit import esc50, folders

QUICK = ["--epochs", "2", "--batch-size", "4", "--seeds", "3"]


def _cells(markdown: str, first_cell: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_numbers_are_the_runs_and_compare_figures(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOTOK_SPLIT__VAL_RATIO", "0.25")
    root = folders(tmp_path / "six", classes=tuple(f"class{i}" for i in range(6)), per_class=10)
    shutil.copy(root / "class2" / "take3.wav", root / "class2" / "copy.wav")
    for step in (["import", str(root)], ["split"], ["featurize", "--clip-seconds", "1"]):
        assert cli(*step).exit_code == 0, step
    for step in (["vocab", "--k", "8"], ["tokenize"]):
        assert cli(*step).exit_code == 0, step
    assert cli("train", "--model", "simple", *QUICK, "--embed-dim", "16").exit_code == 0
    assert cli("train", "--model", "baseline", *QUICK).exit_code == 0

    written = cli("report", str(tmp_path / "out"), "--resamples", "300")
    assert written.exit_code == 0, written.output
    assert "6 runs, 1 comparison with the best frame recipe" in written.stdout
    markdown = (tmp_path / "out" / "report.md").read_text()

    assert _cells(markdown, "six")[2:5] == ["61", "2", "1"]  # clips, clips with a copy, sets of copies
    for row in json.loads(cli("runs", "--json").stdout):
        name = row["name"].replace(" (seeds)", f" ({row['seeds']} seeds)") if row["seeds"] else row["name"]
        cells = _cells(markdown, name)
        assert cells[4] == row["test_rule"] == "20% of imported clips by group, stratified by class"
        assert cells[5] == f"{row['val_mAP']:.4f}"
        interval = f" ± {row['test_accuracy_ci95']:.4f}" if row["seeds"] else ""
        assert cells[6] == f"{row['test_accuracy']:.4f}{interval}"
        interval = f" ± {row['test_mAP_ci95']:.4f}" if row["seeds"] else ""
        assert cells[7] == f"{row['test_mAP']:.4f}{interval}"
        assert cells[8] == f"{row['gap_to_best_frames']:+.4f} (accuracy)"

    compared = json.loads(  # the only frame set is the best one
        cli("compare", "simple-logmel-k8", "baseline-logmel", "--resamples", "300", "--json").stdout
    )
    lines = [
        line for line in markdown.splitlines() if line.startswith("| simple-logmel-k8 | baseline-logmel |")
    ]
    assert len(lines) == 2  # accuracy, then mAP
    for line, d in zip(lines, compared["differences"], strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")][1:]  # after the test clips
        assert cells[1] == f"all ({compared['n_clips']})"
        assert cells[2:6] == [d["metric"], f"{d['a']:.4f}", f"{d['b']:.4f}", f"{d['difference']:+.4f}"]
        assert cells[6] == f"[{d['clips_ci95'][0]:+.4f}, {d['clips_ci95'][1]:+.4f}]"
        assert cells[7] == f"{d['clips_p_value']:.4f}"
        assert cells[8] == f"[{d['runs_ci95'][0]:+.4f}, {d['runs_ci95'][1]:+.4f}]"
        assert cells[9] == f"{d['runs_p_value']:.4f}"

    for figure in ("runs.png", "confusion-simple-logmel-k8--seeds.png", "vocab-logmel-k8.png"):
        assert f"]({figure})" in markdown and (tmp_path / "out" / figure).read_bytes()[:4] == b"\x89PNG"
    runs = tmp_path / "data" / "runs"
    reports = [json.loads((runs / f"baseline-logmel-seed{s}" / "eval.json").read_text()) for s in range(3)]
    confusion = sum(sum(map(sum, r["splits"]["test"]["single_label"]["confusion"])) for r in reports)
    assert confusion == 3 * int(_cells(markdown, "test")[1])  # three runs' test clips, summed

    only = cli("report", str(tmp_path / "tokens"), "--only", "simple-*", "--resamples", "300")
    assert only.exit_code == 0 and "3 runs, 0 comparisons" in only.stdout
    assert "baseline" not in (tmp_path / "tokens" / "report.md").read_text().split("## Recipes")[1]


def test_a_mixed_runs_folder_is_compared_split_by_split_and_never_described_falsely(cli, tmp_path):
    """A run scored on another split's test clips (here, fold 1 held out before the store was split
    on fold 2) is never paired with this split's frame runs: it is named, with why, and the token
    and frame sets on the same clips are still compared."""
    root = esc50(tmp_path / "esc", folds=3, per_fold=4)
    for step in (["import", str(root)], ["split", "--test-fold", "1"], ["featurize", "--clip-seconds", "1"]):
        assert cli(*step).exit_code == 0, step
    for step in (["vocab", "--k", "8"], ["tokenize"]):
        assert cli(*step).exit_code == 0, step
    assert cli("train", "--model", "simple", "--epochs", "2", "--run-name", "fold1-tokens").exit_code == 0
    for step in (
        ["split", "--test-fold", "2"],
        ["vocab", "--k", "8", "--overwrite"],
        ["tokenize", "--overwrite"],
    ):
        assert cli(*step).exit_code == 0, step
    for model in ("simple", "baseline"):
        trained = cli("train", "--model", model, "--epochs", "2", "--seeds", "2", "--run-name", model)
        assert trained.exit_code == 0, trained.output

    rows = {row["name"]: row for row in json.loads(cli("runs", "--json").stdout)}
    assert rows["fold1-tokens"]["test_rule"] == "fold 1" and rows["simple (seeds)"]["test_rule"] == "fold 2"
    assert rows["fold1-tokens"]["gap_to_best_frames"] is None  # no frame run scored on its clips
    assert rows["simple (seeds)"]["compared_with"] == "baseline (seeds)"

    written = cli("report", str(tmp_path / "out"), "--resamples", "100")
    assert written.exit_code == 0, written.output
    assert "1 comparison with the best frame recipe" in written.stdout
    markdown = (tmp_path / "out" / "report.md").read_text()
    compared = markdown.split("## Tokens against the best frame recipe")[1].split("## Recipes")[0]
    assert "No token run has a frame run" not in compared  # one has
    assert "### Test: fold 1" in compared and "### Test: fold 2" in compared
    assert "- fold1-tokens: no frame run was scored on its test clips" in compared
    assert "| simple | baseline | all (" in compared
    assert _cells(markdown, "fold1-tokens")[4] == "fold 1" and _cells(markdown, "fold1-tokens")[-1] == ""

    (tmp_path / "out" / "report.md").write_text("edited by hand")
    again = cli("report", str(tmp_path / "out"), "--resamples", "100")
    assert again.exit_code == 7
    assert "report.md already exists (edits made to it would be lost); pass --overwrite" in again.stderr
    assert (tmp_path / "out" / "report.md").read_text() == "edited by hand"
    assert cli("report", str(tmp_path / "out"), "--resamples", "100", "--overwrite").exit_code == 0
    (tmp_path / "a-file").write_text("not a folder")
    into_a_file = cli("report", str(tmp_path / "a-file"))
    assert (
        into_a_file.exit_code == 3 and "a-file is a file; give a folder for report.md" in into_a_file.stderr
    )
    runs_a_file = cli("report", str(tmp_path / "elsewhere"), "--runs-dir", str(tmp_path / "a-file"))
    assert runs_a_file.exit_code == 3
    assert "paths.runs_dir:" in runs_a_file.stderr and "a-file is a file, not a folder" in runs_a_file.stderr
    full = tmp_path / "full"  # a disk that fills as the figures are written: /dev/full
    full.mkdir()
    (full / "runs.png").symlink_to("/dev/full")
    filled = cli("report", str(full), "--resamples", "100")
    assert filled.exit_code == 10, filled.output
    assert " ".join(filled.stderr.split()) == (
        f"error: disk full writing {full}; free space and run the command again: finished work is kept"
    )
    assert not (full / "report.md").exists()
