"""`runs`: every run under the runs directory in one table, token runs beside spectrogram runs, so
the question audiotok exists for (do tokens classify AudioSet as well as the frames they come from?)
has its answer in one place."""

from __future__ import annotations

import fnmatch
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from audiotok_cli.errors import AudiotokError, MissingInputError, SettingsError
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import fingerprint
from audiotok_cli.training.run_sets import member_of
from audiotok_cli.training.runs import REPORT, RunRecord, find_runs, read_report, recipe_key, settings_key

LEAK_FREE = ("test_mAP_leak_free", "test_accuracy_leak_free")
SORT_KEYS = ("name", "test_accuracy", "test_mAP", "val_mAP", "parameters", "train_seconds")
SEED = re.compile(r"(, )?seed \d+$")  # the seed at the end of a recipe
SEEDS = re.compile(r"(, )?seeds [\d,]+$")  # the seeds at the end of a set's recipe


@dataclass
class RunRow:
    name: str
    model: str
    input: str  # "tokens logmel-k64" or "frames logmel"
    parameters: int
    epochs: int
    train_seconds: float
    val_mAP: float | None  # the run's model's: its best epoch, or its averaged weights
    test_mAP: float | None  # from the last `eval` (the official eval set, or the store's test rule)
    prior_mAP: float | None
    test_accuracy: float | None = None  # single-label collections: top-1 accuracy on test
    folds: int = 0  # a cross-validation row: the mean over this many fold runs
    seeds: int = 0  # a row of runs that differ only by seed: the mean over this many
    test_mAP_std: float | None = None  # and, for both, the standard deviation over them
    test_mAP_ci95: float | None = None  # and the half-width of the mean's 95% interval
    test_accuracy_std: float | None = None
    test_accuracy_ci95: float | None = None
    gap_to_best_frames: float | None = None  # the headline (accuracy, else mAP) minus the best frame row's
    gap_metric: str = ""  # which: "accuracy" or "mAP"
    member_of: str = ""  # the (seeds) or (cv) row this run is summed up in
    set_name: str = ""  # a member's: the set it was planned in (run_sets.py); a set's row: its own name
    fold: int | None = None  # a cross-validation member's fold
    val_mlm_loss: float | None = None  # pretraining runs: the best epoch's masked-token loss
    val_mlm_accuracy: float | None = None  # and its accuracy on the masked tokens
    recipe: str = ""  # how it was trained, where that differs from the defaults: "lr 0.003, seed 2"
    front_end: str = ""  # what made its frames, every setting named
    vocabulary: str = ""  # token runs: the tokens' k, quantizer, features and transforms
    loss: str = ""  # ce (softmax, single-label) or bce
    seed: int | None = None
    settings_key: str = ""  # the same for runs that differ only by seed
    recipe_key: str = ""  # the same for the fold runs of one cross-validation (all its seeds)
    damaged: str = ""  # why the run folder cannot be read, and the fix
    still_improving: bool = False  # its best epoch was its last (a set's: some member's)
    split_key: str = ""  # the same for rows scored on the same test clips (a (cv) row: on the same folds)
    test_rule: str = ""  # how those test clips were chosen ("sources test", "fold 2", ...)
    compared_with: str = ""  # the frame row its `gap_to_best_frames` is measured against
    leaked_clips: int = 0  # test clips with an identical copy in train or val (store/leaks.py)
    test_mAP_leak_free: float | None = None  # the test figures without them
    test_accuracy_leak_free: float | None = None

    @property
    def label(self) -> str:
        """Its name without a set's `(seeds)` or `(cv)` mark: the set's name, or, for runs trained
        by hand under names of their own, what they share."""
        if not (self.seeds or self.folds):
            return self.name
        return self.set_name or self.name.removesuffix(" (seeds)")


