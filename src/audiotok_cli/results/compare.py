"""`compare`: is the difference between two runs, or two sets of runs (seeds, folds), more than noise?

Over clips: both sides were scored on the same test clips (their last `eval` keeps every clip's
scores), so the difference is paired clip by clip: a 95% interval from scipy's bootstrap over clips
(BCa up to 2,000 clips, percentile past them: `interval_method`) and a p-value from scipy's paired
permutation test (each clip's two predictions swapped at random). A set's figure is the mean of its
members' (seeds on the same clips; folds each on its own clips, a member paired with the other
side's member of the same fold).

Over runs: for sets, the members' figures themselves: Student's paired t over folds (fold N of one
side against fold N of the other), Welch's t over seeds (no seed of one model is the partner of a
seed of another). With one member a side there is nothing to say there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiotok_cli.errors import MismatchError, SettingsError
from audiotok_cli.results.evaluate import SplitPredictions, read_predictions
from audiotok_cli.training.metrics import accuracy, fast_mean_average_precision
from audiotok_cli.training.run_sets import set_members
from audiotok_cli.training.runs import run_folder

METRICS = ("accuracy", "mAP")
BCA_MAX_CLIPS = 2000  # past this many clips, the percentile interval (see interval_method)


@dataclass
class Side:
    """One side of a comparison: a run, or the runs of a set (`NAME-seedS`, `NAME-foldN`)."""

    name: str
    unit: str  # "run", "seed" or "fold" (folds, each under one seed or several)
    members: dict[tuple[int, int], SplitPredictions]  # (fold, seed), 0 where none -> its scored clips
    runs: list[str]


@dataclass
class Difference:
    metric: str
    a: float  # each side's figure (a set's: its members' mean)
    b: float
    difference: float  # a - b
    clips_ci95: tuple[float, float]
    clips_p_value: float | None  # None where the sides cannot be paired member by member
    runs_ci95: tuple[float, float] | None = None
    runs_p_value: float | None = None
    runs_test: str | None = None


@dataclass
class Comparison:
    a: str
    b: str
    a_runs: list[str]
    b_runs: list[str]
    split: str
    n_clips: int
    resamples: int
    seed: int
    differences: list[Difference] = field(default_factory=list)
    clips_method: str = ""  # how the interval and p over clips were made (`interval_method`)
    leaked_clips: int = 0  # clips with an identical copy on a training side (store/leaks.py)
    leak_free: list[Difference] = field(default_factory=list)  # the same over the other clips


def compare(
    runs_dir: Path, a: str, b: str, split: str = "test", resamples: int = 9999, seed: int = 0
) -> Comparison:
    """The difference A - B in accuracy (single-label runs) and mAP, with intervals and p-values."""
    if resamples < 100:
        raise SettingsError(f"--resamples {resamples}: at least 100 for a 95% interval worth reading")
    first, second = side(runs_dir, a, split), side(runs_dir, b, split)
    clips = _shared_clips(first, second, split)
    result = Comparison(a, b, first.runs, second.runs, split, len(clips), resamples, seed)
    result.clips_method = (
        f"paired bootstrap over clips ({interval_method(len(clips))}), paired permutation test"
    )
    for metric in _metrics(first):
        result.differences.append(_difference(metric, first, second, clips, resamples, seed))
    members = [*first.members.values(), *second.members.values()]
    leaked = set().union(*(member.leaked_clips for member in members))
    if leaked:  # copies of these clips were trained on: the difference without them, beside
        first, second = _without(first, leaked), _without(second, leaked)
        result.leaked_clips = len(leaked)
        clean = _shared_clips(first, second, split)
        for metric in _metrics(first):
            result.leak_free.append(_difference(metric, first, second, clean, resamples, seed))
    return result


def _without(side_: Side, clips: set[str]) -> Side:
    members = {key: member.without(clips) for key, member in side_.members.items()}
    return Side(side_.name, side_.unit, members, side_.runs)


def side(runs_dir: Path, name: str, split: str) -> Side:
    """`name` as a run folder, else as the base name of a set of `NAME-seedS` or `NAME-foldN` runs."""
    if (runs_dir / name).is_dir() or Path(name).is_dir():
        directory = run_folder(runs_dir, name)
        return Side(name, "run", {(0, 0): read_predictions(directory, split)}, [directory.name])
    unit, found = set_members(runs_dir, name)
    return Side(
        name,
        unit,
        {index: read_predictions(directory, split) for index, directory in sorted(found.items())},
        [directory.name for _, directory in sorted(found.items())],
    )


def _metrics(first: Side) -> tuple[str, ...]:
    """Accuracy first where every clip has one label (how single-label sets are published), then mAP."""
    member = next(iter(first.members.values()))
    return METRICS if accuracy(member.labels, member.scores) is not None else ("mAP",)


def _shared_clips(first: Side, second: Side, split: str) -> np.ndarray:
    """Every clip the comparison covers; both sides must have scored the very same ones (per fold)."""
    if (first.unit == "fold") != (second.unit == "fold"):
        raise MismatchError(
            f"{first.name} and {second.name}: one is a cross-validation, the other is not; they were "
            "scored on other clips"
        )
    if first.unit == "fold":
        if first.members.keys() != second.members.keys():
            raise MismatchError(
                f"{first.name} has folds {sorted(first.members)}, {second.name} {sorted(second.members)}; "
                "finish both `train --cv`"
            )
        pairs = [(first.members[fold], second.members[fold]) for fold in first.members]
    else:
        pairs = [(mine, theirs) for mine in first.members.values() for theirs in second.members.values()]
    if any(set(mine.clips) != set(theirs.clips) for mine, theirs in pairs):
        raise MismatchError(
            f"{first.name} and {second.name} were scored on other {split} clips (another split or store); "
            "`eval` both on the store's current split"
        )
    return np.array(sorted({clip for member in first.members.values() for clip in member.clips}))


class _Scored:
    """One side's members laid out over the comparison's clips: member j's row of clip u."""

    def __init__(self, side_: Side, clips: np.ndarray, metric: str) -> None:
        self.metric = metric
        self.members = list(side_.members.values())
        index = {clip: position for position, clip in enumerate(clips)}
        self.rows = []
        for member in self.members:
            rows = np.full(len(clips), -1)
            rows[[index[clip] for clip in member.clips]] = np.arange(len(member.clips))
            self.rows.append(rows)

    def value(
        self, picks: np.ndarray, partner: _Scored | None = None, swapped: np.ndarray | None = None
    ) -> float:
        """The mean over members of the metric on the clips `picks` (positions, repeats allowed);
        where `swapped`, member j takes the partner's member j's scores of that clip."""
        values = []
        for j, member in enumerate(self.members):
            rows = self.rows[j][picks]
            mine = rows >= 0
            labels, scores = member.labels[rows[mine]], member.scores[rows[mine]]
            if swapped is not None and partner is not None:
                theirs = partner.members[j].scores[partner.rows[j][picks][mine]]
                scores = np.where(swapped[mine][:, None], theirs, scores)
            values.append(_metric(self.metric, labels, scores))
        return float(np.mean(values))

    def member_values(self) -> list[float]:
        return [_metric(self.metric, member.labels, member.scores) for member in self.members]


