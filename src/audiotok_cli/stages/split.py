"""`split`: test, val and train from the clips' own structure and a seeded hash.

Test: AudioSet's `eval` source always, so results compare with published AudioSet mAP; for imported
collections, the fold, groups or sources named, as the published protocols cut them (ESC-50's and
UrbanSound8K's folds, unseen speakers, unseen recordings), or else a seeded hash of each clip's group
(its id where it has none). Val: a seeded hash of each clip's id, or of its group where clips have
groups, so val never shares a speaker or a source recording with train (a val split that does
scores near 1 while unseen speakers score a quarter of that). Every draw depends only on the seed and
the clip, so appending clips never reshuffles old ones.

Clips without labels stay unassigned unless `keep_unlabeled`: trained on, they teach "nothing here".
Clips of sources outside `train_sources` stay unassigned too: `split --train-source bal_train` keeps
a classifier on the balanced set while `pretrain` still learns from unbal_train's clips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import SplitSettings
from audiotok_cli.store import SOURCES, SPLITS, SplitRecord, Store, split_code


@dataclass
class SplitResult:
    counts: dict[str, int]
    val_ratio: float
    seed: int
    unlabeled_left_out: int
    other_sources_left_out: int
    test_rule: str = "the eval source"
    val_by_group: bool = False


def hash_unit(ytid: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, ytid)."""
    digest = hashlib.blake2b(f"{seed}:{ytid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _draws(keys: np.ndarray, seed: int, salt: str = "") -> np.ndarray:
    return np.fromiter((hash_unit(salt + key, seed) for key in keys), dtype=np.float64, count=len(keys))


def split(store_path: Path, settings: SplitSettings, seed: int) -> SplitResult:
    with Store.writing(store_path, "split") as store:
        ids, sources = store.ytids(), store.sources()
        folds, groups = store.folds(), store.groups()
        grouped = groups != ""
        test, rule = _test_rows(store, settings, seed, sources, folds, groups, ids)
        by_group = settings.val_by_group if settings.val_by_group is not None else bool(grouped.any())
        val_keys = np.where(grouped, groups, ids) if by_group else ids
        val = _at_least_one(_draws(val_keys, seed), settings.val_ratio, val_keys, ~test & grouped & by_group)
        codes = np.where(val, split_code("val"), split_code("train")).astype(np.uint8)
        codes[test] = split_code("test")
        if settings.train_sources is None:
            other = np.zeros(len(codes), dtype=bool)
        else:
            _require_known("source", settings.train_sources, store.source_names)
            other = ~test & ~np.isin(sources, store.source_codes(settings.train_sources))
        left_out = np.zeros(len(codes), dtype=bool) if settings.keep_unlabeled else ~store.labeled()
        # no labels: an all-negative example is a wrong one; other sources: kept out of train/val
        codes[left_out | other] = split_code("unassigned")
        record = SplitRecord(
            val_ratio=settings.val_ratio,
            seed=seed,
            keep_unlabeled=settings.keep_unlabeled,
            train_sources=settings.train_sources,
            test_fold=settings.test_fold,
            test_groups=settings.test_groups,
            test_sources=settings.test_sources,
            test_ratio=settings.test_ratio if "hash" in rule else None,
            val_by_group=by_group,
            test_rule=rule,
        )
        store.set_splits(codes, record)
    counts = {name: int((codes == split_code(name)).sum()) for name in SPLITS[1:]}
    return SplitResult(
        counts,
        settings.val_ratio,
        seed,
        int((left_out & ~other).sum()),
        int(other.sum()),
        rule,
        by_group,
    )


def _test_rows(
    store: Store,
    settings: SplitSettings,
    seed: int,
    sources: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    ids: np.ndarray,
) -> tuple[np.ndarray, str]:
    """The test clips and how they were chosen: the eval source, and the fold, groups or sources
    named; with none named, a hash of the imported clips' groups (or ids)."""
    test = np.isin(sources, store.source_codes(["eval"]))
    rules = ["the eval source"] * bool(test.any())
    if settings.test_fold is not None:
        _require_known(
            "fold", [str(settings.test_fold)], sorted(str(f) for f in set(folds.tolist()) if f >= 0)
        )
        test |= folds == settings.test_fold
        rules.append(f"fold {settings.test_fold}")
    if settings.test_groups:
        _require_known("group", settings.test_groups, sorted(set(groups.tolist()) - {""}))
        test |= np.isin(groups, list(settings.test_groups))
        rules.append(f"groups {','.join(settings.test_groups)}")
    if settings.test_sources:
        _require_known("source", settings.test_sources, store.source_names)
        test |= np.isin(sources, store.source_codes(settings.test_sources))
        rules.append(f"sources {','.join(settings.test_sources)}")
    named = settings.test_fold is not None or settings.test_groups or settings.test_sources
    imported = ~np.isin(sources, store.source_codes(list(SOURCES)))
    if not named and imported.any():
        grouped = groups != ""
        keys = np.where(grouped, groups, ids)
        test |= imported & _at_least_one(
            _draws(keys, seed, "test:"), settings.test_ratio, keys, imported & grouped
        )
        rules.append(f"hash {settings.test_ratio:.0%} of imported clips" + " by group" * bool(grouped.any()))
    return test, " + ".join(rules) or "none"


def _at_least_one(draws: np.ndarray, ratio: float, keys: np.ndarray, grouped: np.ndarray) -> np.ndarray:
    """`draws < ratio`, and where that takes no group of the `grouped` clips, their group of lowest
    draw: four speakers and a ratio of 0.1 would otherwise leave val (or test) empty as often as not."""
    chosen = draws < ratio
    if grouped.any() and not (chosen & grouped).any() and len(np.unique(keys[grouped])) > 1:
        lowest = keys[grouped][np.argmin(draws[grouped])]
        chosen |= keys == lowest
    return chosen


def _require_known(what: str, names: tuple[str, ...] | list[str], known: list[str]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise SettingsError(
            f"no clip has {what} {', '.join(unknown)}; the store's {what}s: {shown or 'none'}"
        )
