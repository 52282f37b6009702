"""Padded per-clip sequences (features, tokens) and what reading them safely takes: a set's `data`
(sharded along the clip axis, a shard the unit of work and of writing) and its `lengths` (written
after the data: -1 means "not done"); every chunk checksummed, and a shard that is damaged, or
marked done with its file missing, empty or cut short, refused naming it and its repair."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import zarr
from pydantic import BaseModel
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.sync import sync
from zarr.storage import LocalStore

from audiotok_cli.atomic import naming_full_disk
from audiotok_cli.errors import DataError
from audiotok_cli.store.records import RECORD_KEY
from audiotok_cli.store.repairs import remake, repair_shard

# what zarr raises reading a damaged chunk: a checksum mismatch or a cut-short shard (ValueError),
# a codec fed garbage (RuntimeError: "Zstd decompression error")
UNREADABLE = (ValueError, RuntimeError)
PENDING = -1
# every chunk of every array carries a CRC32C (inner chunks of a shard included, not only the shard
# index; the clip columns and vocabularies too): a flipped bit or a truncated chunk is refused by any
# reader, never read as data
COMPRESSED = (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec())
CHECKSUMMED = (ZstdCodec(), Crc32cCodec())
SHARD_INDEX_ENTRY, INDEX_CHECKSUM = 16, 4  # zarr's shard index: (offset, length) uint64s, then a CRC32C
R = TypeVar("R", bound=BaseModel)


class Damaged(DataError):
    """Stored data that does not read back (exit 5, as any DataError); `why` is the reason alone,
    for `verify`'s table, beside the whole message with its repair."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