def compare_runs(runs_dir: Path, sort: str = "test_mAP", only: str | None = None) -> list[RunRow]:
    """One row per run and one per set of seeds or folds, each set followed by its runs; best first
    for scores. With the glob `only`: the runs whose name matches, and those of the sets whose name
    does (`--only '*(seeds)*'`). Runs not yet evaluated have no test mAP."""
    if sort not in SORT_KEYS:
        raise SettingsError(f"invalid --sort {sort!r}; choose from {', '.join(SORT_KEYS)}")
    rows = _rows(runs_dir)
    if only is not None:
        chosen = {row.name for row in rows if fnmatch.fnmatchcase(row.name, only)}
        runs = [row for row in rows if not (row.folds or row.seeds)]
        rows = _rows(runs_dir, {row.name for row in runs if row.name in chosen or row.member_of in chosen})
    if not rows:
        matching = f" matching {only!r}" if only is not None else ""
        raise MissingInputError(
            f"no runs{matching} in {runs_dir}; run `audiotok train` first or pass --runs-dir"
        )
    descending = sort != "name"
    ranked = sorted(rows, key=lambda row: _sort_value(row, sort), reverse=descending)
    ordered = []
    for row in ranked:  # a set's runs right under it, in the same order
        if not row.member_of:
            ordered += [row] + [member for member in ranked if member.member_of == row.name]
    return ordered


def _rows(runs_dir: Path, names: set[str] | None = None) -> list[RunRow]:
    """The rows of the runs in `runs_dir` (those named in `names`, if given), and of their sets."""
    damaged: dict[Path, str] = {}
    rows = []
    for directory, record in find_runs(runs_dir, damaged):
        if names is not None and directory.name not in names:
            continue
        try:
            row = _row(directory, record)
        except AudiotokError as error:  # eval.json not as `eval` wrote it: the run is still listed
            damaged[directory] = str(error)
        except (ValueError, KeyError, OSError) as error:  # a report of another shape
            damaged[directory] = f"{directory / REPORT} is damaged ({type(error).__name__}); run `eval` again"
            continue
        member = member_of(directory.name, record)
        if member is not None:
            row.set_name, row.fold = member.name, member.fold
        rows.append(row)
    rows += [
        _damaged_row(directory, why)
        for directory, why in damaged.items()
        if names is None or directory.name in names
    ]
    rows += cross_validation_rows(rows) + seed_rows(rows)
    _gaps_to_frames(rows)
    return rows


def _gaps_to_frames(rows: list[RunRow]) -> None:
    """Each row's headline figure (accuracy where every scored row has one, else mAP) minus that of
    the best frame row on the same test clips, chosen by its val mAP (test is reported, never used
    to choose): a set of seeds or folds counts as its mean, its members not on their own, so a token
    recipe is never measured against one lucky frame seed."""
    scored = [row for row in rows if row.test_mAP is not None]
    metric = "accuracy" if scored and all(row.test_accuracy is not None for row in scored) else "mAP"
    for comparable in by_split(scored).values():
        best = best_frames(comparable)
        if best is None:
            continue
        for row in comparable:
            if headline(row, metric) is not None:
                row.gap_to_best_frames = headline(row, metric) - headline(best, metric)
                row.gap_metric, row.compared_with = metric, best.name


def headline(row: RunRow, metric: str) -> float | None:
    return row.test_accuracy if metric == "accuracy" else row.test_mAP


def best_frames(rows: list[RunRow]) -> RunRow | None:
    """The frame row (a set, or a run in none) with the best val mAP: what token rows are measured
    against."""
    frames = [row for row in rows if row.input.startswith("frames") and not row.member_of]
    frames = [row for row in frames if row.val_mAP is not None and row.val_mlm_loss is None]
    return max(frames, key=lambda row: row.val_mAP, default=None)


def by_split(rows: list[RunRow]) -> dict[str, list[RunRow]]:
    """Rows grouped by the test clips they were scored on."""
    groups: dict[str, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row.split_key, []).append(row)
    return groups


def _damaged_row(directory: Path, why: str) -> RunRow:
    """A run folder that cannot be read: listed, marked, and why."""
    return RunRow(directory.name, "damaged", "-", 0, 0, 0.0, None, None, None, damaged=why)


def _sort_value(row: RunRow, key: str) -> tuple[bool, object]:
    value = getattr(row, key)
    return (value is not None, value if value is not None else 0)


