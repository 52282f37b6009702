"""The one module that knows the Zarr v3 store layout (documented in docs/store.md).

    audiotok.zarr/                    attrs: format_version, n_clips
      clips/ytid|source|split|labels  one row per clip, keyed by YouTube ID
      features/{name}/data|lengths    padded log-mel frames [clip, frame, mel] + true frame counts
      vocab/{name}/centroids          k-means centroids [k, mel]
      tokens/{name}/data|lengths      padded centroid ids [clip, frame] + true counts

Per-clip arrays share the clip row index. Padded arrays are sharded along the clip axis; a shard
(`clips_per_shard` rows) is the unit of work and of writing, so parallel workers own disjoint
shards. A shard's `lengths` are written after its data: a length of -1 means "not done".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from audiotok_cli import __version__
from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError, SettingsError
from audiotok_cli.labels import N_CLASSES

FORMAT_VERSION = 1
SOURCES = ("bal_train", "unbal_train", "eval")
SPLITS = ("unassigned", "train", "val", "test")
CLIP_ROWS_PER_CHUNK = 4096
PENDING = -1
_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def checked_sources(names: list[str]) -> list[str]:
    """Refuse source names other than AudioSet's three."""
    for name in names:
        if name not in SOURCES:
            raise SettingsError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    return names


def split_code(name: str) -> int:
    return SPLITS.index(name)


def source_code(name: str) -> int:
    return SOURCES.index(name)


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


