"""`report`: one Markdown file with its figures, for a paper or a lab wiki: the data and its split
protocol, the runs with their intervals, each token recipe against the best frame recipe (the
figures of `compare`), each run's recipe, and the pictures. Every number and figure is computed
here from the store and the run folders (the same functions `runs`, `compare` and `inspect` use),
never copied from a log."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from audiotok_cli.atomic import write_atomic
from audiotok_cli.errors import AudiotokError
from audiotok_cli.settings import Paths
from audiotok_cli.stages.inspect_vocab import inspect_vocab
from audiotok_cli.store import SPLITS, Pick, Store, split_code
from audiotok_cli.training.compare import RunRow, compare_runs, plot_runs
from audiotok_cli.training.figures import plot_confusion, plot_validation
from audiotok_cli.training.runs import read_record
from audiotok_cli.training.significance import Comparison, compare

log = logging.getLogger(__name__)
REPORT = "report.md"
SHOWN_CLASSES = 60  # a per-class table longer than this is summed up instead
FOLD_VOCABULARY = re.compile(r"-fold\d+$")  # `train --cv`'s per-fold vocabularies


@dataclass
class ReportResult:
    path: Path
    runs: int
    comparisons: int
    figures: list[str] = field(default_factory=list)


def write_report(
    paths: Paths, out_dir: Path, only: str | None = None, resamples: int = 9999, seed: int = 0
) -> ReportResult:
    """Write `out_dir/report.md` and its PNGs (see the module's docstring)."""
    rows = compare_runs(paths.runs_dir, "name", only)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(paths.store, mode="r")
    result = ReportResult(out_dir / REPORT, sum(not row.folds and not row.seeds for row in rows), 0)
    comparisons = _token_vs_frames(paths.runs_dir, rows, resamples, seed)
    result.comparisons = len(comparisons)
    sections = [
        _title(paths, only),
        _data(store),
        _runs(rows, plot_runs(rows, out_dir / "runs.png"), result),
        _comparisons(comparisons, resamples, seed),
        _recipes(rows),
        _figures(paths, store, rows, out_dir, result),
    ]
    write_atomic(result.path, ("\n\n".join(section.strip() for section in sections) + "\n").encode())
    return result


def _title(paths: Paths, only: str | None) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    chosen = f", runs matching `{only}`" if only else ""
    return (
        f"# audiotok report\n\nMade {made} from the store `{paths.store}` and the runs in `{paths.runs_dir}`"
        f"{chosen}. Every number and figure here is recomputed from them (`audiotok report`)."
    )


def _data(store: Store) -> str:
    record, split = store.clips_record, store.split
    lines = ["## Data", ""]
    collections = store.collections
    if collections:
        lines += [
            "| collection | layout | clips | clips with an identical copy | sets of copies | found by |"
        ]
        lines += ["|---|---|---:|---:|---:|---|"]
        ids = store.ytids().astype(str)
        for name, collection in collections.items():
            clips = int(np.char.startswith(ids, f"{name}/").sum())
            digests = [digest for digest in collection.contents.values() if digest]
            counts = np.unique(digests, return_counts=True)[1] if digests else np.zeros(0)
            copies, sets = int(counts[counts > 1].sum()), int((counts > 1).sum())
            found = "the same bytes" if collection.dedupe == "exact" else "the same samples"
            lines.append(f"| {name} | {collection.layout} | {clips} | {copies} | {sets} | {found} |")
        lines.append("")
    else:
        lines += [f"AudioSet clips ({store.n_clips} in the store, sources {', '.join(record.sources)}).", ""]
    if split is None:
        return "\n".join([*lines, "The store is not split yet."])
    groups = store.groups()
    how = [f"test: {split.test_rule}", f"val: {split.val_ratio:.0%} of the rest"]
    how += ["drawn by group"] * split.val_by_group + ["stratified by class"] * split.stratify
    lines += [f"Split protocol: {'; '.join(how)}; seed {split.seed}. "
              f"{len(set(groups.tolist()) - {''})} groups (speakers, recordings, sets of copies) are kept "
              "whole.", ""]  # fmt: skip
    lines += _class_counts(store)
    return "\n".join(lines)


def _class_counts(store: Store) -> list[str]:
    names = store.classes.names
    labels, codes = store.sparse_labels(), store.splits()
    shown = [name for name in SPLITS[1:] if name != "unassigned"]
    counts = {name: np.asarray(labels[codes == split_code(name)].sum(axis=0)).ravel() for name in shown}
    clips = {name: int((codes == split_code(name)).sum()) for name in shown}
    lines = ["| split | clips | classes with a clip |", "|---|---:|---:|"]
    lines += [f"| {name} | {clips[name]} | {int((counts[name] > 0).sum())} |" for name in shown]
    present = np.flatnonzero(sum(counts.values()) > 0)
    if len(present) <= SHOWN_CLASSES:
        lines += ["", "| class | " + " | ".join(shown) + " |", "|---|" + "---:|" * len(shown)]
        lines += [
            f"| {names[c]} | " + " | ".join(str(int(counts[s][c])) for s in shown) + " |" for c in present
        ]
    return lines


def _runs(rows: list[RunRow], chart: Path, result: ReportResult) -> str:
    result.figures.append(chart.name)
    lines = [
        "## Runs",
        "",
        "Test figures of each run; a set of seeds or folds as its mean ± the 95% interval of the mean "
        "(Student's t). vs frames: the headline figure minus the best frame row's (a set counts as its "
        "mean).",
        "",
        "| run | model | input | loss | val mAP | test accuracy | test mAP | vs frames |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.val_mlm_loss is not None or row.damaged:
            continue
        gap = "" if row.gap_to_best_frames is None else f"{row.gap_to_best_frames:+.4f} ({row.gap_metric})"
        lines.append(
            f"| {_name(row)} | {row.model} | {row.input} | {row.loss or '-'} | {_figure(row.val_mAP)} | "
            f"{_figure(row.test_accuracy, row.test_accuracy_ci95)} | "
            f"{_figure(row.test_mAP, row.test_mAP_ci95)} | {gap} |"
        )
    return "\n".join([*lines, "", f"![runs]({chart.name})"])


def _name(row: RunRow) -> str:
    """A row's name, a set's with its size: `bert-logmel (3 seeds)`."""
    if row.seeds:
        return row.name.removesuffix(" (seeds)") + f" ({row.seeds} seeds)"
    if row.folds:
        return row.name.removesuffix(" (cv)") + f" ({row.folds} folds)"
    return row.name


def _figure(value: float | None, half: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + (f" ± {half:.4f}" if half is not None else "")


def _base(row: RunRow) -> str | None:
    """What `compare` calls a row: a run's name, or a set's `NAME` (None for a set of runs named by hand)."""
    if not (row.seeds or row.folds):
        return row.name
    suffix = " (seeds)" if row.seeds else " (cv)"
    return row.name.removesuffix(suffix) if " on " not in row.name else None


def _token_vs_frames(runs_dir: Path, rows: list[RunRow], resamples: int, seed: int) -> list[Comparison]:
    """Every token row (a set, or a run in none) against the best frame row, as `compare` computes it."""
    scored = [row for row in rows if row.test_mAP is not None and not row.member_of and _base(row)]
    frames = [row for row in scored if row.input.startswith("frames")]
    if not frames:
        return []

    def headline(row: RunRow) -> float:
        return row.test_accuracy if row.test_accuracy is not None else row.test_mAP

    best = max(frames, key=headline)
    comparisons = []
    for row in scored:
        if row.input.startswith("tokens"):
            try:
                comparisons.append(compare(runs_dir, _base(row), _base(best), "test", resamples, seed))
            except AudiotokError as why:  # scored on other clips: said, not compared
                log.warning("report: %s not compared with %s (%s)", row.name, best.name, why)
    return comparisons


def _comparisons(comparisons: list[Comparison], resamples: int, seed: int) -> str:
    lines = [
        "## Tokens against the best frame recipe",
        "",
        f"Paired over the same test clips: the difference tokens - frames, its 95% interval (scipy's "
        f"bootstrap over clips, BCa) and p-value (scipy's paired permutation test), {resamples} resamples, "
        f"seed {seed}; for sets, over the runs too (Welch's t over seeds, paired t over folds).",
        "",
    ]
    if not comparisons:
        return "\n".join([*lines, "No token run and frame run scored on the same clips."])
    lines += [
        "| tokens | frames | metric | tokens | frames | difference | 95% interval (clips) | p (clips) "
        "| 95% interval (runs) | p (runs) |",
        "|---|---|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for c in comparisons:
        for d in c.differences:
            runs = "-" if d.runs_ci95 is None else f"[{d.runs_ci95[0]:+.4f}, {d.runs_ci95[1]:+.4f}]"
            lines.append(
                f"| {c.a} | {c.b} | {d.metric} | {d.a:.4f} | {d.b:.4f} | {d.difference:+.4f} | "
                f"[{d.clips_ci95[0]:+.4f}, {d.clips_ci95[1]:+.4f}] | {_p(d.clips_p_value)} | {runs} | "
                f"{_p(d.runs_p_value)} |"
            )
    return "\n".join(lines)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _recipes(rows: list[RunRow]) -> str:
    lines = ["## Recipes", "", "Training settings that differ from the defaults, and the seeds.", ""]
    lines += [
        "| run | model | input | loss | parameters | epochs | recipe |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        if not row.member_of and not row.damaged:
            lines.append(
                f"| {_name(row)} | {row.model} | {row.input} | {row.loss or '-'} | {row.parameters:,} | "
                f"{row.epochs} | {row.recipe} |"
            )
    return "\n".join(lines)


def _figures(paths: Paths, store: Store, rows: list[RunRow], out_dir: Path, result: ReportResult) -> str:
    """Per row (a set, or a run in none): its validation curves and, for single-label runs, its test
    confusion matrix summed over its runs; then each token vocabulary drawn by `inspect`."""
    lines = ["## Figures"]
    members = _members(rows)
    vocabularies: set[str] = set()
    for row in rows:
        if row.member_of or row.damaged or row.val_mlm_loss is not None:
            continue
        runs = members.get(row.name, [row.name])
        slug = _slug(row.name)
        histories = {run: record.history for run in runs if (record := read_record(paths.runs_dir / run))}
        curves = plot_validation(histories, out_dir / f"curves-{slug}.png", _name(row))
        lines += ["", f"### {_name(row)}", "", f"![validation]({curves.name})"]
        result.figures.append(curves.name)
        matrix = _summed_confusion(paths.runs_dir, runs)
        if matrix is not None:
            title = f"{_name(row)}: test confusion, summed over {len(runs)} run{'s' * (len(runs) > 1)}"
            confusion = plot_confusion(
                matrix, list(store.classes.names), out_dir / f"confusion-{slug}.png", title
            )
            lines += ["", f"![confusion]({confusion.name})"]
            result.figures.append(confusion.name)
        record = read_record(paths.runs_dir / runs[0])
        if record is not None and record.inputs.tokens and record.inputs.tokens not in vocabularies:
            vocabularies.add(record.inputs.tokens)
    folds = sorted(tokens for tokens in vocabularies if FOLD_VOCABULARY.search(tokens))
    if folds:  # clustered on a fold's split, which `train --cv` has since put back
        lines += [
            "",
            f"A cross-validation's vocabularies (`{folds[0]}`, one a fold) are each drawn by "
            "`audiotok inspect` under their fold's split (`split --test-fold N`).",
        ]
    for tokens in sorted(vocabularies - set(folds)):
        try:
            drawn = inspect_vocab(paths.store, Pick(tokens), out_dir / f"vocab-{_slug(tokens)}.png")
        except AudiotokError as why:  # merged tokens, or tokens since replaced: said, not drawn
            log.warning("report: vocabulary %s not drawn (%s)", tokens, why)
            continue
        share = drawn.splits["train"].label_information_share if "train" in drawn.splits else float("nan")
        lines += [
            "",
            f"### Vocabulary {tokens}",
            "",
            f"{drawn.n_clusters} tokens, {drawn.dead} unused, {drawn.tiny} rare; a train token carries "
            f"{share:.1%} of H(class).",
            "",
            f"![vocabulary]({Path(drawn.plot).name})",
        ]
        result.figures.append(Path(drawn.plot).name)
    return "\n".join(lines)


def _members(rows: list[RunRow]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for row in rows:
        if row.member_of:
            members.setdefault(row.member_of, []).append(row.name)
    return members


def _summed_confusion(runs_dir: Path, runs: list[str]) -> np.ndarray | None:
    total = None
    for run in runs:
        report = runs_dir / run / "eval.json"
        if not report.exists():
            return None
        single = json.loads(report.read_text())["splits"].get("test", {}).get("single_label")
        if single is None:
            return None
        matrix = np.asarray(single["confusion"])
        total = matrix if total is None else total + matrix
    return total


def _slug(name: str) -> str:
    """A file name's part for a run or set name (`bert-logmel (seeds)` -> `bert-logmel--seeds`)."""
    return "".join(
        character if character.isalnum() or character in "-_." else "-" for character in name
    ).strip("-")
