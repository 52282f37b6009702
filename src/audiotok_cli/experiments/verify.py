"""`verify --runs`: the store's verify (stages/verify.py) and the run folders' (training/runs.py)
in one report: a stage never reads run folders, so what joins them lives here."""

from __future__ import annotations

from pathlib import Path

from audiotok_cli.stages.verify import Damage, VerifyResult, verify
from audiotok_cli.training.runs import RETRAIN, damaged_runs


def verify_all(
    store_path: Path,
    repair: bool = False,
    mirror_dir: Path | None = None,
    runs_dir: Path | None = None,
    rewrite_unchecked: bool = False,
) -> VerifyResult:
    """The store (and mirror); with `runs_dir`, every run folder's files against their digests."""
    result = verify(store_path, repair, mirror_dir, rewrite_unchecked)
    if runs_dir is not None:
        damaged = damaged_runs(runs_dir)
        result.runs = sum(1 for _ in runs_dir.glob("*/")) if runs_dir.exists() else 0
        result.damaged += [Damage(f"run file {path}", why, RETRAIN) for path, why in damaged.items()]
    return result
