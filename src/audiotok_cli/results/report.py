"""`report`: one Markdown file with its figures, for a paper or a lab wiki: the data and its split
protocol, the runs with their intervals, each token recipe against the best frame recipe (the
figures of `compare`), each run's recipe, and the pictures. Every number and figure is computed
here from the store and the run folders (the same functions `runs`, `compare` and `inspect` use),
never copied from a log."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from audiotok_cli.atomic import naming_full_disk, write_atomic
from audiotok_cli.errors import AudiotokError, OutputExistsError, SettingsError
from audiotok_cli.results.compare import BCA_MAX_CLIPS, Comparison, compare
from audiotok_cli.results.figures import plot_confusion, plot_validation
from audiotok_cli.results.methods import Rebuilt, methods
from audiotok_cli.results.runs import RunRow, best_frames, by_split, compare_runs, plot_runs
from audiotok_cli.settings import Paths
from audiotok_cli.stages.inspect_vocab import VocabReport, inspect_vocab
from audiotok_cli.store import SPLITS, Pick, Store, split_code
from audiotok_cli.training.runs import read_record, read_report

log = logging.getLogger(__name__)
REPORT = "report.md"
IMPROVING = "\\*"  # marks the epochs of a run whose best epoch was its last
SHOWN_CLASSES = 60  # a per-class table longer than this is summed up instead
FOLD_VOCABULARY = re.compile(r"-fold\d+$")  # `train --cv`'s per-fold vocabularies


@dataclass
class ReportResult:
    path: Path
    runs: int
    comparisons: int
    figures: list[str] = field(default_factory=list)


def write_report(
    paths: Paths,
    out_dir: Path,
    only: str | None = None,
    resamples: int = 9999,
    seed: int = 0,
    overwrite: bool = False,
) -> ReportResult:
    """Write `out_dir/report.md` and its PNGs (see the module's docstring); a report already there
    (perhaps edited by hand) is replaced only with `overwrite`."""
    _require_writable(out_dir, overwrite)
    rows = compare_runs(paths.runs_dir, "name", only)
    store = Store.open(paths.store, mode="r")
    with naming_full_disk(out_dir):
        return _write(paths, store, rows, out_dir, only, resamples, seed)


def _require_writable(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingsError(f"{out_dir} is a file; give a folder for report.md and its figures")
    if (out_dir / REPORT).exists() and not overwrite:
        raise OutputExistsError(
            f"{out_dir / REPORT} already exists (edits made to it would be lost); pass --overwrite, or "
            "another folder"
        )


def _write(
    paths: Paths, store: Store, rows: list[RunRow], out_dir: Path, only: str | None, resamples: int, seed: int
) -> ReportResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out_dir / REPORT, sum(not row.folds and not row.seeds for row in rows), 0)
    comparisons = _token_vs_frames(paths.runs_dir, rows, resamples, seed)
    result.comparisons = sum(len(group.comparisons) for group in comparisons)
    sections = [
        _title(paths, only),
        _data(store),
        _runs(rows, plot_runs(rows, out_dir / "runs.png"), result),
        _comparisons(comparisons, resamples, seed),
        _recipes(rows),
        methods(store, _rebuilt(paths.runs_dir, rows)),
        _figures(paths, store, rows, out_dir, result),
    ]
    write_atomic(result.path, ("\n\n".join(section.strip() for section in sections) + "\n").encode())
    return result


def _title(paths: Paths, only: str | None) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    chosen = f", runs matching `{only}`" if only else ""
    home = paths.store.resolve().parent  # the data dir, where the store is in its default place
    store, runs = (_relative(path, home) for path in (paths.store, paths.runs_dir))
    return (
        f"# audiotok report\n\nMade {made} from the store `{store}` and the runs in `{runs}`{chosen} "
        "(paths in the data dir). Every number and figure here is recomputed from them (`audiotok report`)."
    )


def _relative(path: Path, home: Path) -> str:
    """A path as the report shows it: within the data dir, never the author's absolute path."""
    try:
        return path.resolve().relative_to(home).as_posix()
    except ValueError:
        return path.name


def _rebuilt(runs_dir: Path, rows: list[RunRow]) -> list[Rebuilt]:
    """The report's rows as Methods rebuilds them: a set by its base name (`train --seeds`, `--cv`),
    a run by its own, the members of a set named by hand each on their own."""
    members = _members(rows)
    rebuilt = []
    for row in rows:
        if row.member_of or row.damaged or row.val_mlm_loss is not None:
            continue
        names = members.get(row.name, [row.name])
        records = {name: record for name in names if (record := read_record(runs_dir / name))}
        if not records:
            continue
        seeds = sorted({record.seed for record in records.values()})
        base = _base(row)
        if base is None:  # runs trained by hand under names of their own
            rebuilt += [Rebuilt(name, record, [record.seed]) for name, record in records.items()]
        else:
            rebuilt.append(Rebuilt(base, next(iter(records.values())), seeds, cv=bool(row.folds)))
    return rebuilt


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
    how = [f"test: {split.test_rule}", f"val: {split.val_ratio:.0%} of the rest"]
    how += ["drawn by group"] * split.val_by_group + ["stratified by class"] * split.stratify
    lines += [f"Split protocol: {'; '.join(how)}; seed {split.seed}. {_groups_whole(store)}", ""]
    lines += [*_leak(split), *_class_counts(store)]
    return "\n".join(lines)


def _groups_whole(store: Store) -> str:
    """Whether the split keeps each group (speaker, recording, set of copies) on one side: counted on
    the split itself, never assumed from the protocol."""
    groups, codes = store.groups(), store.splits()
    sides = codes != split_code("unassigned")
    grouped = sides & (groups != "")
    if not grouped.any():
        return "No clip has a group."
    pairs = np.unique(np.stack([groups[grouped].astype(str), codes[grouped].astype(str)]), axis=1)
    names, counts = np.unique(pairs[0], return_counts=True)
    apart = int((counts > 1).sum())
    if not apart:
        return f"Each of the {len(names)} groups (speakers, recordings, sets of copies) lies on one side."
    return (
        f"{apart} of the {len(names)} groups (speakers, recordings, sets of copies) have clips on more "
        "than one side of train/val/test."
    )


def _leak(split) -> list[str]:
    """The data section's words on copies the split separates (store/leaks.py)."""
    if split.dropped_leaked:
        return [
            f"`split --drop-leaked` left {split.dropped_leaked} clips with an identical copy on a training "
            "side out of test and val.",
            "",
        ]
    if not split.leaked_sets:
        return []
    return [
        f"**Leaked copies:** {split.leaked_sets} sets of copies lie on more than one side of train/val/test: "
        f"{split.leaked_test} test clips have an identical copy in train or val, {split.leaked_val} val "
        "clips one in train. Every test figure below is given twice: over all test clips and leak-free "
        "(without those clips).",
        "",
    ]


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
        "(Student's t). vs frames: the headline figure minus that of the frame row of best val mAP "
        "scored on the same test clips (a set counts as its mean).",
        "",
    ]
    leaky = any(row.leaked_clips for row in rows)
    header = ["run", "model", "input", "loss", "test clips", "val mAP", "test accuracy", "test mAP"]
    header += ["leak-free test accuracy", "leak-free test mAP"] * leaky + ["vs frames"]
    lines += ["| " + " | ".join(header) + " |", "|---|---|---|---|---|" + "---:|" * (len(header) - 5)]
    for row in rows:
        if row.val_mlm_loss is not None or row.damaged:
            continue
        gap = "" if row.gap_to_best_frames is None else f"{row.gap_to_best_frames:+.4f} ({row.gap_metric})"
        free = [_figure(row.test_accuracy_leak_free), _figure(row.test_mAP_leak_free)] * bool(
            row.leaked_clips
        )
        cells = [
            _name(row),
            row.model,
            row.input,
            row.loss or "-",
            row.test_rule or "-",
            _figure(row.val_mAP),
        ]
        cells += [
            _figure(row.test_accuracy, row.test_accuracy_ci95),
            _figure(row.test_mAP, row.test_mAP_ci95),
        ]
        cells += (free or ["-", "-"]) * leaky + [gap]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", f"![runs]({chart.name})"])


