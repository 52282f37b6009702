"""`featurize --encoder RUN`: a units run (training/units.py) as the front end of the featurize stage;
a stage never imports training, so what joins them lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiotok_cli.settings import AudioSettings, FeaturesSettings
from audiotok_cli.stages.featurize import FeaturizeResult, featurize
from audiotok_cli.training.runs import RECORD


def featurize_frames(
    store_path: Path,
    audio_dir: Path,
    audio: AudioSettings,
    layout: FeaturesSettings,
    runs_dir: Path,
    **options: Any,
) -> FeaturizeResult:
    """`featurize`, where `audio.encoder` may name a units run: a folder, or a run under `runs_dir`
    (recorded by its absolute path, so the features say which run made them wherever you stand)."""
    run = _units_run(audio.encoder, runs_dir)
    if run is None:
        return featurize(store_path, audio_dir, audio, layout, **options)
    from audiotok_cli.training.unit_frames import frames_maker  # imports torch

    audio = audio.model_copy(update={"encoder": str(run)})
    return featurize(store_path, audio_dir, audio, layout, frames_maker=frames_maker, **options)


def _units_run(encoder: str | None, runs_dir: Path) -> Path | None:
    if encoder is None:
        return None
    for folder in (Path(encoder), runs_dir / encoder):
        if (folder / RECORD).is_file():
            return folder.resolve()
    return None