def _row(directory: Path, record: RunRecord) -> RunRow:
    inputs = record.inputs
    test = prior = accuracy = None
    leak_free: dict = {}
    leaked = 0
    if (directory / REPORT).exists():
        splits = read_report(directory).get("splits", {})
        if "test" in splits:
            test, prior = splits["test"]["mAP"], splits["test"]["prior_mAP"]
            accuracy = splits["test"].get("accuracy")
            leak_free, leaked = splits["test"].get("leak_free", {}), splits["test"].get("leaked_clips", 0)
    history = record.history
    recipe = _recipe(record)
    if record.task == "pretrain":
        best = min(history, key=lambda epoch: epoch["val_loss"]) if history else {}
        units = inputs.input == "frames"  # masked unit prediction, not masked tokens
        return RunRow(
            name=directory.name,
            model=f"{record.model.kind} ({'masked units' if units else 'MLM'} pretraining)",
            input=" ".join(["frames", inputs.features, *inputs.transforms, "->", inputs.targets or ""])
            if units
            else f"tokens {inputs.tokens}",
            parameters=record.n_parameters,
            epochs=len(history),
            train_seconds=round(sum(epoch.get("seconds", 0.0) for epoch in history), 1),
            val_mAP=None,
            test_mAP=None,
            prior_mAP=None,
            val_mlm_loss=best.get("val_loss"),
            val_mlm_accuracy=best.get("val_accuracy"),
            recipe=recipe,
            front_end=inputs.front_end(),
        )
    return RunRow(
        name=directory.name,
        model=record.model.kind + (f" (init {record.init})" if record.init else ""),
        input=f"tokens {inputs.tokens}"
        if inputs.input == "tokens"
        else " ".join(["frames", inputs.features, *inputs.transforms]),
        parameters=record.n_parameters,
        epochs=len(history),
        train_seconds=round(sum(epoch.get("seconds", 0.0) for epoch in history), 1),
        val_mAP=record.averaged.score
        if record.averaged
        else max((epoch["val_mAP"] for epoch in history), default=None),
        test_mAP=test,
        prior_mAP=prior,
        test_accuracy=accuracy,
        recipe=recipe,
        front_end=inputs.front_end(),
        vocabulary=inputs.vocabulary(record.model.n_tokens),
        loss=record.loss,
        still_improving=len(history) > 1 and record.best_epoch == history[-1]["epoch"],
        split_key=fingerprint(inputs.split.model_dump(mode="json")),
        test_rule=inputs.split.test_rule,
        leaked_clips=leaked,
        test_mAP_leak_free=leak_free.get("mAP", test),  # no copy leaked: the test figures themselves
        test_accuracy_leak_free=leak_free.get("accuracy", accuracy),
        seed=record.seed,
        settings_key=settings_key(record),
        recipe_key=recipe_key(record, with_seed=False),
    )


_SHORT = {"learning_rate": "lr", "weight_decay": "wd", "batch_size": "batch", "warmup_ratio": "warmup"}
MODEL_SIZES = (  # what a model spec takes from the model settings (the rest: from the store)
    "embed_dim", "hidden_size", "num_layers", "num_heads", "dropout", "cnn_channels", "conv_kernels",
    "conv_size",
)  # fmt: skip


def _recipe(record: RunRecord) -> str:
    """The model and training settings that differ from the defaults, and the seed: a run's name is
    not a record of how it was trained (epochs and loss have columns of their own)."""
    model, trained = ModelSettings().model_dump(), TrainSettings().model_dump()
    spec = record.model.model_dump()
    changed = [(key, spec[key]) for key in MODEL_SIZES if differs_from_default(spec[key], model[key])]
    changed += [
        (key, value)
        for key, value in record.train.items()
        if key in trained and key not in ("epochs", "loss") and differs_from_default(value, trained[key])
    ]
    shown = [f"{_SHORT.get(key, key.replace('_', '-'))} {_shown(value)}" for key, value in changed]
    return ", ".join([*shown, f"seed {record.seed}"])


def differs_from_default(value: object, default: object) -> bool:
    """A setting's value against its default (tuples and the lists JSON gives back compare equal)."""
    if isinstance(default, tuple):
        return tuple(value) != default
    return value != default


