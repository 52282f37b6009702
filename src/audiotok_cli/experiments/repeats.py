"""Repeated runs of one recipe, summarised as one figure and its spread: `train --seeds N` (the same
run under N seeds: how much of a difference between two models is the luck of one seed) here, and
`train --cv` (one run per fold) in cv.py. Each repeat is a run of its own (`{name}-seed{S}`,
`{name}-fold{N}`), trained and scored on test; a repeat already trained and scored is kept, so an
interrupted set resumes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from audiotok_cli.settings import ModelSettings, Paths, TrainSettings
from audiotok_cli.store import Pick, Store
from audiotok_cli.training.compare import Spread, spread
from audiotok_cli.training.evaluate import EvalReport, evaluate
from audiotok_cli.training.inputs import inputs_for_training
from audiotok_cli.training.loop import EpochCallback, default_run_name, train
from audiotok_cli.training.runs import REPORT, read_record

log = logging.getLogger(__name__)


@dataclass
class RepeatScore:
    index: int  # the fold, or the seed
    run: str
    test_mAP: float
    test_accuracy: float | None
    val_mAP: float | None


@dataclass
class RepeatedRuns:
    name: str
    unit: str  # "fold" or "seed"
    repeats: list[RepeatScore] = field(default_factory=list)

    def summary(self, key: str) -> Spread | None:
        """Mean, deviation and 95% interval over the repeats, or None where one lacks `key`."""
        return spread([getattr(repeat, key) for repeat in self.repeats])


def train_seeds(
    paths: Paths,
    model: ModelSettings,
    settings: TrainSettings,
    seed: int,
    pick: Pick,
    overwrite: bool = False,
    on_epoch: EpochCallback | None = None,
    init: str | None = None,
    seeds: int = 1,
) -> RepeatedRuns:
    """Train and score `{name}-seed{S}` for the seeds S = seed .. seed + seeds - 1."""
    base = settings.run_name or default_run_name(model, _inputs_name(paths, model, pick))
    result = RepeatedRuns(base, "seed")
    for repeat_seed in range(seed, seed + seeds):
        run = f"{base}-seed{repeat_seed}"
        if overwrite or not scored(paths, run):
            repeat = settings.model_copy(update={"run_name": run})
            train(paths, model, repeat, repeat_seed, pick, overwrite, on_epoch, init)
        else:
            log.info("seed %d: %s is trained and scored; kept", repeat_seed, run)
        result.repeats.append(repeat_score(repeat_seed, run, evaluate(paths, run)))
    return result


def scored(paths: Paths, run: str) -> bool:
    """Whether `run` is finished and scored on test (a repeat to keep)."""
    directory = paths.runs_dir / run
    record = read_record(directory) if directory.exists() else None
    return record is not None and record.complete and (directory / REPORT).exists()


def repeat_score(index: int, run: str, report: EvalReport) -> RepeatScore:
    test, val = report.splits.get("test", {}), report.splits.get("val", {})
    return RepeatScore(index, run, test.get("mAP", float("nan")), test.get("accuracy"), val.get("mAP"))


def _inputs_name(paths: Paths, model: ModelSettings, pick: Pick) -> str:
    """The tokens or features a run would read: its default name says which."""
    return inputs_for_training(Store.open(paths.store), model, pick).model_inputs.padded.name
