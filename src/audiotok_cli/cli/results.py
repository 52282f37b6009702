"""Commands over finished runs: `runs` (every run in one table), `compare` (two runs or sets, paired),
`report` (the Markdown report), `predict` (a run on your own audio files) and `export` (a BERT as a
transformers folder)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Column, Table

from audiotok_cli.cli.app import command, command_settings, console, counted, err_console, quiet_or_json
from audiotok_cli.cli.options import OverwriteOpt, RunsOpt, StoreOpt, option
from audiotok_cli.cli.tables import folded, output_width, print_fitting, score_cell
from audiotok_cli.cli.training import DeviceOpt
from audiotok_cli.errors import SettingsError


def _render_runs(rows) -> None:
    single_label = any(r.test_accuracy is not None for r in rows)
    gap = next((r.gap_metric for r in rows if r.gap_metric), "mAP")
    title = "runs (test: each store's test split; (cv), (seeds): mean ± 95% interval)"
    columns = ["run", "model", "input", "parameters", "epochs", "train s", "val mAP", "test mAP"]
    columns += ["test acc"] * single_label
    columns += ["prior mAP", "vs best frames", "val masked loss / acc", "recipe"]
    wide = Table(*columns, title=title)
    for r in rows:
        wide.add_row(
            _run_name(r),
            r.model,
            r.input,
            f"{r.parameters:,}",
            f"{r.epochs}{IMPROVING * r.still_improving}",
            f"{r.train_seconds:.0f}",
            score_cell(r.val_mAP),
            score_cell(r.test_mAP, r.test_mAP_ci95),
            *[score_cell(r.test_accuracy, r.test_accuracy_ci95)] * single_label,
            score_cell(r.prior_mAP),
            _gap(r),
            "-" if r.val_mlm_loss is None else f"{r.val_mlm_loss:.3f} / {r.val_mlm_accuracy:.3f}",
            folded(r.recipe, WIDE_RECIPE),  # a recipe lists every setting changed: on lines of its own
        )

    def narrow() -> Table:  # what a comparison needs; the recipes and the prior follow as lines
        table = Table(
            Column("run", no_wrap=True),
            Column("model", no_wrap=True),
            Column("input", no_wrap=True),
            Column("ep.", no_wrap=True),
            Column("val\nmAP", no_wrap=True),
            Column("test\nmAP", no_wrap=True),
            *[Column("test\nacc", no_wrap=True)] * single_label,
            Column("vs fr.", no_wrap=True),
            title=title,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for r in rows:
            test = _stacked(r.test_mAP, r.test_mAP_ci95)
            accuracy = _stacked(r.test_accuracy, r.test_accuracy_ci95)
            val = (
                score_cell(r.val_mAP, digits=3)
                if r.val_mlm_loss is None
                else f"MLM\n{r.val_mlm_accuracy:.3f}"
            )
            table.add_row(
                folded(_run_name(r), NARROW_NAME),
                r.model,
                folded(r.input, NARROW_INPUT),
                f"{r.epochs}{IMPROVING * r.still_improving}",
                val,
                test,
                *[accuracy] * single_label,
                _gap(r, 3),
            )
        return table

    narrowed = print_fitting(console, wide, narrow)

    def say(line: str) -> None:  # under a narrow table, wrapped to its width (the console never wraps)
        console.print(textwrap.fill(line, output_width(console)) if narrowed else line, highlight=False)

    if narrowed:
        for r in rows:
            say(f"{_run_name(r)}: {r.recipe}")
        priors = sorted({round(r.prior_mAP, 3) for r in rows if r.prior_mAP is not None})
        if priors:  # what a test mAP is measured against
            say(f"label prior's test mAP: {', '.join(f'{p:.3f}' for p in priors)}")
        say("(parameters, train seconds: a wider terminal or --json)")
    if any(r.gap_to_best_frames is not None for r in rows):
        say(
            f"vs fr(ames): test {gap} minus that of the frame row of best val mAP on the same test clips "
            "(a set of runs counts as its mean)"
        )
    improving = [_run_name(r) for r in rows if r.still_improving and not r.member_of]
    if improving:
        say(
            f"{IMPROVING} best epoch = last epoch, the model may still be improving (more --epochs): "
            + ", ".join(improving)
        )
    for r in rows:
        if r.leaked_clips and not r.member_of:
            figures = [("acc", r.test_accuracy_leak_free), ("mAP", r.test_mAP_leak_free)]
            shown = ", ".join(f"test {name} {value:.4f}" for name, value in figures if value is not None)
            console.print(
                textwrap.fill(
                    f"{_run_name(r)}: {r.leaked_clips} test clips have an identical copy in train or val; "
                    f"without them (leak-free): {shown}",
                    output_width(console),
                ),
                style="yellow",
                highlight=False,
            )
    for r in rows:
        if r.damaged:
            err_console.print(f"[yellow]{escape(r.name)} is damaged: {escape(r.damaged)}")
    summaries = [r for r in rows if r.folds or r.seeds or r.damaged]
    unscored = [r.name for r in rows if r.test_mAP is None and r.val_mlm_loss is None and r not in summaries]
    for name in unscored:  # their val mAP is not a test score: say how to get one
        console.print(f"{name} is not scored on test yet: `audiotok eval --run {name}`")


IMPROVING = "*"  # marks a run whose best epoch was its last
WIDE_RECIPE = 36  # characters a recipe's lines take in the wide runs table
NARROW_NAME, NARROW_INPUT = 19, 14  # characters a name's lines take in the 80-column runs table


def _run_name(r) -> str:
    return r.name + (f" {r.folds} folds" if r.folds else "") + (f" {r.seeds} runs" if r.seeds else "")


def _stacked(value: float | None, spread: float | None) -> str:
    """A score over its interval, on two lines: the narrow table's columns stay 7 wide."""
    return score_cell(value, digits=3) + ("" if spread is None else f"\n± {spread:.3f}")


