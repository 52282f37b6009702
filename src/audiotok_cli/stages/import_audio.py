"""`import`: a labelled audio collection on disk -> clip rows in the store, its audio read in place.

A clip's id is `{collection}/{path relative to the root}`, so importing again adds only new files.
Labels that are all AudioSet MIDs or display names join AudioSet's 527 classes; otherwise the
collection keeps its own class list (sorted label names), recorded in the store: a store has one
class list, and labels outside it are refused before anything is written. Files no decoder can
open are reported, counted and skipped (the next import tries them again), never fatal. Identical
files (ESC-50 and hand-made collections hold copies) are found by their content and put in one
group, so no split puts one copy in train and another in test.

New clips are stored in an order fixed by a hash of their ids, not by path: a collection's paths
sort by class or speaker (`dog/...`, `0_george_...`), and a shard of one class would make every
training batch one class (the batch reader draws a batch from a shard), which a CNN's batch norm
never recovers from.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from audiotok_cli.audio.logmel import unreadable
from audiotok_cli.audioset.classes import SOURCES, audioset_ids
from audiotok_cli.class_lists import ClassIndex, audioset_classes, is_audioset, own_classes
from audiotok_cli.corpora import Entry, read_collection
from audiotok_cli.corpora.duplicates import DEDUPE_MODES, content_digest, join_copies
from audiotok_cli.corpora.hub import dataset_files, dataset_to_audiofolder
from audiotok_cli.errors import MismatchError, SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.settings import NAME_PATTERN
from audiotok_cli.store import CollectionRecord, FileStamp, NewStore, Store

log = logging.getLogger(__name__)
ROWS_PER_COMMIT = 512


@dataclass
class ImportResult:
    name: str
    layout: str
    root: str
    n_classes: int
    audioset_classes: bool
    clips_added: int = 0
    clips_known: int = 0
    unlabeled: int = 0
    sources: dict[str, int] = field(default_factory=dict)  # source -> clips added
    folds: list[int] = field(default_factory=list)
    groups: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # relative path -> why
    dedupe: str = "exact"
    duplicate_files: int = 0  # clips of the store with an identical copy (exact bytes, or samples)
    duplicate_sets: int = 0
    regrouped: int = 0  # clips whose group changed to keep copies together
    copies_across_folds: int = 0  # sets whose copies the collection's own folds put apart
    files_gone: list[str] = field(default_factory=list)  # imported before, missing now
    files_changed: list[str] = field(default_factory=list)  # imported before, other content now
    rows_pending: int = 0  # features and tokens rows of changed files marked for their stage to redo
    relabeled: list[str] = field(default_factory=list)  # imported before, other labels in the metadata now
    moved: list[str] = field(default_factory=list)  # imported before, another fold or group in it now


def import_collection(
    store_path: Path,
    root: Path,
    name: str | None = None,
    layout: str | None = None,
    manifest: Path | None = None,
    copy_to: Path | None = None,
    dedupe: str = "exact",
    label_column: str | None = None,
    audio_dir: Path | None = None,
) -> ImportResult:
    """Import the collection at `root` (layout detected unless given) as `name` (default: the
    folder's name); with `copy_to`, its files are copied under `copy_to/name/` and read from there.
    A `datasets` export (Parquet or Arrow with an `audio` column) is written out as an audiofolder
    under `audio_dir/name/` first. Every file's content is digested (`dedupe`: exact bytes, or near:
    decoded samples) and copies are put in one group, so that no split separates them."""
    if dedupe not in DEDUPE_MODES:
        raise SettingsError(f"--dedupe {dedupe!r}: choose {' or '.join(DEDUPE_MODES)}")
    root = root.resolve()
    name = _collection_name(name or (root.stem if root.is_file() else root.name))
    if dataset_files(root) and layout in (None, "audiofolder"):
        if audio_dir is None:
            raise SettingsError(f"{root} is a datasets export: its audio needs a folder; pass --audio-dir")
        root = dataset_to_audiofolder(root, audio_dir.resolve() / name, label_column)
        label_column = None  # its metadata names the labels `label`
    layout, entries = read_collection(root, layout, manifest, label_column)
    home = root if copy_to is None else copy_to.resolve() / name
    labels = {label for entry in entries for label in entry.labels}
    as_mids = audioset_ids(labels)
    wanted = audioset_classes() if as_mids is not None else own_classes(sorted(labels))
    with Store.writing(store_path, "import", create=NewStore(wanted, SOURCES)) as store:
        classes = store.classes
        ids = _label_ids(store, classes, labels, as_mids)
        known = store.collections.get(name)
        if known is not None and known.root != str(home):
            raise MismatchError(
                f"collection {name!r} in {store.path} reads its audio from {known.root}, not {home}; "
                "import this one under another --name"
            )
        result = ImportResult(name, layout, str(home), len(classes), is_audioset(classes), dedupe=dedupe)
        contents = dict(known.contents) if known is not None and known.dedupe == dedupe else {}
        stamps = dict(known.files) if known is not None else {}
        store.save_collection(
            name,
            CollectionRecord(root=str(home), layout=layout, dedupe=dedupe, contents=contents, files=stamps),
        )
        imported = sorted(clip.partition("/")[2] for clip in store.row_of if clip.startswith(f"{name}/"))
        new = sorted(
            (entry for entry in entries if f"{name}/{entry.path}" not in store.row_of),
            key=lambda entry: _mixed(f"{name}/{entry.path}"),
        )
        result.clips_known = len(entries) - len(new)
        pending: list[Entry] = []
        with progress(f"import {name}", len(imported) + len(new)) as advance:
            changed = _compare_with_disk(home, imported, stamps, contents, dedupe, result, advance)
            if changed:
                result.rows_pending = store.mark_clips_pending(
                    np.array([store.row_of[f"{name}/{path}"] for path in changed])
                )
            _relabel(store, name, entries, classes, ids, result)
            _move(store, name, entries, result)
            for entry in new:
                if copy_to is not None:
                    _copy(root / entry.path, home / entry.path)
                why = unreadable(home / entry.path)
                if why is not None:
                    result.unreadable[entry.path] = why
                else:
                    stamps[entry.path] = _stamp(home / entry.path)
                    contents[entry.path] = _digest(home / entry.path, dedupe, stamps[entry.path])
                    pending.append(entry)
                    if len(pending) >= ROWS_PER_COMMIT:
                        _append(store, name, pending, classes, ids, result)
                advance(1)
            _append(store, name, pending, classes, ids, result)
        collection = CollectionRecord(
            root=str(home),
            layout=layout,
            unreadable=result.unreadable,
            dedupe=dedupe,
            contents=contents,
            files=stamps,
            gone=result.files_gone,
            changed=result.files_changed,
        )
        store.save_collection(name, collection)
        _keep_copies_together(store, result)
        folds, groups = store.folds(), store.groups()
        mine = np.char.startswith(store.ytids().astype(str), f"{name}/")
        result.folds = sorted(int(f) for f in np.unique(folds[mine]) if f >= 0)
        result.groups = len({g for g in groups[mine] if g})
    if result.unreadable:
        first_path, first_why = next(iter(result.unreadable.items()))
        log.warning(
            "%d file(s) of %s could not be read and were skipped; first: %s (%s)",
            len(result.unreadable),
            root,
            root / first_path,
            first_why,
        )
    return result


def _compare_with_disk(
    home: Path,
    imported: list[str],
    stamps: dict[str, FileStamp],
    contents: dict[str, str],
    dedupe: str,
    result: ImportResult,
    advance: Callable[[int], None],
) -> list[str]:
    """What happened on disk to the files imported before, as `git status` or `dvc status` says it:
    gone (its clip stays, with what was made from it), or changed (hashed only where size or mtime
    moved; its stamp and digest renewed). The changed paths."""
    changed = []
    for path in imported:
        advance(1)
        try:
            stat = (home / path).stat()
        except OSError:  # gone, or a symlink whose content is gone
            result.files_gone.append(path)
            continue
        before = stamps.get(path)
        if before is None or (before.size, before.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            stamps[path] = _stamp(home / path)  # stamped now where an older audiotok imported it
            if before is not None and stamps[path].sha256 != before.sha256:
                changed.append(path)
        if path in changed or path not in contents:  # or digested with another --dedupe
            contents[path] = _digest(home / path, dedupe, stamps[path])
    result.files_changed = changed
    return changed


def _stamp(path: Path) -> FileStamp:
    stat = path.stat()
    with path.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return FileStamp(size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha256)


def _digest(path: Path, dedupe: str, stamp: FileStamp) -> str:
    """The file's content digest (exact: its sha256, hashed once); "" where it cannot be decoded
    whole (it is then nobody's copy)."""
    if dedupe == "exact":
        return stamp.sha256
    try:
        return content_digest(path, dedupe)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return ""


def _keep_copies_together(store: Store, result: ImportResult) -> None:
    """Join the groups of identical clips across every collection in the store (see
    corpora/duplicates.py) and count them."""
    digests = store.content_digests()
    found = join_copies(store.groups(), digests)
    if found.joined:
        store.set_groups(found.groups)
    result.duplicate_files, result.duplicate_sets, result.regrouped = found.files, found.sets, found.joined
    folds = store.folds()
    known = digests != ""
    fold_sets = {}
    for digest, fold in zip(digests[known], folds[known], strict=True):
        fold_sets.setdefault(digest, set()).add(int(fold))
    result.copies_across_folds = sum(len(folds_of) > 1 for folds_of in fold_sets.values())


def _relabel(
    store: Store,
    name: str,
    entries: list[Entry],
    classes: ClassIndex,
    ids: dict[str, int],
    result: ImportResult,
) -> None:
    """Clips already in the store whose labels the collection now gives otherwise (a corrected
    metadata file, a re-export) take the new ones: a re-import is a diff, never the old labels kept."""
    known = _known_rows(store, name, entries)
    if not known:
        return
    rows = np.array([row for row, _ in known])
    wanted = _label_rows([entry for _, entry in known], len(classes), ids)
    differ = (store.sparse_labels()[rows].toarray() != wanted).any(axis=1)
    if differ.any():
        store.relabel(rows[differ], wanted[differ])
        result.relabeled += [entry.path for (_, entry), moved in zip(known, differ, strict=True) if moved]


def _move(store: Store, name: str, entries: list[Entry], result: ImportResult) -> None:
    """Clips already in the store whose fold or group the collection now gives otherwise take the
    new ones (copies are joined again afterwards)."""
    known = _known_rows(store, name, entries)
    if not known:
        return
    folds, groups, digests = store.folds(), store.groups(), store.content_digests()
    values, counts = np.unique(digests[digests != ""], return_counts=True)
    copied = np.isin(digests, values[counts > 1])
    moved = []
    for row, entry in known:
        fold, group = -1 if entry.fold is None else entry.fold, entry.group or ""
        if folds[row] != fold or not _group_agrees(str(groups[row]), group, bool(copied[row])):
            folds[row], groups[row] = fold, group
            moved.append(entry.path)
    if moved:
        store.set_folds(folds)
        store.set_groups(groups)
        result.moved += moved


def _group_agrees(stored: str, wanted: str, has_copy: bool) -> bool:
    """Whether a clip's stored group is the one its metadata gives, or, for a clip with a copy, one
    that joining copies made of it (`a+b` from `a`; any group from none: its copy's)."""
    if stored == wanted or not has_copy:
        return stored == wanted
    return not wanted or wanted in stored.split("+")


def _known_rows(store: Store, name: str, entries: list[Entry]) -> list[tuple[int, Entry]]:
    """The entries whose clips the store holds already, each with its clip's row."""
    row_of = store.row_of
    return [(row_of[f"{name}/{entry.path}"], entry) for entry in entries if f"{name}/{entry.path}" in row_of]


def _label_rows(entries: list[Entry], n_classes: int, ids: dict[str, int]) -> np.ndarray:
    """The entries' labels as rows of the store's labels column ([entries, classes] bool)."""
    labels = np.zeros((len(entries), n_classes), dtype=bool)
    for row, entry in enumerate(entries):
        labels[row, [ids[label] for label in entry.labels]] = True
    return labels


def _mixed(clip_id: str) -> bytes:
    """A clip's place among the new rows: a hash of its id, the same on every machine."""
    return hashlib.blake2b(clip_id.encode(), digest_size=8).digest()


def _collection_name(name: str) -> str:
    """A collection name is the first part of its clip ids: one plain segment."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise SettingsError(
            f"collection name {name!r}: use letters, digits, '.', '_' or '-' (at most 64); pass --name"
        )
    return name


def _label_ids(
    store: Store, classes: ClassIndex, labels: set[str], as_mids: dict[str, str] | None
) -> dict[str, int]:
    """Each label's column in the store's class list; labels outside it are refused in one line."""
    names = as_mids if is_audioset(classes) and as_mids is not None else {label: label for label in labels}
    lookup = classes.mid_to_index
    outside = sorted(label for label in labels if names[label] not in lookup)
    if outside:
        kind = "AudioSet's 527 classes" if is_audioset(classes) else f"its own {len(classes)} classes"
        raise MismatchError(
            f"the store {store.path} labels clips with {kind}; {len(outside)} labels of this collection "
            f"are not among them ({', '.join(outside[:3])}{', ...' if len(outside) > 3 else ''}); "
            "import it into a fresh store with --store"
        )
    return {label: lookup[names[label]] for label in labels}


def _copy(source: Path, target: Path) -> None:
    if source.is_file() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _append(
    store: Store,
    name: str,
    entries: list[Entry],
    classes: ClassIndex,
    ids: dict[str, int],
    result: ImportResult,
) -> None:
    """Commit a batch of clip rows, one call per source (a row's source is one code)."""
    for source in sorted({entry.source or name for entry in entries}):
        batch = [entry for entry in entries if (entry.source or name) == source]
        labels = _label_rows(batch, len(classes), ids)
        store.append_clips(
            [f"{name}/{entry.path}" for entry in batch],
            source,
            labels,
            folds=[-1 if entry.fold is None else entry.fold for entry in batch],
            groups=[entry.group or "" for entry in batch],
        )
        result.sources[source] = result.sources.get(source, 0) + len(batch)
        result.unlabeled += int((~labels.any(axis=1)).sum())
    result.clips_added += len(entries)
    entries.clear()