@dataclass
class PaddedSet:
    """A named group of padded per-clip sequences (`data`) with their true `lengths`."""

    group: zarr.Group
    rows_per_shard: int

    @property
    def name(self) -> str:
        return self.group.basename

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def data(self) -> zarr.Array:
        return self.group["data"]

    @property
    def lengths(self) -> zarr.Array:
        return self.group["lengths"]

    @property
    def n_rows(self) -> int:
        return self.lengths.shape[0]

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.rows_per_shard)

    def shard_rows(self, shard: int) -> slice:
        start = shard * self.rows_per_shard
        return slice(start, min(start + self.rows_per_shard, self.n_rows))

    def shards_with(self, rows: np.ndarray) -> list[int]:
        """The shards that hold any of the selected rows (a boolean mask), in order."""
        return [int(shard) for shard in np.unique(np.flatnonzero(rows) // self.rows_per_shard)]

    def grow(self, n_rows: int) -> None:
        """Make room for clips appended to the store since this set was created."""
        if n_rows > self.n_rows:
            self.data.resize((n_rows, *self.data.shape[1:]))
            self.lengths.resize((n_rows,))

    def all_lengths(self) -> np.ndarray:
        return self.lengths[:]

    def write_shard(self, shard: int, data: np.ndarray, lengths: np.ndarray) -> None:
        """Write one whole shard: data first, then lengths, which mark the rows done."""
        rows = self.shard_rows(shard)
        self.data[rows] = data
        self.lengths[rows] = lengths

    def read_shard(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.shard_rows(shard)
        return self.data[rows], self.lengths[rows]


class Store:
    """A handle on the store; open with `Store.open` or `Store.create`."""

    def __init__(self, root: zarr.Group, path: Path) -> None:
        self.root = root
        self.path = path

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, mode: str = "r+") -> Store:
        if not (path / "zarr.json").exists():
            raise MissingInputError(
                f"no audiotok store at {path}; run `audiotok expand` first or pass --store"
            )
        root = zarr.open_group(path, mode=mode, zarr_format=3)
        version = root.attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise MismatchError(
                f"store {path} has format_version {version}, this audiotok reads "
                f"{FORMAT_VERSION}; rebuild it with a fresh --store path"
            )
        return cls(root, path)

    @classmethod
    def open_or_create(cls, path: Path) -> Store:
        if (path / "zarr.json").exists():
            return cls.open(path)
        root = zarr.open_group(path, mode="w-", zarr_format=3)
        clips = root.create_group("clips")
        clips.create_array("ytid", shape=(0,), dtype=str, chunks=(CLIP_ROWS_PER_CHUNK,))
        for name in ("source", "split"):
            clips.create_array(name, shape=(0,), dtype="uint8", chunks=(CLIP_ROWS_PER_CHUNK,), fill_value=0)
        clips.create_array(
            "labels",
            shape=(0, N_CLASSES),
            dtype="bool",
            chunks=(CLIP_ROWS_PER_CHUNK, N_CLASSES),
            fill_value=False,
            compressors=_COMPRESSOR,
        )
        clips.attrs.update({"sources": list(SOURCES), "splits": list(SPLITS)})
        for name in ("features", "vocab", "tokens"):
            root.create_group(name)
        root.attrs.update(
            {
                "format_version": FORMAT_VERSION,
                "n_clips": 0,
                "created_by": f"audiotok {__version__}",
            }
        )
        return cls(root, path)

    # -- clips ----------------------------------------------------------------------------
    @property
    def n_clips(self) -> int:
        return int(self.root.attrs["n_clips"])

    @property
    def _clips(self) -> zarr.Group:
        return self.root["clips"]

    def _column(self, name: str, rows: slice | None) -> np.ndarray:
        return self._clips[name][rows if rows is not None else slice(0, self.n_clips)]

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

    def append_clips(self, ytids: list[str], source: str, labels: np.ndarray) -> None:
        """Append clip rows; `n_clips` moves only after the rows are written (crash-safe)."""
        if not ytids:
            return
        start, stop = self.n_clips, self.n_clips + len(ytids)
        clips = self._clips
        for name in ("ytid", "source", "split", "labels"):
            array = clips[name]
            if array.shape[0] < stop:
                array.resize((stop, *array.shape[1:]))
        clips["ytid"][start:stop] = np.asarray(ytids, dtype=str)
        clips["source"][start:stop] = source_code(source)
        clips["split"][start:stop] = split_code("unassigned")
        clips["labels"][start:stop] = labels
        self.root.attrs["n_clips"] = stop
        self.__dict__.pop("row_of", None)

    def label_prior(self, rows: np.ndarray) -> np.ndarray:
        """Per-class share of positives among the selected rows (a mask), read chunk by chunk."""
        counts = np.zeros(N_CLASSES, dtype=np.int64)
        for start in range(0, len(rows), CLIP_ROWS_PER_CHUNK):
            span = slice(start, min(start + CLIP_ROWS_PER_CHUNK, len(rows)))
            counts += self.labels(span)[rows[span]].sum(axis=0)
        return counts / max(int(rows.sum()), 1)

    def expanded_files(self, source: str) -> list[str]:
        """Mirror files whose clips are all on disk and in the store."""
        return list(self._clips.attrs.get("expanded_files", {}).get(source, []))

    def mark_expanded(self, source: str, file_name: str) -> None:
        done = dict(self._clips.attrs.get("expanded_files", {}))
        done[source] = sorted({*done.get(source, []), file_name})
        self._clips.attrs["expanded_files"] = done

    def set_splits(self, codes: np.ndarray, record: dict[str, Any]) -> None:
        self._clips["split"][: self.n_clips] = codes
        self._clips.attrs["split_settings"] = record

    @property
    def split_settings(self) -> dict[str, Any] | None:
        return self._clips.attrs.get("split_settings")

    # -- padded per-clip sets (features, tokens) -------------------------------------------
    def has(self, kind: str, name: str) -> bool:
        return name in self.root[kind]

    def names(self, kind: str) -> list[str]:
        return sorted(self.root[kind].group_keys())

    def create_padded(
        self,
        kind: str,
        name: str,
        *,
        n_rows: int,
        frame_shape: tuple[int, ...],
        dtype: str,
        fill_value: float | int,
        rows_per_shard: int,
        rows_per_chunk: int,
        attrs: dict[str, Any],
        overwrite: bool = False,
    ) -> PaddedSet:
        """Create (or, with overwrite, replace) a padded set of `n_rows` clip rows."""
        parent = self.root[kind]
        if name in parent and not overwrite:
            raise OutputExistsError(f"{kind} {name!r} already exists in {self.path}; pass --overwrite")
        group = parent.create_group(name, overwrite=True)
        group.create_array(
            "data",
            shape=(n_rows, *frame_shape),
            dtype=dtype,
            chunks=(rows_per_chunk, *frame_shape),
            shards=(rows_per_shard, *frame_shape),
            fill_value=fill_value,
            compressors=_COMPRESSOR,
        )
        group.create_array(
            "lengths", shape=(n_rows,), dtype="int32", chunks=(rows_per_shard,), fill_value=PENDING
        )
        group.attrs.update({**attrs, "rows_per_shard": rows_per_shard, **_stamp()})
        return PaddedSet(group, rows_per_shard)

    def padded(self, kind: str, name: str, fix: str) -> PaddedSet:
        if name not in self.root[kind]:
            raise MissingInputError(f"no {kind} {name!r} in {self.path}; {fix}")
        group = self.root[kind][name]
        return PaddedSet(group, int(group.attrs["rows_per_shard"]))

    # -- vocabularies ---------------------------------------------------------------------
    def write_vocab(self, name: str, centroids: np.ndarray, attrs: dict[str, Any], overwrite: bool) -> None:
        parent = self.root["vocab"]
        if name in parent and not overwrite:
            raise OutputExistsError(f"vocab {name!r} already exists in {self.path}; pass --overwrite")
        group = parent.create_group(name, overwrite=True)
        group.create_array("centroids", data=centroids.astype(np.float32))
        group.attrs.update({**attrs, "fingerprint": fingerprint(centroids), **_stamp()})

    def read_vocab(self, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        if name not in self.root["vocab"]:
            raise MissingInputError(f"no vocab {name!r} in {self.path}; run `audiotok vocab` first")
        group = self.root["vocab"][name]
        return group["centroids"][:], dict(group.attrs)

    def group_attrs(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.root[kind][name].attrs)


def _stamp() -> dict[str, str]:
    return {"audiotok_version": __version__, "written_at": datetime.now(UTC).isoformat()}
