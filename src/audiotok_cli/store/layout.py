"""The one module that knows the Zarr v3 store layout (documented in docs/store.md).

    audiotok.zarr/                    record: format_version, n_clips
      clips/ytid|source|split|labels|mirror_file|fold|group  one row per clip, keyed by its id
                                      (a YouTube ID, or `{collection}/{path}` for imported clips)
      features/{name}/data|lengths    padded log-mel frames [clip, frame, mel] + true frame counts
      vocab/{name}/centroids          k-means centroids [k, mel]
      tokens/{name}/data|lengths      padded centroid ids [clip, frame] + true counts

Per-clip arrays share the clip row index. Padded arrays (padded.py) are sharded along the clip axis;
a shard (`rows_per_shard` rows) is the unit of work and of writing, so parallel workers own
disjoint shards. A shard's `lengths` are written after its data: a length of -1 means "not done".
Every group's record (records.py) is written after its arrays: without one, the group is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from pydantic import BaseModel, ValidationError
from scipy import sparse
from zarr.codecs import Crc32cCodec, ShardingCodec

from audiotok_cli.audioset.classes import SOURCES, class_index, is_audioset
from audiotok_cli.class_lists import ClassIndex
from audiotok_cli.errors import (
    BusyError,
    DataError,
    MismatchError,
    MissingInputError,
    OutputExistsError,
    SettingsError,
)
from audiotok_cli.lock import WriterLock, readers_of
from audiotok_cli.settings import NAME_PATTERN
from audiotok_cli.store.leaks import Leaks, find_leaks
from audiotok_cli.store.padded import (
    CHECKSUMMED,
    COMPRESSED,
    PENDING,
    UNREADABLE,
    Damaged,
    PaddedSet,
    R,
    first_sentence,
    write_record,
)
from audiotok_cli.store.records import (
    RECORD_KEY,
    ClipsRecord,
    CollectionRecord,
    FeaturesRecord,
    SplitRecord,
    StoreRecord,
    TokensRecord,
    VerifyRecord,
    VocabRecord,
)
from audiotok_cli.store.repairs import remake

log = logging.getLogger(__name__)
FORMAT_VERSION = 2
SPLITS = ("unassigned", "train", "val", "test")
KINDS: dict[str, type[BaseModel]] = {"features": FeaturesRecord, "vocab": VocabRecord, "tokens": TokensRecord}
CLIP_ROWS_PER_CHUNK = 4096
MIRROR_FILE, UNKNOWN_FILE = "mirror_file", -1  # clips/mirror_file: index into ClipsRecord.mirror_files
NO_FOLD, NO_GROUP = -1, ""  # clips/fold and clips/group where a collection has none


def checked_name(kind: str, name: str) -> str:
    """Group names become store paths: one plain segment, no '/', no '..'."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise SettingsError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (at most 64)"
        )
    return name


