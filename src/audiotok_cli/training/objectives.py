"""What a run learns: classification (`train`), or a pretraining objective that `pretrain
--objective` picks from `OBJECTIVES`. A run's record names its objective.

A new pretraining objective is a `Task` (its loss and validation) with an entry point taking what
`pretrain` and `pretrain_units` take, and one `Objective` line here: `pretrain --objective NAME`
then runs it, `--help` lists it, and its runs say so in their record. Entry points are imported
only when chosen, so listing the objectives loads no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audiotok_cli.errors import SettingsError

CLASSIFICATION = "classification"  # what `train` fits: the labels


@dataclass(frozen=True)
class Objective:
    name: str
    reads: str  # what the encoder reads: tokens or frames
    module: str  # where its entry point lives, imported when chosen
    entry: str
    summary: str
    targets: bool = False  # it predicts the ids of a vocabulary's tokens named by --targets
    seeds: bool = False  # `--seeds N` repeats it (an encoder's seed moves its units)

    def pretraining(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.entry)


OBJECTIVES: dict[str, Objective] = {
    objective.name: objective
    for objective in (
        Objective(
            "masked-tokens", "tokens", "audiotok_cli.training.pretrain", "pretrain",
            "BERT's masked-token modelling of a vocabulary's ids",
        ),
        Objective(
            "masked-units", "frames", "audiotok_cli.training.units", "pretrain_units",
            "HuBERT-style masked unit prediction: a frame encoder predicts the --targets ids at masked "
            "spans of frames",
            targets=True, seeds=True,
        ),
    )
}  # fmt: skip

# the older spelling, `--input`, fixed: a new objective that reads frames too never takes it over
_BY_INPUT = {"tokens": "masked-tokens", "frames": "masked-units"}


def chosen_objective(objective: str | None, input: str | None) -> Objective:
    """`--objective NAME`, or the older spelling `--input tokens|frames` (masked tokens, masked
    units); both given, they must agree."""
    if objective is None:
        objective = _BY_INPUT.get(input or "tokens")
        if objective is None:
            raise SettingsError(f"unknown --input {input!r}; choose from {', '.join(_BY_INPUT)}")
    chosen = OBJECTIVES.get(objective)
    if chosen is None:
        raise SettingsError(f"unknown --objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    if input is not None and input != chosen.reads:
        raise SettingsError(f"--objective {chosen.name} reads {chosen.reads}, not --input {input}")
    return chosen


def recorded_objective(task: str, input: str) -> str:
    """The objective of a run recorded before records named it: classification, or the pretraining
    objective that reads its input (the one fallback)."""
    return CLASSIFICATION if task == "classify" else _BY_INPUT[input]