@dataclass
class PaddedSet(Generic[R]):
    """A named group of padded per-clip sequences (`data`) with their true `lengths`."""

    group: zarr.Group
    record: R
    _opened: dict[str, zarr.Array] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def rows_per_shard(self) -> int:
        return self.record.rows_per_shard

    @property
    def name(self) -> str:
        return self.group.basename

    @property
    def data(self) -> zarr.Array:
        return self._member("data")

    @property
    def lengths(self) -> zarr.Array:
        return self._member("lengths")

    def _member(self, name: str) -> zarr.Array:
        """The array, opened once per set: opening reads its zarr.json (0.5 ms), and a shard's read
        and write touched `data` and `lengths` ten times."""
        if name in self._opened:
            return self._opened[name]
        try:
            self._opened[name] = self.group[name]
            return self._opened[name]
        except KeyError:  # its zarr.json is gone: the array cannot be opened, whatever its chunks hold
            why = "its metadata file zarr.json is missing"
            remade = remake(self.kind, self.name, self.record, whole=True)
            raise Damaged(
                f"{self.group.path}/{name} in {self._store_root} is damaged ({why}); "
                f"make it again: `{remade}`",
                why,
            ) from None

    @property
    def kind(self) -> str:
        return self.group.path.split("/")[0]

    @property
    def _store_root(self) -> object:
        store = self.group.store_path.store
        return getattr(store, "root", store)

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
        """Every row's length; a damaged chunk is refused naming its shard (found only on failure:
        one read of the whole array is the fast path)."""
        try:
            return self.lengths[:]
        except UNREADABLE:
            return np.concatenate(
                [self._checked(s, lambda s=s: self.lengths[self.shard_rows(s)]) for s in range(self.n_shards)]
            )

    def write_shard(self, shard: int, data: np.ndarray, lengths: np.ndarray) -> None:
        """Write one whole shard: data first, then lengths, which mark the rows done."""
        rows = self.shard_rows(shard)
        with naming_full_disk(f"shard {shard} of {self.group.store_path}"):
            self.data[rows] = data
            self.lengths[rows] = lengths

    def read_shard(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        """One shard's data and lengths; a shard that is damaged, or marked done with its data file
        gone (which would read as padding), is refused in one line naming it and the fix."""
        lengths = self._checked(shard, lambda: self.lengths[self.shard_rows(shard)])
        return self.read_data(shard, lengths), lengths

    def read_data(self, shard: int, lengths: np.ndarray) -> np.ndarray:
        """One shard's data, its `lengths` known already (the batch reader keeps them in memory). A
        shard file that is missing, empty or shorter than its own index while its clips are marked
        done is damage: zarr would read it as padding."""
        if (lengths >= 0).any():
            missing = self._missing_data(shard)
            if missing:
                raise self._damaged(shard, f"{missing}, but its clips are marked done")
        return self._checked(shard, lambda: self.data[self.shard_rows(shard)])

    def read_rows(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """The data and lengths of a range of rows, each shard it touches read (and checked) whole:
        another group's shard, where the two are sharded alike, is one of this group's."""
        first, last = rows.start // self.rows_per_shard, (rows.stop - 1) // self.rows_per_shard
        parts = [self.read_shard(shard) for shard in range(first, last + 1)]
        data = np.concatenate([part for part, _ in parts]) if len(parts) > 1 else parts[0][0]
        lengths = np.concatenate([part for _, part in parts]) if len(parts) > 1 else parts[0][1]
        start = rows.start - first * self.rows_per_shard
        return data[start : start + rows.stop - rows.start], lengths[start : start + rows.stop - rows.start]

    def require_finite(self, shard: int, data: np.ndarray, lengths: np.ndarray) -> None:
        """Refuse a shard whose done clips hold NaN or inf frames (features an older audiotok made from
        overflowing audio: their checksums are valid, their numbers are not), naming its rows and the
        repair. Readers call it where a non-finite value would pass silently (vocab, tokenize, verify)."""
        valid = np.arange(data.shape[1]) < lengths[:, None]
        finite = np.isfinite(data).reshape(len(data), data.shape[1], -1).all(axis=2)
        bad = np.flatnonzero((valid & ~finite).any(axis=1))
        if len(bad):
            start = self.shard_rows(shard).start
            rows = ", ".join(str(start + row) for row in bad[:5]) + ", ..." * (len(bad) > 5)
            raise self._damaged(shard, f"rows {rows} hold NaN or inf values")

    def _missing_data(self, shard: int) -> str | None:
        """Why the shard's data file cannot hold its rows (gone, empty, cut inside its index)."""
        store, key = self.data.store_path.store, self._shard_key(shard)
        try:
            if isinstance(store, LocalStore):  # a stat: zarr's getsize is an event-loop round trip (2 ms)
                size = (Path(store.root) / key).stat().st_size
            else:
                size = sync(store.getsize(key))
        except FileNotFoundError:
            return "its data file is missing"
        if size == 0:
            return "its data file is empty (0 bytes)"
        inner = int(np.prod([s // c for s, c in zip(self.data.shards, self.data.chunks, strict=True)]))
        index = inner * SHARD_INDEX_ENTRY + INDEX_CHECKSUM
        if size < index:
            return f"its data file is cut short ({size} bytes, its index alone takes {index})"
        return None

    def _checked(self, shard: int, read: Callable[[], np.ndarray]) -> np.ndarray:
        try:
            return read()
        except UNREADABLE as exc:  # zarr's checksum, or a shard too short to hold its index
            raise self._damaged(shard, first_sentence(exc)) from None

    def _shard_key(self, shard: int) -> str:
        return "/".join([self.data.path, "c", str(shard), *["0"] * (self.data.ndim - 1)])

    def mark_rows_pending(self, rows: np.ndarray) -> int:
        """These rows (indices) pending again, their shards' other rows kept: their stage redoes
        exactly them. The count marked (rows this set holds)."""
        rows = rows[rows < self.n_rows]
        for shard in np.unique(rows // self.rows_per_shard).tolist():
            span = self.shard_rows(shard)
            lengths = self._checked(shard, lambda span=span: self.lengths[span])
            lengths[rows[(rows >= span.start) & (rows < span.stop)] - span.start] = PENDING
            self.lengths[span] = lengths
        return len(rows)

    def mark_shard_pending(self, shard: int) -> None:
        """Every row of the shard pending and its data file deleted: its stage computes the whole
        shard again and writes it fresh (zarr would otherwise read the damaged file to update it)."""
        store = self.data.store_path.store
        sync(store.delete(self._shard_key(shard)))
        sync(store.delete(f"{self.lengths.path}/c/{shard}"))  # a lengths chunk reads as PENDING where gone

    def _damaged(self, shard: int, why: str) -> Damaged:
        rows = self.shard_rows(shard)
        return Damaged(
            f"shard {shard} of {self.group.path} (rows {rows.start}-{rows.stop - 1}) in {self._store_root} "
            f"is damaged ({why}); make it again: `{repair_shard(self.kind, self.name, self.record)}`",
            why,
        )

    def save_record(self) -> None:
        """Write back the record after bookkeeping changed it (the parent process only)."""
        write_record(self.group, self.record)


def first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0]


def write_record(group: zarr.Group, record: BaseModel) -> None:
    group.attrs[RECORD_KEY] = record.model_dump(mode="json")
