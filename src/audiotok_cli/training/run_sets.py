"""Sets of runs: the runs `train --seeds N`, `train --cv` (`--seeds N` too) and `pretrain --seeds N`
plan together, which `runs` sums up in one row, `compare` and `report` compare as one side, and
`predict` averages. A run's record names its set, fold and seed (`RunRecord.member`, written when
the set planned it); nothing else reads a set from a run's name.

The one fallback: a run recorded without a set (by an audiotok from before sets were recorded, or
trained by hand as `--run-name NAME-seedS`) is read by its name, `NAME-seedS`, `NAME-foldN` or
`NAME-foldN-seedS`, as those audiotoks named their sets' runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiotok_cli.errors import SettingsError
from audiotok_cli.training.runs import RunRecord, SetMember, find_runs, run_folder

NAMED = re.compile(r"^(?P<base>.+?)(?:-fold(?P<fold>\d+))?(?:-seed(?P<seed>\d+))?$")  # the fallback


def member_of(name: str, record: RunRecord | None) -> SetMember | None:
    """The set the run `name` (its folder's name) belongs to, from its record; by its name where the
    record names none (the fallback above); None for a run of its own."""
    if record is not None and record.member is not None:
        return record.member
    named = NAMED.match(name)
    if named is None or not (named["fold"] or named["seed"]):
        return None
    fold, seed = (int(named[part]) if named[part] else None for part in ("fold", "seed"))
    return SetMember(name=named["base"], fold=fold, seed=seed)


def set_members(runs_dir: Path, name: str) -> tuple[str, dict[tuple[int, int], Path]]:
    """The runs of the set `name` by (fold, seed), and whether it is a set of seeds or of folds; a
    name that is neither a run nor a set is refused, listing the runs."""
    members: dict[str, dict[tuple[int, int], Path]] = {}
    for directory, record in find_runs(runs_dir):
        member = member_of(directory.name, record)
        if member is not None and member.name == name:
            unit = "fold" if member.fold is not None else "seed"
            members.setdefault(unit, {})[(member.fold or 0, member.seed or 0)] = directory
    if not members:
        run_folder(runs_dir, name)  # refuses, listing the runs there
    if len(members) > 1:
        raise SettingsError(f"{name!r} names both seeds and folds in {runs_dir}; name one set")
    return next(iter(members.items()))