def _metric(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    if metric == "accuracy":
        return float((labels[np.arange(len(labels)), scores.argmax(axis=1)]).mean())
    return fast_mean_average_precision(labels, scores)


def interval_method(n_clips: int) -> str:
    """BCa, scipy's default and the most accurate, where its jackknife is affordable: it computes
    the metric once a clip left out, n times over n clips (a 4,000-clip test set took 62 s of a
    68 s report); the percentile interval past BCA_MAX_CLIPS, where the two agree closely."""
    return "BCa" if n_clips <= BCA_MAX_CLIPS else "percentile"


def _difference(
    metric: str, first: Side, second: Side, clips: np.ndarray, resamples: int, seed: int
) -> Difference:
    from scipy import stats

    a, b = _Scored(first, clips, metric), _Scored(second, clips, metric)
    everything = np.arange(len(clips))
    rng = np.random.default_rng(seed)

    def resampled(picks: np.ndarray) -> float:
        return a.value(picks) - b.value(picks)

    interval = stats.bootstrap(
        (everything,),
        resampled,
        vectorized=False,
        n_resamples=resamples,
        method=interval_method(len(clips)),
        random_state=rng,
    ).confidence_interval
    result = Difference(
        metric,
        a.value(everything),
        b.value(everything),
        resampled(everything),
        (float(interval.low), float(interval.high)),
        _permutation_p(a, b, len(clips), resamples, rng),
    )
    _over_runs(result, first, a.member_values(), b.member_values())
    return result


def _permutation_p(a: _Scored, b: _Scored, n: int, resamples: int, rng: np.random.Generator) -> float | None:
    """Paired permutation test over clips: under "no difference", each clip's A and B predictions
    are exchangeable. Needs the sides paired member by member (one run each, or as many seeds, or
    the same folds)."""
    from scipy import stats

    if len(a.members) != len(b.members):
        return None
    mine, theirs = np.arange(n), np.arange(n) + n  # positions n.. stand for the other side's clip

    def statistic(x: np.ndarray, y: np.ndarray) -> float:
        swapped = x >= n  # x took the other side's prediction of this clip
        return a.value(mine, b, swapped) - b.value(mine, a, swapped)

    test = stats.permutation_test(
        (mine, theirs),
        statistic,
        permutation_type="samples",
        vectorized=False,
        n_resamples=resamples,
        random_state=rng,
    )
    return float(test.pvalue)


def _over_runs(result: Difference, first: Side, a_values: list[float], b_values: list[float]) -> None:
    """The members' own figures as the samples: paired t over folds, Welch's t over seeds."""
    from scipy import stats

    if first.unit == "fold":  # a fold under several seeds counts once, as their mean
        a_values, b_values = _per_fold(first, a_values), _per_fold(first, b_values)
    if min(len(a_values), len(b_values)) < 2:
        return
    with warnings.catch_warnings():  # runs of equal figures: no spread, no test (NaN, said as None)
        warnings.simplefilter("ignore", RuntimeWarning)
        if first.unit == "fold":
            test = stats.ttest_rel(a_values, b_values)
            result.runs_test = f"paired t over {len(a_values)} folds"
        else:
            test = stats.ttest_ind(a_values, b_values, equal_var=False)
            result.runs_test = f"Welch's t over {len(a_values)} and {len(b_values)} seeds"
        low, high = test.confidence_interval(0.95)
    if np.isfinite([low, high, test.pvalue]).all():
        result.runs_ci95, result.runs_p_value = (float(low), float(high)), float(test.pvalue)


def _per_fold(side_: Side, values: list[float]) -> list[float]:
    """Members' figures (in the side's order of (fold, seed)) averaged per fold."""
    by_fold: dict[int, list[float]] = {}
    for (fold, _), value in zip(side_.members, values, strict=True):
        by_fold.setdefault(fold, []).append(value)
    return [float(np.mean(by_fold[fold])) for fold in sorted(by_fold)]
