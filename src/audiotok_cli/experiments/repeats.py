"""Repeated runs of one recipe, summarised as one figure and its spread: `train --seeds N` (the same
run under N seeds: how much of a difference between two models is the luck of one seed) and
`pretrain --objective masked-units --seeds N` here, and
`train --cv` (one run per fold) in cv.py. Each repeat is a run of its own (`{name}-seed{S}`,
`{name}-fold{N}`), trained and scored on test; a repeat already trained with the very same settings
is kept (and scored again), so an interrupted set resumes."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from audiotok_cli.errors import AlreadyTrained, AudiotokError
from audiotok_cli.results.evaluate import EvalReport, evaluate, headline_scores, warn_of_fold_split
from audiotok_cli.results.runs import Spread, spread
from audiotok_cli.settings import Paths
from audiotok_cli.store import Store
from audiotok_cli.training.loop import TrainResult, plan_run, train
from audiotok_cli.training.monitor import board_from_log
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.run_names import repeat_base
from audiotok_cli.training.runs import RunRecord, SetMember, read_record

log = logging.getLogger(__name__)


@dataclass
class RepeatScore:
    index: int  # the fold, or the seed
    run: str
    test_mAP: float
    test_accuracy: float | None
    val_mAP: float | None
    seeds: list[RepeatScore] = field(default_factory=list)  # a fold of `--cv --seeds N`: each seed's


def fold_mean(fold: int, name: str, seeds: list[RepeatScore]) -> RepeatScore:
    """A fold trained under several seeds: the means of its seeds' scores, with each beside."""

    def mean(key: str) -> float | None:
        values = [getattr(score, key) for score in seeds]
        return None if None in values else float(np.mean(values))

    return RepeatScore(fold, name, mean("test_mAP"), mean("test_accuracy"), mean("val_mAP"), seeds)


@dataclass
class RepeatedRuns:
    name: str
    unit: str  # "fold" or "seed"
    repeats: list[RepeatScore] = field(default_factory=list)

    def summary(self, key: str) -> Spread | None:
        """Mean, deviation and 95% interval over the repeats, or None where one lacks `key`."""
        return spread([getattr(repeat, key) for repeat in self.repeats])


def train_scored(request: RunRequest) -> TrainResult:
    """`train`, then `eval` of its run, as `--seeds` scores each of its runs: one command, the test
    figure too (under torchrun, rank 0 scores)."""
    warn_if_left_by_cv(request.paths)
    trained = train(request)
    if int(os.environ.get("RANK", "0")) == 0:
        trained.scores = headline_scores(evaluate(request.paths, trained.run_dir.name).splits)
    return trained


def train_seeds(request: RunRequest, seeds: int = 1) -> RepeatedRuns:
    """Train and score `{name}-seed{S}` for the seeds S = seed .. seed + seeds - 1. A seed whose run
    of these very settings is finished is kept; runs of other settings are never taken for them
    (see `repeat_base`)."""
    paths, settings, seed = request.paths, request.train, request.seed
    warn_if_left_by_cv(paths)
    planned = {s: plan_run(replace(request, seed=s)) for s in range(seed, seed + seeds)}
    wanted = {f"seed{s}": plan.record for s, plan in planned.items()}
    default = planned[seed].default_name
    base = repeat_base(
        paths.runs_dir,
        settings.run_name,
        default,
        wanted,
        lambda record: record.resume_key,
        request.overwrite,
    )
    result = RepeatedRuns(base, "seed")
    for repeat_seed, run in _seed_runs(base, list(planned)):
        if request.overwrite or not finished(paths, run, planned[repeat_seed].record):
            train(request.as_member(repeat_seed, run, SetMember(name=base, seed=repeat_seed)))
        else:
            log.info("seed %d: %s is trained with these settings; kept", repeat_seed, run)
            if settings.tensorboard:
                board = board_from_log(paths.runs_dir / run)
                log.info("%s: TensorBoard event files written from its log to %s", run, board)
        result.repeats.append(repeat_score(repeat_seed, run, evaluate(paths, run)))
    return result


@dataclass
class PretrainedSeeds:
    """`pretrain --seeds N`: a units encoder pretrained under N seeds, each run's best val
    masked-prediction accuracy. An encoder's seed moved the accuracy of its units' classifier by 2
    points on unseen speakers, more than the classifier's own seeds: claims about units want these."""

    name: str
    masked_accuracy: dict[str, float] = field(default_factory=dict)  # run -> its best val accuracy

    def summary(self) -> Spread | None:
        return spread(list(self.masked_accuracy.values()))


def pretrain_seeds(
    request: RunRequest,
    pretraining: Callable[..., TrainResult],
    seeds: int = 1,
    default: str = "",
    **options: Any,
) -> PretrainedSeeds:
    """`pretraining` as `{name}-seed{S}` for S = seed .. seed + seeds - 1 (`name`: the
    --run-name, else `default`). A seed's run finished with these very settings is kept; an
    interrupted one resumes; one of other settings is refused, naming the differences."""
    base = request.train.run_name or default
    result = PretrainedSeeds(base)
    for repeat_seed, run in _seed_runs(base, list(range(request.seed, request.seed + seeds))):
        try:
            pretraining(
                request.as_member(repeat_seed, run, SetMember(name=base, seed=repeat_seed)), **options
            )
        except AlreadyTrained:
            log.info("seed %d: %s is trained with these settings; kept", repeat_seed, run)
        history = read_record(request.paths.runs_dir / run).history
        result.masked_accuracy[run] = max(epoch["val_accuracy"] for epoch in history)
    return result


def warn_if_left_by_cv(paths: Paths) -> None:
    """`evaluate.warn_of_fold_split` before a plain `train` or `train --seeds` (never inside `--cv`)."""
    try:
        store = Store.open(paths.store, mode="r")
    except AudiotokError:  # no store (yet): training says so itself, after the settings' own checks
        return
    warn_of_fold_split(store)


def _seed_runs(base: str, seeds: list[int]) -> Iterator[tuple[int, str]]:
    """Each seed with its run's name, `{base}-seed{S}`, said as it starts."""
    for count, repeat_seed in enumerate(seeds, 1):
        run = f"{base}-seed{repeat_seed}"
        log.info("seed %d of %d: %s", count, len(seeds), run)
        yield repeat_seed, run


def finished(paths: Paths, run: str, wanted: RunRecord) -> bool:
    """Whether `run` is finished with the very settings of `wanted` (a repeat to keep)."""
    record = read_record(paths.runs_dir / run)
    return record is not None and record.complete and record.resume_key == wanted.resume_key


def repeat_score(index: int, run: str, report: EvalReport) -> RepeatScore:
    test, val = report.splits.get("test", {}), report.splits.get("val", {})
    return RepeatScore(index, run, test.get("mAP", float("nan")), test.get("accuracy"), val.get("mAP"))