def _shown(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def cross_validation_rows(rows: list[RunRow]) -> list[RunRow]:
    """One row per set of fold runs (`NAME-fold1`, `NAME-fold2`, ... all scored on test)."""
    sets: dict[tuple[str, str], list[RunRow]] = {}
    for row in rows:
        if row.fold is not None and row.test_mAP is not None:
            sets.setdefault((row.set_name, row.recipe_key), []).append(row)
    summaries = []
    for (base, _), runs in sets.items():
        if len({row.fold for row in runs}) > 1:
            summaries.append(_summary_row(base, runs, "folds"))
    return summaries


def seed_rows(rows: list[RunRow]) -> list[RunRow]:
    """One row per set of runs that differ only by their seed (`train --seeds N`, or runs trained
    by hand): how much of a difference between two models is the luck of one seed."""
    sets: dict[str, dict[int, RunRow]] = {}
    for row in rows:
        if row.settings_key and row.val_mlm_loss is None and not row.member_of:  # a fold's seeds: its (cv)
            sets.setdefault(row.settings_key, {}).setdefault(row.seed, row)  # one run per seed counts
    summaries = []
    for by_seed in sets.values():
        if len(by_seed) > 1:
            runs = list(by_seed.values())
            bases = {row.set_name or row.name for row in runs}
            shared = bases.pop() if len(bases) == 1 else ""
            # one name for the set where its runs share one (`--seeds`); else its settings say what it is
            summary = _summary_row(shared, runs, "seeds")
            summary.name = f"{shared or _described(summary)} (seeds)"
            for row in runs:
                row.member_of = summary.name
            summaries.append(summary)
    return summaries


def _described(row: RunRow) -> str:
    """A set of runs trained by hand under names of their own, named by what they share."""
    recipe = SEEDS.sub("", row.recipe)
    return f"{row.model} on {row.input}" + (f", {recipe}" if recipe else "")


def _summary_row(base: str, runs: list[RunRow], unit: str) -> RunRow:
    """The mean of `runs`' scores, with their standard deviation and 95% interval beside it, as the
    set `base` ("" for runs named by hand); the runs are marked as its members."""
    first = runs[0]
    name = f"{base} ({'cv' if unit == 'folds' else 'seeds'})"
    for row in runs:
        row.member_of = name
    units = _units(runs, unit)  # a fold under several seeds is one unit: the mean of its seeds

    def over_units(key: str) -> Spread | None:
        return spread([_mean([getattr(row, key) for row in members]) for members in units])

    test, accuracy = over_units("test_mAP"), over_units("test_accuracy")
    leaked = max(row.leaked_clips for row in runs)
    free_mAP, free_accuracy = (over_units(key) for key in LEAK_FREE)
    val, prior = over_units("val_mAP"), over_units("prior_mAP")
    recipe = first.recipe
    seeds = sorted({row.seed for row in runs})
    if len(seeds) > 1:  # the same recipe but for the seed
        recipe = ", ".join(filter(None, [SEED.sub("", recipe), "seeds " + ",".join(map(str, seeds))]))
    return RunRow(
        name=name,
        model=first.model,
        input=_any_fold(first.input, first.fold),
        parameters=first.parameters,
        epochs=round(statistics.fmean(row.epochs for row in runs)),
        train_seconds=round(sum(row.train_seconds for row in runs), 1),
        val_mAP=val.mean if val else None,
        test_mAP=test.mean if test else None,
        prior_mAP=prior.mean if prior else None,
        test_accuracy=accuracy.mean if accuracy else None,
        folds=len(units) if unit == "folds" else 0,
        seeds=len(runs) if unit == "seeds" else 0,
        test_mAP_std=test.std if test else None,
        test_mAP_ci95=test.ci95 if test else None,
        test_accuracy_std=accuracy.std if accuracy else None,
        test_accuracy_ci95=accuracy.ci95 if accuracy else None,
        recipe=recipe,
        front_end=first.front_end,
        vocabulary=_any_fold(first.vocabulary, first.fold, "-foldN"),
        loss=first.loss,
        still_improving=any(row.still_improving for row in runs),
        split_key=first.split_key if unit == "seeds" else fingerprint(sorted({r.split_key for r in runs})),
        test_rule=first.test_rule if unit == "seeds" else f"{len(units)} folds",
        leaked_clips=leaked,
        test_mAP_leak_free=free_mAP.mean if free_mAP else None,
        test_accuracy_leak_free=free_accuracy.mean if free_accuracy else None,
        set_name=base,
    )


def _any_fold(text: str, fold: int | None, instead: str = "") -> str:
    """A fold member's inputs as its set's: its fold's tokens (`{vocab}-fold{N}`, cv.py) named for
    every fold."""
    return text if fold is None else text.replace(f"-fold{fold}", instead)


def _units(runs: list[RunRow], unit: str) -> list[list[RunRow]]:
    """The runs a summary's spread is over: each run, or for folds each fold's runs (its seeds)."""
    if unit != "folds":
        return [[row] for row in runs]
    by_fold: dict[int | None, list[RunRow]] = {}
    for row in runs:
        by_fold.setdefault(row.fold, []).append(row)
    return list(by_fold.values())


def _mean(values: list[float | None]) -> float | None:
    return None if None in values else statistics.fmean(values)


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float  # sample standard deviation
    ci95: float  # half-width of the 95% interval of the mean (Student's t)
    n: int


def spread(values: list[float | None]) -> Spread | None:
    """Mean, deviation and 95% interval of two values or more; None where any value is missing."""
    if len(values) < 2 or None in values:
        return None
    from scipy.stats import t

    n, std = len(values), statistics.stdev(values)
    return Spread(statistics.fmean(values), std, t.ppf(0.975, n - 1) * std / n**0.5, n)


def plot_runs(rows: list[RunRow], path: Path) -> Path:
    """One horizontal bar per run or set of runs (a set drawn once, as its mean with its 95%
    interval; its members left out), best at the top: test accuracy for single-label runs, else test
    mAP (val where a run has no eval yet, hatched), the label prior as a line; tokens blue, frames
    orange. Horizontal, so that thirty names stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    shown = [row for row in rows if row.val_mlm_loss is None and not row.member_of and not row.damaged]
    accuracy = bool(shown) and all(row.test_accuracy is not None for row in shown if row.test_mAP is not None)
    metric = "accuracy" if accuracy else "mAP"

    def value(row: RunRow) -> tuple[float, float]:
        if row.test_mAP is None:
            return row.val_mAP or 0.0, 0.0
        if accuracy:
            return row.test_accuracy or 0.0, row.test_accuracy_ci95 or 0.0
        return row.test_mAP, row.test_mAP_ci95 or 0.0

    shown.sort(key=lambda row: value(row)[0])
    figure = Figure(figsize=(8.0, max(2.5, 0.32 * len(shown) + 1.2)))
    axes = figure.add_subplot()
    means, halves = zip(*(value(row) for row in shown), strict=True) if shown else ((), ())
    colours = ["tab:blue" if row.input.startswith("tokens") else "tab:orange" for row in shown]
    bars = axes.barh(range(len(shown)), means, xerr=halves, color=colours, capsize=3)
    for bar, row in zip(bars, shown, strict=True):
        if row.test_mAP is None:  # a val score: hatched and pale, never read as a test score
            bar.set(hatch="//", alpha=0.4)
    axes.set_yticks(range(len(shown)), [_label(row) for row in shown], fontsize=8)
    labels = [
        f"{mean:.3f}" + (f" ± {half:.3f}" if half else "") for mean, half in zip(means, halves, strict=True)
    ]
    axes.bar_label(bars, labels=labels, fontsize=7, padding=3)
    priors = [row.prior_mAP for row in shown if row.prior_mAP is not None]
    if priors and not accuracy:
        axes.axvline(max(priors), color="grey", linestyle="--", label="label prior")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlim(0, 1.15)
    axes.set_xlabel(f"test {metric} (sets: mean ± 95% interval; hatched: val, not yet evaluated)")
    axes.set_title("audiotok runs: tokens (blue) vs spectrogram frames (orange)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def _label(row: RunRow) -> str:
    count = f" [{row.seeds} seeds]" if row.seeds else f" [{row.folds} folds]" if row.folds else ""
    return row.label + count