def _gap(r, digits: int = 4) -> str:
    return "-" if r.gap_to_best_frames is None else f"{r.gap_to_best_frames:+.{digits}f}"


@command("runs", render=_render_runs)
def runs_cmd(
    sort: Annotated[
        str,
        typer.Option(
            "--sort", help="Sort by name, test_accuracy, test_mAP, val_mAP, parameters or train_seconds."
        ),
    ] = "test_mAP",
    plot: Annotated[
        Path | None,
        option(
            "--plot",
            help="Also draw the runs as a bar chart (PNG), sets as means with 95% intervals.",
            default="no chart",
        ),
    ] = None,
    only: Annotated[
        str | None,
        option("--only", help="Only runs whose name matches this glob ('bert-*', '*-seed?').", default="all"),
    ] = None,
    runs_dir: RunsOpt = None,
):
    """Every run in one table: tokens against spectrogram frames, beside the label prior."""
    from audiotok_cli.results.runs import compare_runs, plot_runs

    settings = command_settings(paths={"runs_dir": runs_dir})
    rows = compare_runs(settings.runs_dir, sort, only)
    if plot is not None:
        plot_runs(rows, plot)
        if not quiet_or_json():
            console.print(f"chart: {plot}")
    return rows


def _render_comparison(c) -> None:
    def sized(name: str, runs: list[str]) -> str:
        return name if len(runs) == 1 and runs[0] == name else f"{name} ({len(runs)} runs)"

    console.print(
        f"{escape(sized(c.a, c.a_runs))} - {escape(sized(c.b, c.b_runs))}, on the same {c.n_clips} "
        f"{c.split} clips ({c.clips_method}, {c.resamples} resamples):",
        highlight=False,
    )
    for d in c.differences:
        console.print(_difference_line(d), highlight=False)
    if c.leak_free:
        console.print(
            f"leak-free, without the {c.leaked_clips} {c.split} clips with an identical copy on a training "
            f"side (`split` warned), on {c.n_clips - c.leaked_clips} clips:",
            highlight=False,
            style="yellow",
        )
        for d in c.leak_free:
            console.print(_difference_line(d), highlight=False)
    if any(d.clips_p_value is None for d in c.differences):
        console.print("(no p over clips: the sides have unequal numbers of runs to pair)")


def _difference_line(d) -> str:
    p = "p -" if d.clips_p_value is None else f"p {d.clips_p_value:.4f}"
    line = (
        f"{d.metric}: {d.a:.4f} - {d.b:.4f} = {d.difference:+.4f}, 95% interval "
        f"[{d.clips_ci95[0]:+.4f}, {d.clips_ci95[1]:+.4f}] over clips ({p})"
    )
    if d.runs_ci95 is not None:
        line += (
            f"; [{d.runs_ci95[0]:+.4f}, {d.runs_ci95[1]:+.4f}] over runs ({d.runs_test}, "
            f"p {d.runs_p_value:.4f})"
        )
    return line


