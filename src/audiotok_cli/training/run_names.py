"""Where a run goes: its folder's name. `--run-name` as given; else the model and its input
(`bert-logmel`), and, where that holds a run of other settings, a name that says what differs
(`-lr0.003`, `-clip-mean-deltas`) or `-2`, `-3`: a second recipe never takes over a first's folder or
set. A set's runs are `{base}-seedS`, `{base}-foldN`: this module makes those names, never reads them
(run_sets.py reads a run's set from its record)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from audiotok_cli.errors import MismatchError
from audiotok_cli.settings import NAME_PATTERN
from audiotok_cli.training.runs import RunRecord, _flat, _identity, read_record, settings_differences


def run_directory(runs_dir: Path, name: str | None, default: str, record: RunRecord, overwrite: bool) -> Path:
    """`--run-name` as given; else `default`, or a name after it (see `names_after`): the first that
    is free or holds an interrupted run of these very settings (which then resumes). So a second run
    of a model never collides with the first, and a rerun after a crash still finds its run."""
    if name or overwrite:
        return runs_dir / (name or default)

    def free(directory: Path) -> bool:
        previous = read_record(directory)  # a damaged one is named with its fix, never passed over
        return previous is None or (not previous.complete and previous.resume_key == record.resume_key)

    first = runs_dir / default
    if free(first):
        return first
    return next(
        runs_dir / candidate
        for candidate in names_after(default, read_record(first), record)
        if free(runs_dir / candidate)
    )


def names_after(default: str, previous: RunRecord, wanted: RunRecord) -> Iterator[str]:
    """The names to try when `default` holds a run (or set) of other settings than `wanted`: first
    one that says what differs (`bert-logmel-e30`, `simple-logmel-k64-lr0.003`), then `-2`, `-3`..."""
    described = differing_suffix(previous, wanted)
    if described and re.fullmatch(NAME_PATTERN, f"{default}-{described}-seed00"):
        yield f"{default}-{described}"
    for number in itertools.count(2):
        yield f"{default}-{number}"


SUFFIXES = {"epochs": "e", "learning_rate": "lr", "weight_decay": "wd", "batch_size": "b"}
# what a model spec takes from its inputs, not from a setting: never the name of a difference
DERIVED = frozenset(
    f"model.{field}" for field in ("n_tokens", "n_mels", "n_classes", "max_frames", "target_k")
)


def differing_suffix(previous: RunRecord, wanted: RunRecord, shown: int = 2) -> str:
    """What `wanted` sets otherwise than `previous`, as a name's part: `e30`, `lr0.003-b16`, `deltas`
    ("" where nothing but the seed differs, or too much to say in a name)."""
    old, new = _flat(_identity(previous)), _flat(_identity(wanted))
    keys = sorted((old.keys() | new.keys()) - DERIVED)
    # a seed (the run's, the split's) never names a set: `-seedS` and `-foldN` are its members' suffixes
    differing = [key for key in keys if old.get(key) != new.get(key) and key.rsplit(".", 1)[-1] != "seed"]
    if not differing or len(differing) > shown:
        return ""
    parts = []
    for key in differing:
        field, value = key.rsplit(".", 1)[-1], new.get(key)
        value = "-".join(json.loads(value)) if isinstance(value, str) and value.startswith("[") else value
        shown_value = f"{value:g}" if isinstance(value, float) else str(value)
        prefix = "" if field == "transforms" else SUFFIXES.get(field, field.replace("_", "-"))
        parts.append(re.sub(r"[^A-Za-z0-9._-]", "", f"{prefix}{shown_value}"))
    return "-".join(parts)


def repeat_base(
    runs_dir: Path,
    name: str | None,
    default: str,
    wanted: dict[str, RunRecord],
    key: Callable[[RunRecord], str],
    overwrite: bool,
) -> str:
    """The base name of a set of runs `{base}-{suffix}` (`-seed3`, `-fold2`) whose records should be
    `wanted` (suffix -> record) by `key`: `name` where given (a member of other settings is refused,
    naming them, unless `overwrite`); else `default`, `default-2`, ...: the first whose existing
    members all match, so another recipe never takes over (nor reports) a set that is not its own."""
    if overwrite:
        return name or default
    clash = _first_clash(runs_dir, name or default, wanted, key)
    if clash is None:
        return name or default
    directory, previous, record = clash
    if name:
        raise MismatchError(
            f"run {directory} was made with other settings ({settings_differences(previous, record)}); "
            "pass --overwrite to replace the set, or another --run-name"
        )
    return next(
        base
        for base in names_after(default, previous, record)
        if _first_clash(runs_dir, base, wanted, key) is None
    )


def _first_clash(
    runs_dir: Path, base: str, wanted: dict[str, RunRecord], key: Callable[[RunRecord], str]
) -> tuple[Path, RunRecord, RunRecord] | None:
    for suffix, record in wanted.items():
        directory = runs_dir / f"{base}-{suffix}"
        previous = read_record(directory)
        if previous is not None and key(previous) != key(record):
            return directory, previous, record
    return None
