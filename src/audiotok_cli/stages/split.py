"""`split`: test, val and train from the clips' own structure and a seeded hash.

Test: AudioSet's `eval` source always, so results compare with published AudioSet mAP; for imported
collections, the fold, groups or sources named, as the published protocols cut them (ESC-50's and
UrbanSound8K's folds, unseen speakers, unseen recordings), its published `test` split where it has
one (a hub audiofolder's or `datasets` export's), or else a seeded hash of each clip's group (its id
where it has none). Whatever the protocol, the sets of copies it puts on more than one side of
train/val/test are counted, said and recorded (store/leaks.py), or left out of test and val with
`drop_leaked`. Val: a seeded hash of each clip's id, or of its group where clips have
groups, so val never shares a speaker or a source recording with train (a val split that does
scores near 1 while unseen speakers score a quarter of that). Every draw depends only on the seed and
the clip, so appending clips never reshuffles old ones.

For a single-label collection (each clip one class: ESC-50, spoken digits) val, and test where it
is drawn rather than named, are stratified by class with groups kept whole (scikit-learn's
`StratifiedGroupKFold`, seeded): a val split of ten speakers that misses two of ten classes would
choose the best epoch on eight. That draw depends on every clip, so appending clips may move old
ones; `--no-stratify` keeps the per-clip hash. A val or test split missing a class of train is named.

Clips without labels stay unassigned unless `keep_unlabeled`: trained on, they teach "nothing here".
Clips of sources outside `train_sources` stay unassigned too: `split --train-source bal_train` keeps
a classifier on the balanced set while `pretrain` still learns from unbal_train's clips.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from audiotok_cli.audioset.classes import SOURCES
from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import SplitSettings
from audiotok_cli.store import SPLITS, SplitRecord, Store, split_code

log = logging.getLogger(__name__)
PUBLISHED_TEST = "test"  # a hub audiofolder's or `datasets` export's test split, imported as a source
DEFAULT_TEST_RATIO = 0.2


@dataclass
class SplitResult:
    counts: dict[str, int]
    val_ratio: float
    seed: int
    unlabeled_left_out: int
    other_sources_left_out: int
    test_rule: str = "the eval source"
    val_by_group: bool = False
    stratified: bool = False
    classes: dict[str, int] = field(default_factory=dict)  # split -> classes with a clip there
    missing: dict[str, list[str]] = field(default_factory=dict)  # val/test -> train's classes absent
    published_test: bool = False  # test is the collection's published `test` source, chosen by default
    leaked_sets: int = 0  # sets of copies the split puts on more than one side (store/leaks.py)
    leaked_test: int = 0  # test clips with a copy in train or val
    leaked_val: int = 0  # val clips with a copy in train
    dropped_leaked: int = 0  # clips `--drop-leaked` took out of test and val


def hash_unit(ytid: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, ytid)."""
    digest = hashlib.blake2b(f"{seed}:{ytid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _draws(keys: np.ndarray, seed: int, salt: str = "") -> np.ndarray:
    return np.fromiter((hash_unit(salt + key, seed) for key in keys), dtype=np.float64, count=len(keys))


def split(store_path: Path, settings: SplitSettings, seed: int) -> SplitResult:
    with Store.writing(store_path, "split") as store:
        ids, sources = store.ytids(), store.sources()
        published = _published_test(store, settings, sources)
        if published:
            settings = settings.model_copy(update={"test_sources": (PUBLISHED_TEST,)})
        folds, groups = store.folds(), store.groups()
        grouped = groups != ""
        labels = store.sparse_labels()  # read once: the stratified draws and the class counts use it
        stratify = settings.stratify if settings.stratify is not None else store.single_label()
        classes = _single_classes(labels) if stratify else None
        test, rule = _test_rows(store, settings, seed, sources, folds, groups, ids, classes)
        by_group = settings.val_by_group if settings.val_by_group is not None else bool(grouped.any())
        val_keys = np.where(grouped, groups, ids) if by_group else ids
        if classes is not None:
            val = _stratified(~test & (classes >= 0), classes, val_keys, settings.val_ratio, seed)
        else:
            val = _at_least_one(
                _draws(val_keys, seed), settings.val_ratio, val_keys, ~test & grouped & by_group
            )
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
        leaks = store.leaks(codes)
        dropped = (leaks.test | leaks.val) if settings.drop_leaked else np.zeros(len(codes), dtype=bool)
        codes[dropped] = split_code("unassigned")
        leaks = store.leaks(codes) if dropped.any() else leaks
        record = SplitRecord(
            val_ratio=settings.val_ratio,
            seed=seed,
            keep_unlabeled=settings.keep_unlabeled,
            train_sources=settings.train_sources,
            test_fold=settings.test_fold,
            test_groups=settings.test_groups,
            test_sources=settings.test_sources,
            test_ratio=_test_ratio(settings) if "of imported clips" in rule else None,  # drawn, not named
            val_by_group=by_group,
            stratify=classes is not None,
            test_rule=rule,
            drop_leaked=settings.drop_leaked,
            leaked_sets=leaks.sets,
            leaked_test=int(leaks.test.sum()),
            leaked_val=int(leaks.val.sum()),
            dropped_leaked=int(dropped.sum()),
        )
        store.set_splits(codes, record)
        present = _classes_present(labels, codes)
        found_by = _copies_found_by(store)
    counts = {name: int((codes == split_code(name)).sum()) for name in SPLITS[1:]}
    names = store.classes.names
    missing = {
        name: [names[c] for c in np.flatnonzero(present["train"] & ~present[name])]
        for name in ("val", "test")
        if counts[name] and (present["train"] & ~present[name]).any()
    }
    for name, absent in missing.items():
        log.warning(
            "%s holds no clip of %d of train's classes (%s): its mAP averages over the others",
            name, len(absent), ", ".join(absent[:5]) + ", ..." * (len(absent) > 5),
        )  # fmt: skip
    untrained = [names[c] for c in np.flatnonzero((present["val"] | present["test"]) & ~present["train"])]
    if untrained:
        log.warning(
            "train holds no clip of classes that val or test hold (%d: %s): no model can learn them, yet "
            "they count against every model alike; move clips into train (another --seed or protocol)",
            len(untrained), ", ".join(untrained[:5]) + ", ..." * (len(untrained) > 5),
        )  # fmt: skip
    if record.leaked_sets:
        log.warning(
            "%d sets of copies (%s) lie on more than one side of train/val/test: %d of %d test clips have "
            "a copy in train or val, %d of %d val clips one in train; eval, compare, runs and report give "
            "the test figures without them too (leak-free); `split --drop-leaked` leaves them out of "
            "test and val instead",
            record.leaked_sets, found_by, record.leaked_test, counts["test"], record.leaked_val,
            counts["val"],
        )  # fmt: skip
    return SplitResult(
        counts,
        settings.val_ratio,
        seed,
        int((left_out & ~other).sum()),
        int(other.sum()),
        rule,
        by_group,
        classes is not None,
        {name: int(present[name].sum()) for name in counts},
        missing,
        published,
        record.leaked_sets,
        record.leaked_test,
        record.leaked_val,
        record.dropped_leaked,
    )


def _published_test(store: Store, settings: SplitSettings, sources: np.ndarray) -> bool:
    """Whether test is the collection's published `test` source: by default where it has one and no
    test is named or drawn (`--test-ratio`), as DCASE and HEAR keep published splits."""
    named = settings.test_fold is not None or settings.test_groups or settings.test_sources
    if named or settings.test_ratio is not None or PUBLISHED_TEST not in store.source_names:
        return False
    return bool(np.isin(sources, store.source_codes([PUBLISHED_TEST])).any())


def _test_ratio(settings: SplitSettings) -> float:
    return DEFAULT_TEST_RATIO if settings.test_ratio is None else settings.test_ratio


def _copies_found_by(store: Store) -> str:
    """How the store's copies were found, for the leak warning."""
    modes = {collection.dedupe for collection in store.collections.values()}
    return " or ".join(sorted("the same samples" if mode == "near" else "the same bytes" for mode in modes))


def _single_classes(labels: sparse.csr_matrix) -> np.ndarray:
    """Each clip's one class, -1 for clips without a label (or with several: never stratified on)."""
    counts = np.asarray(labels.sum(axis=1)).ravel()
    first = np.asarray(labels.argmax(axis=1)).ravel()
    return np.where(counts == 1, first, -1)


def _classes_present(labels: sparse.csr_matrix, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Per split, which classes have a clip in it."""
    return {
        name: np.asarray(labels[codes == split_code(name)].sum(axis=0)).ravel() > 0 for name in SPLITS[1:]
    }


def _stratified(
    candidates: np.ndarray, classes: np.ndarray, keys: np.ndarray, ratio: float, seed: int
) -> np.ndarray:
    """About `ratio` of the `candidates` (a mask), every class in proportion, groups (`keys`) whole:
    a fold of scikit-learn's seeded `StratifiedGroupKFold` with 1/ratio folds, or as many as
    the largest class has clips (6 clips a class and a ratio of 0.1 give a sixth, one clip a class,
    where a tenth could not hold every class)."""
    from sklearn.model_selection import StratifiedGroupKFold

    rows = np.flatnonzero(candidates)
    largest = int(np.bincount(classes[rows]).max()) if len(rows) else 0
    n_splits = min(max(2, round(1 / ratio)), len(np.unique(keys[rows])), largest)
    chosen = np.zeros(len(candidates), dtype=bool)
    if n_splits < 2:
        return chosen
    folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed % 2**32)
    with warnings.catch_warnings():  # "least populated class has only N members": said per split below
        warnings.simplefilter("ignore", UserWarning)
        held_out = [held for _, held in folds.split(rows, classes[rows], keys[rows])]
    # a class with fewer clips than folds misses some folds: take the first holding the most classes
    held = max(held_out, key=lambda fold: len(np.unique(classes[rows[fold]])))
    chosen[rows[held]] = True
    return chosen


def _test_rows(
    store: Store,
    settings: SplitSettings,
    seed: int,
    sources: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    ids: np.ndarray,
    classes: np.ndarray | None = None,
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
        by_group = " by group" * bool(grouped.any())
        ratio = _test_ratio(settings)
        if classes is not None:
            test |= _stratified(imported & (classes >= 0), classes, keys, ratio, seed + 1)
            rules.append(f"{ratio:.0%} of imported clips{by_group}, stratified by class")
        else:
            test |= imported & _at_least_one(_draws(keys, seed, "test:"), ratio, keys, imported & grouped)
            rules.append(f"hash {ratio:.0%} of imported clips{by_group}")
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