@command("compare", render=_render_comparison, seeded=True)
def compare_cmd(
    a: Annotated[str, typer.Argument(help="A run, or a set's name (NAME of NAME-seedS or NAME-foldN runs).")],
    b: Annotated[str, typer.Argument(help="The run or set to compare it with.")],
    split: Annotated[str, typer.Option("--split", help="Compare on test or val.")] = "test",
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap and permutation resamples.", min=100)
    ] = 9999,
    runs_dir: RunsOpt = None,
):
    """The difference A - B in accuracy and mAP, paired over the same clips: its 95% interval and
    p-value (for sets of seeds or folds, over the runs too). Both must have been `eval`ed."""
    from audiotok_cli.results.compare import compare

    if split not in ("test", "val"):
        raise SettingsError(f"--split {split!r}: choose test or val")
    settings = command_settings(paths={"runs_dir": runs_dir})
    return compare(settings.runs_dir, a, b, split, resamples, settings.seed)


@command(
    "report",
    render=lambda r: console.print(
        f"wrote {r.path}: {counted(r.runs, 'run')}, {counted(r.comparisons, 'comparison')} with the best "
        f"frame recipe, {counted(len(r.figures), 'figure')}"
    ),
    seeded=True,
)
def report_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder for report.md and its PNGs.")],
    only: Annotated[
        str | None, option("--only", help="Only runs whose name matches this glob.", default="all")
    ] = None,
    resamples: Annotated[
        int,
        typer.Option("--resamples", help="Bootstrap and permutation resamples of each comparison.", min=100),
    ] = 9999,
    store: StoreOpt = None,
    runs_dir: RunsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """One Markdown report with its figures: the data and split protocol, the runs with intervals, each
    token recipe against the best frame recipe (compare's figures), recipes, Methods, curves,
    confusions."""
    from audiotok_cli.results.report import write_report

    settings = command_settings(paths={"store": store, "runs_dir": runs_dir})
    return write_report(settings.resolved_paths, out_dir, only, resamples, settings.seed, overwrite)


def _render_predictions(result) -> None:
    for f in result.files:
        labels = ", ".join(f"{name} {p:.3f}" for name, p in f.top)
        windows = f"{f.windows} window{'s' * (f.windows != 1)}"
        console.print(f"{escape(f.path)} ({f.seconds:g} s, {windows}): {escape(labels)}")
        if f.split in ("train", "val"):
            err_console.print(
                f"[yellow]{escape(f.path)} is in the run's {f.split} split: its score is not a held-out one"
            )
        elif f.split == "test":
            console.print("  (in the run's test split: held out from training)")
    for path, why in result.failed.items():
        err_console.print(f"[yellow]not scored: {escape(path)}: {escape(why)}")


@command("predict", render=_render_predictions)
def predict_cmd(
    run: Annotated[
        str,
        typer.Argument(
            help="A run name under the runs directory, a run folder's path, or a set's name (NAME of "
            "NAME-seedS or NAME-foldN runs: the mean of their scores)."
        ),
    ],
    files: Annotated[list[Path], typer.Argument(help="Audio files: FLAC, WAV, MP3, OGG, any rate.")],
    top: Annotated[int, typer.Option("--top", help="Labels shown per file.", min=1)] = 5,
    device: DeviceOpt = None,
    runs_dir: RunsOpt = None,
):
    """Top labels of audio files from a trained run or set of runs; the run folders alone are enough
    (no store)."""
    from audiotok_cli.training.predict import predict_with

    settings = command_settings(paths={"runs_dir": runs_dir}, train={"device": device})
    return predict_with(settings.runs_dir, run, files, top, settings.train.device)


@command(
    "export", render=lambda r: console.print(f"exported {r.run_dir} to {r.output}: {', '.join(r.files)}")
)
def export_cmd(
    run: Annotated[str, typer.Argument(help="A bert run's name under the runs directory, or its path.")],
    output: Annotated[Path, typer.Argument(help="Folder for `BertModel.from_pretrained`.")],
    runs_dir: RunsOpt = None,
    overwrite: OverwriteOpt = False,
):
    """A trained BERT as a transformers folder (config.json + safetensors), its head beside it."""
    from audiotok_cli.training.export import export_run
    from audiotok_cli.training.runs import run_folder

    settings = command_settings(paths={"runs_dir": runs_dir})
    return export_run(run_folder(settings.runs_dir, run), output, overwrite)