def only_candidate(
    candidates: list[str], one: str, many: str, where: object, missing: str, option: str
) -> str:
    """The single candidate input: none is a missing input (`missing` says the fix), several are
    refused with their names, so no stage ever guesses."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise MissingInputError(f"no {one} in {where}{missing}")
    raise SettingsError(
        f"{len(candidates)} {many} in {where}: {', '.join(candidates)}; choose one with {option}"
    )


def split_code(name: str) -> int:
    return SPLITS.index(name)


def refuse_a_file(path: Path) -> None:
    """A store is a folder: a file at its path is named, never opened or replaced."""
    if path.exists() and not path.is_dir():
        raise SettingsError(
            f"{path} is a file, not an audiotok store (a folder); pass --store with another path"
        )


def fingerprint(values: Any) -> str:
    """Short stable hash of JSON-able values or an array, recorded so readers can spot staleness."""
    if isinstance(values, np.ndarray):
        payload = np.ascontiguousarray(values).tobytes()
    else:
        payload = json.dumps(values, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def require_same(what: str, recorded: Mapping[str, Any], wanted: Mapping[str, Any], fix: str) -> None:
    """Refuse an artifact whose recorded settings differ from the wanted ones, naming each key."""
    diffs = [
        f"{key} {recorded.get(key)!r} (wanted {wanted[key]!r})"
        for key in wanted
        if recorded.get(key) != wanted[key]
    ]
    if diffs:
        raise MismatchError(f"{what} was made with {', '.join(diffs)}; {fix}")


@dataclass(frozen=True)
class Pick:
    """How a stage names its input group: by `name`, or by the k and features that made it."""

    name: str | None = None
    k: int | None = None
    features: str | None = None

    def matches(self, name: str, k: int | None, features: str | None) -> bool:
        """Whether a group (or a run's input) of this name, k and features is one `pick` allows."""
        return self.name in (None, name) and self.k in (None, k) and self.features in (None, features)

    def describe(self) -> str:
        """How the pick narrows, for messages: ` with k=16 and features 'logmel'`, or nothing."""
        parts = []
        if self.k is not None:
            parts.append(f"k={self.k}")
        if self.features is not None:
            parts.append(f"features {self.features!r}")
        return f" with {' and '.join(parts)}" if parts else ""


FeatureSet = PaddedSet[FeaturesRecord]
TokenSet = PaddedSet[TokensRecord]


@dataclass
class Vocab:
    name: str
    record: VocabRecord
    centroids: np.ndarray
    fitted: dict[str, np.ndarray] = field(default_factory=dict)  # its fitted transforms' map_a, map_b


class Store:
    """A handle on the store: `Store.open` to read, `Store.writing` to write under the lock."""

    def __init__(self, root: zarr.Group, path: Path) -> None:
        self.root = root
        self.path = path

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, mode: str = "r+", repairing: bool = False) -> Store:
        """The store at `path`; `repairing` (verify) opens one whose root record disagrees with its
        clip columns, which every other command refuses."""
        refuse_a_file(path)
        if not (path / "zarr.json").exists():
            raise MissingInputError(
                f"no audiotok store at {path}; run `audiotok expand` (AudioSet) or `audiotok import` "
                "(your own audio) first, or pass --store"
            )
        root = _open_root(path, mode)
        store = cls(root, path)
        record = store._read_record(root, StoreRecord)
        version = record.format_version if record else root.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise MismatchError(
                f"store {path} has format_version {version}, this audiotok reads "
                f"{FORMAT_VERSION}; rebuild it with a fresh --store path"
            )
        problem = store.extent_problem()
        if problem and not repairing:
            raise Damaged(f"{path} is damaged: {problem}; set it back: `audiotok verify --repair`", problem)
        return store

    @classmethod
    @contextmanager
    def writing(
        cls,
        path: Path,
        command: str,
        create: bool = False,
        classes: ClassIndex | None = None,
        repairing: bool = False,
    ) -> Iterator[Store]:
        """The store under its writer lock; `create` makes an empty one where none is complete, its
        labels over `classes` (default: AudioSet's 527)."""
        with WriterLock(path, command):
            _finish_rewrites(path)
            if create:
                yield cls._open_or_create(path, classes or class_index())
            else:
                yield cls.open(path, repairing=repairing)

    @classmethod
    def _open_or_create(cls, path: Path, classes: ClassIndex) -> Store:
        refuse_a_file(path)
        if (path / "zarr.json").exists():
            root = _open_root(path, "r")
            if RECORD_KEY in root.attrs or "format_version" in root.attrs:
                return cls.open(path)
            log.warning("recreating %s: its creation was interrupted before any clip was added", path)
        root = zarr.open_group(path, mode="w", zarr_format=3)
        clips = root.create_group("clips")
        column = {"shape": (0,), "chunks": (CLIP_ROWS_PER_CHUNK,), "compressors": CHECKSUMMED}
        clips.create_array("ytid", dtype=str, **column)
        for name in ("source", "split"):
            clips.create_array(name, dtype="uint8", fill_value=0, **column)
        clips.create_array(MIRROR_FILE, dtype="int32", fill_value=UNKNOWN_FILE, **column)
        _add_protocol_columns(clips, 0)
        clips.create_array(
            "labels",
            shape=(0, len(classes)),
            dtype="bool",
            chunks=(CLIP_ROWS_PER_CHUNK, len(classes)),
            fill_value=False,
            compressors=COMPRESSED,
        )
        own = None if is_audioset(classes) else list(classes.mids)
        write_record(clips, ClipsRecord(sources=list(SOURCES), splits=list(SPLITS), classes=own))
        for kind in KINDS:
            root.create_group(kind)
        write_record(root, StoreRecord(format_version=FORMAT_VERSION))
        return cls(root, path)

    def _read_record(self, group: zarr.Group, model: type[R]) -> R | None:
        try:
            return model.model_validate(group.attrs[RECORD_KEY])
        except (KeyError, ValidationError):
            return None

    # -- clips ----------------------------------------------------------------------------
    @property
    def record(self) -> StoreRecord:
        return StoreRecord.model_validate(self.root.attrs[RECORD_KEY])

    @property
    def n_clips(self) -> int:
        return self.record.n_clips

    @property
    def _clips(self) -> zarr.Group:
        return self.root["clips"]

    @property
    def clips_record(self) -> ClipsRecord:
        record = self._read_record(self._clips, ClipsRecord)
        if record is None:
            raise DataError(f"the clips record of {self.path} is damaged; rebuild the store with `expand`")
        return record

    def _column(self, name: str, rows: slice | None) -> np.ndarray:
        array = self._clips[name]
        return self._read(array, rows if rows is not None else slice(0, self.n_clips), CLIP_TABLE_REPAIR)

    def _read(self, array: zarr.Array, selection: Any, repair: str) -> np.ndarray:
        """`array[selection]`; a chunk that does not read back (checksum, empty or cut-short file) is
        refused in one line naming the array and its repair."""
        try:
            return array[selection]
        except UNREADABLE as exc:
            why = first_sentence(exc)
            raise Damaged(f"{array.path} in {self.path} is damaged ({why}); {repair}", why) from None

    # -- the root record against the arrays, checksums ---------------------------------------
    def extent_problem(self) -> str | None:
        """Why the root record's clip count cannot be right: a column holds fewer rows (columns grow
        before `n_clips` moves, so they may hold more, never fewer), or a features or tokens group
        more (they grow to `n_clips`, never past it)."""
        rows = min((array.shape[0] for _, array in self._clip_columns()), default=0)
        if self.n_clips > rows:
            return f"its record counts {self.n_clips} clips, its clip columns hold {rows} rows"
        for kind in ("features", "tokens"):
            for name, group in self.root[kind].groups():
                grown = group["lengths"].shape[0] if "lengths" in group else 0
                if grown > self.n_clips:
                    return f"its record counts {self.n_clips} clips, {kind} {name!r} holds {grown} rows"
        return None

    def repair_extent(self) -> int:
        """Set the root record's clip count back to the rows every column holds, less trailing rows
        an interrupted append left without an id; the count it was set to."""
        rows = min(array.shape[0] for _, array in self._clip_columns())
        ytids = self._read(self._clips["ytid"], slice(0, rows), CLIP_TABLE_REPAIR)
        while rows and not ytids[rows - 1]:
            rows -= 1
        write_record(self.root, self.record.model_copy(update={"n_clips": rows}))
        return rows

    def _clip_columns(self) -> list[tuple[str, zarr.Array]]:
        """The clip table's arrays (not a rewrite's leftovers, which carry a '.' in their names)."""
        return sorted((name, array) for name, array in self._clips.arrays() if "." not in name)

    def unchecked_arrays(self) -> list[str]:
        """Arrays written without a CRC32C on their chunks (by an older audiotok)."""
        arrays = [f"clips/{name}" for name, _ in self._clip_columns()]
        for kind in KINDS:
            for name in self.names(kind):
                arrays += [f"{kind}/{name}/{key}" for key, _ in self.root[kind][name].arrays()]
        return [path for path in arrays if not _checksummed(self.root[path])]

    def rewrite_checked(self, path: str) -> None:
        """Rewrite one array with a CRC32C on every chunk, its data, chunking and attributes kept:
        written whole beside it first, then swapped in by two renames (a crash between them is
        finished by the next rewrite)."""
        old = self.root[path]
        parent, name = path.rsplit("/", 1)
        folder = self.path / parent
        new = self.root[parent].create_array(
            f"{name}.checked",
            shape=old.shape,
            dtype=old.dtype,
            chunks=old.chunks,
            shards=old.shards,
            fill_value=old.fill_value,
            compressors=(*[c for c in old.compressors if not isinstance(c, Crc32cCodec)], Crc32cCodec()),
            attributes=old.attrs.asdict(),
            overwrite=True,
        )
        step = (old.shards or old.chunks)[0]  # every store array runs along clips or centroids
        for start in range(0, old.shape[0], step):
            span = slice(start, start + step)
            new[span] = self._read(old, span, f"rewrite {path} from its stage instead")
        (folder / name).rename(folder / f"{name}.unchecked")
        _finish_rewrites(self.path)

    def ytids(self, rows: slice | None = None) -> np.ndarray:
        return np.asarray(self._column("ytid", rows), dtype=object)

    @cached_property
    def row_of(self) -> dict[str, int]:
        """YouTube ID -> clip row."""
        return {ytid: row for row, ytid in enumerate(self.ytids())}

    def sources(self, rows: slice | None = None) -> np.ndarray:
        return self._column("source", rows)

    def splits(self, rows: slice | None = None) -> np.ndarray:
        return self._column("split", rows)

    def labels(self, rows: slice | None = None) -> np.ndarray:
        return self._column("labels", rows)

    def folds(self, rows: slice | None = None) -> np.ndarray:
        """Each clip's fold in its collection's own protocol (ESC-50, UrbanSound8K), -1 where none."""
        if "fold" not in self._clips:  # a store made before imports: AudioSet clips have none
            return np.full(self._span(rows), NO_FOLD, dtype=np.int16)
        return self._column("fold", rows)

    def groups(self, rows: slice | None = None) -> np.ndarray:
        """Each clip's group (speaker, recording, source file), "" where none."""
        if "group" not in self._clips:
            return np.full(self._span(rows), NO_GROUP, dtype=object)
        return np.asarray(self._column("group", rows), dtype=object)

    def _span(self, rows: slice | None) -> int:
        return len(range(self.n_clips)[rows if rows is not None else slice(None)])

    @cached_property
    def classes(self) -> ClassIndex:
        """The class list the labels' columns follow: AudioSet's 527, or an imported collection's own."""
        own = self.clips_record.classes
        return class_index() if own is None else ClassIndex(tuple(own), tuple(own))

    @property
    def source_names(self) -> list[str]:
        """Source names by their code in `clips/source`: AudioSet's three, then imported ones."""
        return self.clips_record.sources

    def source_codes(self, names: list[str] | tuple[str, ...]) -> list[int]:
        """The codes of the named sources this store knows (others hold no clip here)."""
        known = self.source_names
        return [known.index(name) for name in names if name in known]

    @property
    def collections(self) -> dict[str, CollectionRecord]:
        return self.clips_record.collections

    def collection_file(
        self, clip_id: str, collections: dict[str, CollectionRecord] | None = None
    ) -> Path | None:
        """Where an imported clip's audio lives (`{collection}/{path}` -> root/path), or None for a
        clip that is not imported. Pass `collections` to look many clips up with one record read."""
        collections = self.collections if collections is None else collections
        name, _, relative = clip_id.partition("/")
        return Path(collections[name].root) / relative if name in collections else None

    def content_digests(self) -> np.ndarray:
        """Each clip's content digest as `import` found it ("" for clips never digested: AudioSet's),
        the identity of copies (corpora/duplicates.py)."""
        digests = np.full(self.n_clips, "", dtype=object)
        row_of = self.row_of
        for collection, record in self.collections.items():
            for path, digest in record.contents.items():
                row = row_of.get(f"{collection}/{path}")
                if row is not None:
                    digests[row] = digest
        return digests

    def leaks(self, codes: np.ndarray | None = None) -> Leaks:
        """Copies that the split (the store's, or `codes` about to become it) puts on more than one
        side of train, val and test (store/leaks.py)."""
        codes = self.splits() if codes is None else codes
        train, val, test = (codes == split_code(name) for name in ("train", "val", "test"))
        return find_leaks(self.content_digests(), train, val, test)

    def save_collection(self, name: str, collection: CollectionRecord) -> None:
        record = self.clips_record
        record.collections[name] = collection
        write_record(self._clips, record)

    def append_clips(
        self,
        ytids: list[str],
        source: str,
        labels: np.ndarray,
        mirror_file: str | None = None,
        folds: list[int] | None = None,
        groups: list[str] | None = None,
    ) -> None:
        """Append clip rows, the mirror file they came from, and their folds and groups where the
        collection has them; `n_clips` moves only after the rows are written (crash-safe)."""
        if not ytids:
            return
        start, stop = self.n_clips, self.n_clips + len(ytids)
        clips = self._clips
        if (folds is not None or groups is not None) and "fold" not in clips:
            _add_protocol_columns(clips, start)  # a store made before imports: its clips have none
        optional = [name for name in (MIRROR_FILE, "fold", "group") if name in clips]
        for name in ["ytid", "source", "split", "labels", *optional]:
            array = clips[name]
            if array.shape[0] < stop:
                array.resize((stop, *array.shape[1:]))
        if mirror_file is not None and MIRROR_FILE in clips:
            clips[MIRROR_FILE][start:stop] = self._listed_code("mirror_files", f"{source}/{mirror_file}")
        if "fold" in clips:
            clips["fold"][start:stop] = np.asarray(folds if folds is not None else NO_FOLD, dtype=np.int16)
            clips["group"][start:stop] = np.asarray(
                groups if groups is not None else [NO_GROUP] * len(ytids), dtype=str
            )
        clips["ytid"][start:stop] = np.asarray(ytids, dtype=str)
        clips["source"][start:stop] = self._listed_code("sources", source)
        clips["split"][start:stop] = split_code("unassigned")
        clips["labels"][start:stop] = labels
        write_record(self.root, self.record.model_copy(update={"n_clips": stop}))
        self.__dict__.pop("row_of", None)

    def relabel(self, rows: np.ndarray, labels: np.ndarray) -> None:
        """New labels for existing clips (a collection re-imported with corrected labels), written
        a chunk of the labels column at a time."""
        array = self._clips["labels"]
        order = np.argsort(rows)
        rows, labels = np.asarray(rows)[order], np.asarray(labels)[order]
        chunk = array.chunks[0]
        for start in np.unique(rows // chunk) * chunk:
            stop = min(start + chunk, array.shape[0])
            block = array[start:stop]
            inside = (rows >= start) & (rows < stop)
            block[rows[inside] - start] = labels[inside]
            array[start:stop] = block

    def _listed_code(self, field: str, name: str) -> int:
        """`name`'s index in the clips record's list `field` (sources, mirror files), appending it the
        first time: an imported collection's source, a newly expanded mirror file."""
        record = self.clips_record
        names = getattr(record, field)
        if name not in names:
            names.append(name)
            write_record(self._clips, record)
        return names.index(name)

    def mirror_files(self, rows: slice) -> list[str | None]:
        """The `source/file` each clip came from (None where unknown: a store expanded by an
        audiotok before 0.2 keeps no such column)."""
        if MIRROR_FILE not in self._clips:
            return [None] * (rows.stop - rows.start)
        names = self.clips_record.mirror_files
        return [names[code] if code >= 0 else None for code in self._column(MIRROR_FILE, rows)]

    def _label_chunks(self, n_rows: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """The labels of the first `n_rows` clips (default: all), a storage chunk at a time."""
        n_rows = self.n_clips if n_rows is None else n_rows
        for start in range(0, n_rows, CLIP_ROWS_PER_CHUNK):
            span = slice(start, min(start + CLIP_ROWS_PER_CHUNK, n_rows))
            yield span, self.labels(span)

    def label_prior(self, rows: np.ndarray) -> np.ndarray:
        """Per-class share of positives among the selected rows (a mask), read chunk by chunk."""
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for span, labels in self._label_chunks(len(rows)):
            counts += labels[rows[span]].sum(axis=0)
        return counts / max(int(rows.sum()), 1)

    def sparse_labels(self) -> sparse.csr_matrix:
        """Every clip's labels as a sparse [clips, classes] matrix, read chunk by chunk: ~3 labels
        a clip keep it near 10 MB for all of AudioSet, where the dense columns hold 917 MB."""
        chunks = [sparse.csr_matrix(labels) for _, labels in self._label_chunks()]
        return (
            sparse.vstack(chunks, format="csr")
            if chunks
            else sparse.csr_matrix((0, len(self.classes)), dtype=bool)
        )

    def expanded_files(self, source: str) -> list[str]:
        """Mirror files whose clips are all on disk and in the store."""
        return list(self.clips_record.expanded_files.get(source, []))

    def mark_expanded(self, source: str, file_name: str, skipped: dict[str, str]) -> None:
        """A mirror file is done: its clips are stored, and `skipped` says why some entries are not."""
        record = self.clips_record
        record.expanded_files[source] = sorted({*record.expanded_files.get(source, []), file_name})
        record.bad_files.pop(f"{source}/{file_name}", None)
        record.skipped.update(skipped)
        write_record(self._clips, record)

    def mark_bad_file(self, source: str, file_name: str, problem: str) -> None:
        record = self.clips_record
        record.bad_files[f"{source}/{file_name}"] = problem
        write_record(self._clips, record)

    def labeled(self) -> np.ndarray:
        """Mask of the clips with at least one label, read chunk by chunk."""
        return np.concatenate(
            [labels.any(axis=1) for _, labels in self._label_chunks()] or [np.zeros(0, dtype=bool)]
        )

    def keep_split_for_cv(self, split: SplitRecord | None) -> None:
        """Record the split `train --cv` must put back (None once it has), so that a cross-validation
        killed mid-fold still puts back the store's own split, not the fold's, when it runs again."""
        record = self.clips_record.model_copy(update={"split_before_cv": split})
        with WriterLock(self.path, "train --cv"):
            write_record(self._clips, record)

    def mark_clips_pending(self, rows: np.ndarray) -> int:
        """Clips whose audio changed on disk: pending again in every features and tokens group, so
        featurize and tokenize redo exactly them; the rows marked, summed over groups."""
        return sum(
            self.padded(kind, name).mark_rows_pending(rows)
            for kind in ("features", "tokens")
            for name in self.names(kind)
        )

    def set_folds(self, folds: np.ndarray) -> None:
        """Every clip's fold at once (a re-import whose metadata moved clips to other folds)."""
        self._clips["fold"][: self.n_clips] = np.asarray(folds, dtype=np.int16)

    def set_groups(self, groups: np.ndarray) -> None:
        """Every clip's group at once (import joins copies of one recording into one group)."""
        self._clips["group"][: self.n_clips] = np.asarray(groups, dtype=str)

    def single_label(self) -> bool:
        """An imported collection whose labelled clips each have one class (ESC-50, digits): the
        field trains those with softmax cross-entropy and reports accuracy. AudioSet never is."""
        if self.clips_record.classes is None:
            return False
        counts = np.concatenate([labels.sum(axis=1) for _, labels in self._label_chunks()] or [np.zeros(0)])
        labelled = counts[counts > 0]
        return len(labelled) > 0 and bool((labelled == 1).all())

    def set_splits(self, codes: np.ndarray, split: SplitRecord) -> None:
        self._clips["split"][: self.n_clips] = codes
        write_record(self._clips, self.clips_record.model_copy(update={"split": split}))

    @property
    def split(self) -> SplitRecord | None:
        return self.clips_record.split

    def split_rows(self, lengths: np.ndarray, split: str) -> np.ndarray:
        """Mask of the split's clips that are done in a padded set with these `lengths` (clips
        appended since it was made have no row there and are left out)."""
        return (self.splits(slice(0, len(lengths))) == split_code(split)) & (lengths > 0)

    # -- named groups: features, vocab, tokens ----------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Complete groups of `kind` (those with a valid record), sorted."""
        return sorted(name for name, group in self.root[kind].groups() if self._group_record(kind, group))

    def damaged(self, kind: str) -> dict[str, str]:
        """Groups of `kind` that no reader uses, each with the reason and the fix."""
        return {
            name: "incomplete (no valid record): its creation was interrupted; "
            f"run `audiotok {_MAKER[kind]}` again to recreate it"
            for name, group in self.root[kind].groups()
            if self._group_record(kind, group) is None
        }

    def record_of(self, kind: str, name: str) -> BaseModel | None:
        """A group's record, None where it has none (damaged, incomplete or absent)."""
        return self._group_record(kind, self.root[kind][name]) if name in self.root[kind] else None

    def _group_record(self, kind: str, group: zarr.Group) -> BaseModel | None:
        return self._read_record(group, KINDS[kind])

    def choose(self, kind: str, pick: Pick | None = None) -> str:
        """The group `pick` names, or else the only complete group it accepts.

        Several candidates are refused with their names listed, so a stage never guesses.
        """
        pick = pick or Pick()
        names = self.names(kind)
        if pick.name is not None:
            checked_name(kind, pick.name)
            if pick.name not in names:
                raise MissingInputError(
                    f"no {kind} {pick.name!r} in {self.path} (it holds {_listing(names)}); "
                    f"run `audiotok {_MAKER[kind]}` first"
                )
            return pick.name
        records = {n: self._group_record(kind, self.root[kind][n]) for n in names}
        candidates = [
            n
            for n, record in records.items()
            if pick.matches(n, getattr(record, "n_clusters", None), getattr(record, "features", None))
        ]
        what = f"{kind}{pick.describe()}"
        missing = f" (it holds {_listing(names)}); run {self._makers(kind, pick)} first"
        return only_candidate(candidates, what, what, self.path, missing, _OPTION[kind])

    def _makers(self, kind: str, pick: Pick) -> str:
        """The commands that would make a missing input: tokens of each vocabulary the pick allows
        (by name, since `--k` alone may match several), or that vocabulary first."""
        flags = f" --k {pick.k}" if pick.k is not None else ""
        if kind != "tokens":
            return f"`audiotok {_MAKER[kind]}{flags}`"
        records = {n: self._group_record("vocab", self.root["vocab"][n]) for n in self.names("vocab")}
        vocabs = [n for n, r in records.items() if pick.matches(n, r.n_clusters, r.features)]
        if not vocabs:
            return f"`audiotok vocab{flags}` and then `audiotok tokenize{flags}`"
        return " or ".join(f"`audiotok tokenize --vocab {name}`" for name in vocabs)

    def _new_group(self, kind: str, name: str, overwrite: bool) -> zarr.Group:
        """An empty group for `kind`/`name`; finished output is replaced only with `overwrite`,
        an incomplete group always (nothing in it was ever marked usable)."""
        self.check_free(kind, name, overwrite)
        parent = self.root[kind]
        if name in parent and name not in self.names(kind):
            log.warning("replacing the incomplete %s %r in %s", kind, name, self.path)
        return parent.create_group(name, overwrite=True)

    def padded(self, kind: str, name: str) -> PaddedSet:
        """A complete features or tokens group by name, without checking it against its inputs."""
        name = self.choose(kind, Pick(name))
        group = self.root[kind][name]
        record = self._read_record(group, KINDS[kind])
        return PaddedSet(group, record)

    def _create_padded(
        self,
        kind: str,
        name: str,
        record: R,
        *,
        n_rows: int,
        frame_shape: tuple[int, ...],
        dtype: str,
        fill_value: float | int,
        rows_per_chunk: int,
        overwrite: bool,
    ) -> PaddedSet[R]:
        rows_per_shard = record.rows_per_shard
        group = self._new_group(kind, name, overwrite)
        group.create_array(
            "data",
            shape=(n_rows, *frame_shape),
            dtype=dtype,
            chunks=(rows_per_chunk, *frame_shape),
            shards=(rows_per_shard, *frame_shape),
            fill_value=fill_value,
            compressors=COMPRESSED,
        )
        group.create_array(
            "lengths",
            shape=(n_rows,),
            dtype="int32",
            chunks=(rows_per_shard,),
            fill_value=PENDING,
            compressors=CHECKSUMMED,
        )
        write_record(group, record)
        return PaddedSet(group, record)

    def features(self, name: str | None = None) -> FeatureSet:
        """Features by name, or the store's only features group."""
        return self.padded("features", self.choose("features", Pick(name)))

    def create_features(
        self, name: str, record: FeaturesRecord, n_rows: int, rows_per_chunk: int, overwrite: bool
    ) -> FeatureSet:
        return self._create_padded(
            "features",
            name,
            record,
            n_rows=n_rows,
            frame_shape=(record.max_frames, record.frame_dim),
            dtype="float16",
            fill_value=0.0,
            rows_per_chunk=rows_per_chunk,
            overwrite=overwrite,
        )

    def tokens(self, pick: Pick | None = None) -> TokenSet:
        """Tokens as `pick` chooses them, checked against their vocabulary: tokens of a rebuilt
        vocabulary, or of one clustered before the clips were split again, are refused."""
        tokens = self.padded("tokens", self.choose("tokens", pick))
        vocab = self.vocab_record(tokens.record.vocab)
        require_same(
            f"tokens {tokens.name!r}",
            {"vocab_fingerprint": tokens.record.vocab_fingerprint},
            {"vocab_fingerprint": vocab.fingerprint},
            fix="the vocabulary was rebuilt since; run `audiotok tokenize --overwrite`",
        )
        self.require_split(f"vocab {tokens.record.vocab!r}", vocab.split, "audiotok vocab --overwrite")
        return tokens

    def require_split(self, what: str, recorded: SplitRecord, redo: str) -> None:
        """Refuse an artifact made on another split of the clips: its val clips may be train clips."""
        if recorded != self.split:
            raise MismatchError(
                f"{what} was made on split {recorded.model_dump()}, the store now holds "
                f"{self.split.model_dump() if self.split else None}: its val clips may be training "
                f"clips; run `{redo}`"
            )

    def create_tokens(self, name: str, record: TokensRecord, like: FeatureSet, overwrite: bool) -> TokenSet:
        """Tokens row for row and shard for shard with the features they come from; -1 pads. A
        token shard (~0.5 MB) is one chunk: zarr's per-chunk cost made 16-clip chunks 4x slower to
        read than the data takes to decompress."""
        return self._create_padded(
            "tokens",
            name,
            record,
            n_rows=like.n_rows,
            frame_shape=(like.data.shape[1],)
            if record.codebooks == 1
            else (like.data.shape[1], record.codebooks),
            dtype="int16" if record.n_clusters < 2**15 else "int32",
            fill_value=PENDING,
            rows_per_chunk=like.rows_per_shard,
            overwrite=overwrite,
        )

    def vocab(self, pick: Pick | None = None) -> Vocab:
        """A vocabulary, its centroids and fitted transforms read whole; damage is refused naming
        the array and the `vocab` command that makes it again, bit for bit."""
        name = self.choose("vocab", pick)
        group = self.root["vocab"][name]
        record = self._read_record(group, VocabRecord)
        repair = f"make it again: `{remake('vocab', name, record)}`"
        if "centroids" not in group:
            why = "its centroids array is missing"
            raise Damaged(f"vocab/{name} in {self.path} is damaged ({why}); {repair}", why)
        arrays = {
            key: self._read(group[key], slice(None), repair)
            for key in ("centroids", *FITTED_ARRAYS)
            if key in group
        }
        return Vocab(name, record, arrays.pop("centroids"), arrays)

    def unreadable_clip_columns(self) -> dict[str, str]:
        """Every column of the clip table read chunk by chunk: column -> why it cannot be read
        ("" for a readable one)."""
        found = {}
        for column, array in self._clip_columns():
            found[column] = ""
            try:
                for start in range(0, array.shape[0], array.chunks[0]):
                    self._read(array, slice(start, start + array.chunks[0]), CLIP_TABLE_REPAIR)
            except Damaged as damage:
                found[column] = damage.why
        return found

    def save_verify(self, verified: VerifyRecord) -> None:
        """Remember what `verify` found (the writer only)."""
        write_record(self.root, self.record.model_copy(update={"last_verify": verified}))

    def vocab_record(self, name: str) -> VocabRecord:
        """A vocabulary's record without reading its centroids."""
        return self._read_record(self.root["vocab"][self.choose("vocab", Pick(name))], VocabRecord)

    def check_free(self, kind: str, name: str, overwrite: bool) -> None:
        """Refuse finished output up front, before the work that would replace it: without
        `overwrite`, or while a run reads it (it would train on two versions of its inputs)."""
        checked_name(kind, name)
        if name in self.names(kind) and not overwrite:
            raise OutputExistsError(f"{kind} {name!r} already exists in {self.path}; pass --overwrite")
        readers = readers_of(self.path, f"{kind}/{name}") if name in self.names(kind) else []
        if readers:
            raise BusyError(
                f"{kind} {name!r} is being read by {readers[0].describe()}; replacing it would change that "
                "run's inputs mid-training: wait for it to finish (or stop it), then run again"
            )

    def write_vocab(
        self,
        name: str,
        centroids: np.ndarray,
        record: VocabRecord,
        overwrite: bool,
        fitted: dict[str, np.ndarray] | None = None,
    ) -> Vocab:
        """`fitted`: the arrays of its fitted transforms (`map_a`, `map_b`), kept beside its centroids."""
        group = self._new_group("vocab", name, overwrite)
        for key, array in {"centroids": centroids, **(fitted or {})}.items():
            group.create_array(key, data=array.astype(np.float32), compressors=CHECKSUMMED)
        write_record(group, record)
        return Vocab(name, record, centroids, fitted or {})


_MAKER = {"features": "featurize", "vocab": "vocab", "tokens": "tokenize"}
CLIP_TABLE_REPAIR = (
    "the clip table cannot be remade in place: import or expand the audio again into a new --store"
)
FITTED_ARRAYS = ("map_a", "map_b")  # a vocabulary's fitted frame transforms (audio/transforms.LinearMap)
_OPTION = {"features": "--features", "vocab": "--vocab", "tokens": "--vocab"}


def _add_protocol_columns(clips: zarr.Group, n_rows: int) -> None:
    """`clips/fold` and `clips/group`, every existing row without either."""
    clips.create_array(
        "fold",
        shape=(n_rows,),
        dtype="int16",
        chunks=(CLIP_ROWS_PER_CHUNK,),
        fill_value=NO_FOLD,
        compressors=CHECKSUMMED,
    )
    group = clips.create_array(
        "group", shape=(n_rows,), dtype=str, chunks=(CLIP_ROWS_PER_CHUNK,), compressors=CHECKSUMMED
    )
    if n_rows:
        group[:] = np.full(n_rows, NO_GROUP, dtype=str)


def _open_root(path: Path, mode: str) -> zarr.Group:
    """The store's root group; a damaged `zarr.json` or an array in its place is refused in one line."""
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except ValueError as exc:  # JSON that does not parse, or a Zarr array where the group should be
        raise DataError(
            f"{path} is not a readable audiotok store ({type(exc).__name__}: {exc}); move it aside and "
            "run `audiotok expand` to build a new one, or pass --store"
        ) from None


def _finish_rewrites(path: Path) -> None:
    """Finish or undo what a `rewrite_checked` killed midway left (arrays sit at most three folders
    deep): a whole copy whose original was moved aside is swapped in; a copy beside its original
    was cut short and goes; an original moved aside goes once its copy is in place."""
    for pattern in ("*/*.checked", "*/*/*.checked"):
        for checked in path.glob(pattern):
            node = checked / "zarr.json"
            if node.exists() and json.loads(node.read_text()).get("node_type") != "array":
                continue  # a group someone named so
            final = checked.with_suffix("")
            if final.exists():
                shutil.rmtree(checked)
            else:
                checked.rename(final)
            shutil.rmtree(final.with_suffix(".unchecked"), ignore_errors=True)


def _checksummed(array: zarr.Array) -> bool:
    """Whether every chunk of `array` carries a CRC32C (a shard's inner chunks, not only its index)."""
    codecs = list(array.metadata.codecs)
    inner = [codec for sharding in codecs if isinstance(sharding, ShardingCodec) for codec in sharding.codecs]
    return any(isinstance(codec, Crc32cCodec) for codec in inner or codecs)


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"
