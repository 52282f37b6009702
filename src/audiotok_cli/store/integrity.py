"""The store's integrity: the root record's clip count against the arrays (`verify --repair` sets it
back), and CRC32C checksums on every chunk (`verify --rewrite-unchecked` gives arrays an older
audiotok wrote one). A part of `Store` (layout.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import zarr
from zarr.codecs import Crc32cCodec, ShardingCodec

from audiotok_cli.store.clips import CLIP_TABLE_REPAIR
from audiotok_cli.store.padded import write_record
from audiotok_cli.store.records import KINDS


class Integrity:
    """Checks and repairs of the store as a whole (a part of `Store`)."""

    root: zarr.Group
    path: Path

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
        finish_rewrites(self.path)


def finish_rewrites(path: Path) -> None:
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
