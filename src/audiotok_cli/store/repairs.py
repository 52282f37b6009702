"""The commands that make a stored group again with the settings it was made with, so that every
repair a reader or `verify` names runs as printed (tests run each one).

A damaged shard of features or tokens is made again piecewise: `verify --repair` marks its rows
pending, then its stage (with the group's own settings) redoes exactly those. A group whose array
metadata is gone, or a vocabulary (clustered whole, bit for bit the same from the same seed), is
made again whole with `--overwrite`.
"""

from __future__ import annotations

import shlex

from pydantic import BaseModel

from audiotok_cli.settings import AudioSettings, VocabSettings
from audiotok_cli.store.records import FeaturesRecord, TokensRecord, VocabRecord

MARK_PENDING = "audiotok verify --repair"


def remake(kind: str, name: str, record: BaseModel | None, whole: bool = False) -> str:
    """The stage command that makes a group's pending rows again (all of it with `whole`)."""
    overwrite = " --overwrite" if whole else ""
    if kind == "vocab":
        return _remake_vocab(record) if isinstance(record, VocabRecord) else f"audiotok vocab{overwrite}"
    if kind == "features":
        flags = _audio_flags(record) if isinstance(record, FeaturesRecord) else ""
        return f"audiotok featurize --name {name}{flags}{overwrite}"
    vocab = record.vocab if isinstance(record, TokensRecord) else name
    merges = f" --merges {record.merges}" if isinstance(record, TokensRecord) and record.merges else ""
    return f"audiotok tokenize --vocab {vocab}{merges}{overwrite}"


def repair_shard(kind: str, name: str, record: BaseModel | None) -> str:
    """What a reader that finds a damaged shard names: mark it pending, then its stage redoes it
    (`;`: verify exits 5 while other damage is left, and the stage still runs)."""
    return f"{MARK_PENDING}; {remake(kind, name, record)}"


def _remake_vocab(record: VocabRecord) -> str:
    """`vocab` with the record's settings and seed: k-means from the same seed and frames gives the
    same centroids, so tokens made from the damaged vocabulary still match it."""
    default = VocabSettings()
    flags = [f"--features {record.features}", f"--k {record.n_clusters}"]
    flags += [f"--transform {shlex.quote(name)}" for name in record.transforms]
    if record.quantizer != default.quantizer:
        flags.append(f"--quantizer {record.quantizer}")
    if record.niter != default.niter:
        flags.append(f"--niter {record.niter}")
    if record.init != default.init:
        flags.append(f"--init {record.init}")
    if record.sample_frames is not None:
        flags.append(f"--sample-frames {record.sample_frames}")
    return f"audiotok --seed {record.seed} vocab {' '.join(flags)} --overwrite"


def _audio_flags(record: FeaturesRecord) -> str:
    """The featurize flags of a features group's settings that are not the defaults (an encoder's
    sample rate is its own, so it is left out)."""
    made, default = record.audio.model_dump(), AudioSettings().model_dump()
    if record.encoder is not None:
        made.pop("sample_rate")
    flags = []
    for setting, value in made.items():
        if value != default[setting]:
            flag = setting.replace("_", "-")
            if isinstance(value, bool):
                flags.append(f"--{flag}" if value else f"--no-{flag}")
            else:  # a list (several layers) repeats its flag
                values = value if isinstance(value, list) else [value]
                flags.extend(f"--{flag} {shlex.quote(str(one))}" for one in values)
    return "".join(f" {flag}" for flag in flags)