def _name(row: RunRow) -> str:
    """A row's name, a set's with its size: `bert-logmel (3 seeds)`."""
    if row.seeds:
        return f"{row.label} ({row.seeds} seeds)"
    if row.folds:
        return f"{row.label} ({row.folds} folds)"
    return row.name


def _figure(value: float | None, half: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + (f" ± {half:.4f}" if half is not None else "")


def _base(row: RunRow) -> str | None:
    """What `compare` calls a row: a run's name, or a set's `NAME` (None for a set of runs named by hand)."""
    if not (row.seeds or row.folds):
        return row.name
    return row.set_name or None


@dataclass
class SplitComparisons:
    """The token rows scored on one split's test clips, each against that split's best frame row."""

    test_rule: str
    frames: str | None  # the frame row chosen (by val mAP), None where the split has none
    comparisons: list[Comparison] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "row: why it is not compared"


def _token_vs_frames(runs_dir: Path, rows: list[RunRow], resamples: int, seed: int) -> list[SplitComparisons]:
    """Per set of test clips (runs on other splits or folds are never paired), every token row (a
    set, or a run in none) against the frame row of best val mAP, as `compare` computes it."""
    scored = [row for row in rows if row.test_mAP is not None and not row.member_of]
    found = []
    for comparable in by_split(scored).values():
        tokens = [row for row in comparable if row.input.startswith("tokens")]
        if not tokens:
            continue
        best = best_frames(comparable)
        group = SplitComparisons(comparable[0].test_rule, best.name if best else None)
        found.append(group)
        for row in tokens:
            if best is None:
                group.left_out.append(f"{row.name}: no frame run was scored on its test clips")
            elif _base(row) is None or _base(best) is None:
                group.left_out.append(f"{row.name}: a set of runs named by hand; `compare` takes run names")
            else:
                try:
                    group.comparisons.append(
                        compare(runs_dir, _base(row), _base(best), "test", resamples, seed)
                    )
                except AudiotokError as why:  # scored on other clips after all: said, not compared
                    group.left_out.append(f"{row.name}: {why}")
    return found


def _comparisons(groups: list[SplitComparisons], resamples: int, seed: int) -> str:
    lines = [
        "## Tokens against the best frame recipe",
        "",
        f"Paired over the same test clips: the difference tokens - frames, its 95% interval (scipy's "
        f"bootstrap over clips: BCa up to {BCA_MAX_CLIPS:,} clips, percentile past them) and p-value "
        f"(scipy's paired permutation test), {resamples} resamples, "
        f"seed {seed}; for sets, over the runs too (Welch's t over seeds, paired t over folds). The frame "
        "recipe is the frame run or set of best **val** mAP on the same test clips: test is reported, "
        "never used to choose.",
        "",
    ]
    if not any(group.comparisons for group in groups):
        lines += ["No token run has a frame run scored on the same test clips.", ""]
    for group in groups:
        if len(groups) > 1:
            lines += [f"### Test: {group.test_rule}", ""]
        if group.comparisons:
            lines += _comparison_table(group.comparisons)
        lines += [f"- {why}" for why in group.left_out]
        lines.append("")
    return "\n".join(lines)


def _comparison_table(comparisons: list[Comparison]) -> list[str]:
    lines = [
        "| tokens | frames | test clips | metric | tokens | frames | difference | 95% interval (clips) "
        "| p (clips) | 95% interval (runs) | p (runs) |",
        "|---|---|---|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for c in comparisons:
        shown = [("all", c.n_clips, c.differences)]
        shown += [("leak-free", c.n_clips - c.leaked_clips, c.leak_free)] * bool(c.leak_free)
        for clips, n, differences in shown:
            for d in differences:
                runs = "-" if d.runs_ci95 is None else f"[{d.runs_ci95[0]:+.4f}, {d.runs_ci95[1]:+.4f}]"
                lines.append(
                    f"| {c.a} | {c.b} | {clips} ({n}) | {d.metric} | {d.a:.4f} | {d.b:.4f} | "
                    f"{d.difference:+.4f} | [{d.clips_ci95[0]:+.4f}, {d.clips_ci95[1]:+.4f}] | "
                    f"{_p(d.clips_p_value)} | {runs} | {_p(d.runs_p_value)} |"
                )
    return lines


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _recipes(rows: list[RunRow]) -> str:
    lines = [
        "## Recipes",
        "",
        "Training settings that differ from the defaults, and the seeds. Epochs marked \\* ended on their "
        "best val epoch: the model may still have been improving, and more epochs may change a comparison.",
        "",
    ]
    lines += [
        "| run | model | input | front end | vocabulary | loss | parameters | epochs | recipe |",
        "|---|---|---|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        if not row.member_of and not row.damaged:
            lines.append(
                f"| {_name(row)} | {row.model} | {row.input} | {row.front_end} | {row.vocabulary or '-'} | "
                f"{row.loss or '-'} | {row.parameters:,} | {row.epochs}{IMPROVING * row.still_improving} | "
                f"{row.recipe} |"
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
        lines += [
            "",
            f"### Vocabulary {tokens}",
            "",
            f"{drawn.n_clusters} tokens, {drawn.dead} unused, {drawn.tiny} rare; {_information(drawn)}.",
            "",
            f"![vocabulary]({Path(drawn.plot).name})",
        ]
        result.figures.append(Path(drawn.plot).name)
    return "\n".join(lines)


def _information(drawn: VocabReport) -> str:
    """How much of H(class) a train token carries: the one code's, or each codebook's and the joint
    code's (pq, rvq), labelled; a code too thin for the figure says so."""
    codes = drawn.codes or {"a token": {"train": drawn.splits["train"]}} if "train" in drawn.splits else {}
    shares = [
        f"{code} {uses['train'].information_share()}" for code, uses in codes.items() if "train" in uses
    ]
    return "I(token; class) / H(class) on train: " + (", ".join(shares) or "n/a (no train tokens)")


def _members(rows: list[RunRow]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for row in rows:
        if row.member_of:
            members.setdefault(row.member_of, []).append(row.name)
    return members


def _summed_confusion(runs_dir: Path, runs: list[str]) -> np.ndarray | None:
    total = None
    for run in runs:
        if not (runs_dir / run / "eval.json").exists():
            return None
        single = read_report(runs_dir / run)["splits"].get("test", {}).get("single_label")
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
