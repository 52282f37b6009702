"""Front ends: what turns a clip's samples into frames, chosen by `--encoder` in one place.

Nothing (log-mel), a units run's folder (its layer's states, `training/unit_frames.py`), or anything
else `transformers` loads (`audio/encoder.py`). Each is a `FrontEnd` line in `FRONT_ENDS`, built by
a function imported only when chosen (as model families are), so log-mel never loads torch. A new
front end is a class with `FrameMaker`'s interface, a function building it from the audio settings,
and one line here: featurize, the features record and predict then use it by its `--encoder`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from audiotok_cli.errors import DataError
from audiotok_cli.settings import AudioSettings

RUN_RECORD = "run.json"  # what marks a run folder (training/runs.py writes it)


class FrameMaker(Protocol):
    """Frames `[frame, dim]` of clips at `sample_rate`, at most `max_frames` a clip; `batch` clips a
    call to `many` fill its device; a clip without frames gets the reason instead."""

    settings: AudioSettings  # as the features record keeps them (an encoder's: at its own rate)
    sample_rate: int
    dim: int
    max_frames: int
    batch: int
    device: str

    def many(self, clips: list[np.ndarray], names: list[str]) -> list[np.ndarray | DataError]: ...


@dataclass(frozen=True)
class FrontEnd:
    name: str
    takes: Callable[[str | None], bool]  # whether an `--encoder` value names one of these
    module: str
    build: str  # (AudioSettings) -> FrameMaker, in `module`

    def maker(self) -> Callable[[AudioSettings], FrameMaker]:
        return getattr(importlib.import_module(self.module), self.build)


def is_units_run(encoder: str | None) -> bool:
    """Whether `--encoder` names a units run's folder."""
    return encoder is not None and (Path(encoder) / RUN_RECORD).is_file()


FRONT_ENDS: dict[str, FrontEnd] = {
    front.name: front
    for front in (  # the first that takes an `--encoder` value makes its frames
        FrontEnd("log-mel", lambda encoder: encoder is None, "audiotok_cli.audio.logmel", "LogMel"),
        FrontEnd("units", is_units_run, "audiotok_cli.training.unit_frames", "unit_frames"),
        FrontEnd("transformers", lambda encoder: True, "audiotok_cli.audio.encoder", "encoder_frames"),
    )
}


def front_end_of(encoder: str | None) -> FrontEnd:
    return next(front for front in FRONT_ENDS.values() if front.takes(encoder))


def frames_maker(audio: AudioSettings) -> FrameMaker:
    """The front end `audio.encoder` names, built (picklable: featurize's tasks call it)."""
    return front_end_of(audio.encoder).maker()(audio)


def resolve_encoder(encoder: str | None, runs_dir: Path | None = None) -> str | None:
    """`--encoder` as the features record keeps it: a units run, given as a folder or by its name
    under `runs_dir`, by its absolute path (so the features say which run made them wherever you
    stand); a transformers name or folder as given."""
    if encoder is None:
        return None
    for folder in (Path(encoder), *([runs_dir / encoder] if runs_dir is not None else [])):
        if is_units_run(str(folder)):
            return str(folder.resolve())
    return encoder
