"""The clip table: one row per clip (`clips/ytid|source|split|labels|mirror_file|fold|group`),
keyed by its id, and the root record's clip count (`n_clips` moves only after a row is written).
`Store` holds it as the clip part of itself (layout.py); what reads or writes a clip column is here.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy import sparse

from audiotok_cli.class_lists import ClassIndex, audioset_classes
from audiotok_cli.errors import DataError
from audiotok_cli.lock import WriterLock
from audiotok_cli.store.leaks import Leaks, find_leaks
from audiotok_cli.store.padded import CHECKSUMMED, UNREADABLE, Damaged, first_sentence, write_record
from audiotok_cli.store.records import RECORD_KEY, ClipsRecord, CollectionRecord, SplitRecord, StoreRecord

SPLITS = ("unassigned", "train", "val", "test")
CLIP_ROWS_PER_CHUNK = 4096
MIRROR_FILE, UNKNOWN_FILE = "mirror_file", -1  # clips/mirror_file: index into ClipsRecord.mirror_files
NO_FOLD, NO_GROUP = -1, ""  # clips/fold and clips/group where a collection has none
CLIP_TABLE_REPAIR = (
    "the clip table cannot be remade in place: import or expand the audio again into a new --store"
)


def split_code(name: str) -> int:
    return SPLITS.index(name)


class ClipTable:
    """The clip rows of a store (a part of `Store`, which gives it `root`, `path` and its groups)."""

    root: zarr.Group
    path: Path

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
        return audioset_classes() if own is None else ClassIndex(tuple(own), tuple(own))

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
            add_protocol_columns(clips, start)  # a store made before imports: its clips have none
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


def add_protocol_columns(clips: zarr.Group, n_rows: int) -> None:
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
