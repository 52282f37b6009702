"""`verify`: read everything audiotok keeps and say what is damaged, as a ZFS scrub or `restic check
--read-data` does for theirs: every shard of every features and tokens group (each chunk carries a
CRC32C, so a flipped bit, a truncated or missing file is found), the clip table, the vocabularies;
with `mirror_dir`, every verified mirror file against the hash `fetch` recorded.

`repair` marks what the stages can make again as pending, so that they redo exactly that: the rows
of a damaged features or tokens shard (then `featurize` or `tokenize` rewrites that shard, bit for
bit as it was), and a damaged mirror file is forgotten by the fetch manifest (then `fetch` downloads
it again instead of trusting its recorded hash). What no stage can remake piecewise (the clip
table, a vocabulary) is named with the command that rebuilds it. The store remembers the last
verify, and `info` shows it.
"""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from audiotok_cli.audioset.fetch import file_hash
from audiotok_cli.audioset.manifest import forget, load_manifest
from audiotok_cli.errors import DataError
from audiotok_cli.progress import progress
from audiotok_cli.store import (
    CLIP_TABLE_REPAIR,
    Damaged,
    FeaturesRecord,
    PaddedSet,
    Pick,
    Store,
    VerifyRecord,
    WriterLock,
    remake,
    repair_shard,
)

READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)  # the lock file cannot be made: a snapshot, a mount


@dataclass
class Damage:
    what: str  # "features/logmel shard 3 (rows 768-1023)", a mirror file
    why: str
    fix: str  # the command that makes it again
    repaired: bool = False  # marked pending (or forgotten) by --repair: `fix` redoes exactly it

    @property
    def shown_fix(self) -> str:
        """The fix as shown: a command in backticks, advice as it is."""
        return f"`{self.fix}`" if self.fix.startswith("audiotok ") else self.fix


@dataclass
class VerifyResult:
    store: str
    shards: int = 0  # shards read
    arrays: int = 0  # clip columns and vocabularies read
    mirror_files: int = 0  # mirror files hashed
    mirror: str | None = None  # the mirror verified (`--mirror`), and why none of its files was hashed
    mirror_empty: str | None = None
    runs: int = 0  # run folders checked (`verify --runs`)
    damaged: list[Damage] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # arrays without checksums (an older audiotok's)
    rewritten: list[str] = field(default_factory=list)  # rewritten with them (--rewrite-unchecked)
    read_only: bool = False  # read without the writer lock; not recorded in the store

    def problem(self) -> DataError | None:
        """Exit 5 while anything damaged is left as it is (repaired damage waits for its stage)."""
        left = [damage for damage in self.damaged if not damage.repaired]
        if not left:
            return None
        first = left[0]
        return DataError(
            f"{len(left)} damaged: first {first.what} ({first.why}); to repair: {first.shown_fix}"
        )


def verify(
    store_path: Path, repair: bool = False, mirror_dir: Path | None = None, rewrite_unchecked: bool = False
) -> VerifyResult:
    """Read the whole store (and the mirror's files) under the store's writer lock: nothing changes
    what is being read, and a repair is written by the only writer. A store on a read-only file
    system (a snapshot) is read without the lock, and its verify is not recorded."""
    with _opened(store_path, writes=repair or rewrite_unchecked) as (store, writable):
        result = VerifyResult(str(store_path), read_only=not writable)
        _verify_extent(store, repair, result)
        _verify_clip_table(store, result)
        for name in store.names("features"):  # in the order their repairs must run: features first
            _verify_padded(store, "features", name, repair, result)
        _verify_vocabularies(store, result)
        for name in store.names("tokens"):
            _verify_padded(store, "tokens", name, repair, result)
        result.unchecked = store.unchecked_arrays()
        if rewrite_unchecked:
            _rewrite_unchecked(store, result)
        if mirror_dir is not None:
            result.mirror = str(mirror_dir)
            # reading takes no lock where none can be made (a read-only mount); a repair writes
            locked = repair or os.access(mirror_dir, os.W_OK)
            with WriterLock(mirror_dir, "verify") if locked else nullcontext():
                _verify_mirror(mirror_dir, repair, result)
        if writable:
            store.save_verify(
                VerifyRecord(
                    at=datetime.now(UTC).isoformat(timespec="seconds"),
                    damaged=[f"{d.what}: {d.why}" for d in result.damaged],
                    repaired=[d.what for d in result.damaged if d.repaired],
                )
            )
    return result


@contextmanager
def _opened(store_path: Path, writes: bool) -> Iterator[tuple[Store, bool]]:
    """The store under its writer lock, or, where the lock file cannot be made because the file
    system is read-only, the store opened to read (writes: refused, naming why)."""
    with ExitStack() as held:
        try:  # only taking the lock may fall back: an error of the verify itself propagates
            opened = held.enter_context(Store.writing(store_path, "verify", repairing=True)), True
        except OSError as exc:
            if exc.errno not in READ_ONLY or writes:
                raise
            opened = Store.open(store_path, mode="r", repairing=True), False
        yield opened


def _verify_extent(store: Store, repair: bool, result: VerifyResult) -> None:
    """The root record's clip count against the clip columns (`--repair` sets it back)."""
    problem = store.extent_problem()
    if problem is None:
        return
    if repair:
        problem += f" (set back to {store.repair_extent()})"
    result.damaged.append(Damage("root record (n_clips)", problem, "audiotok verify --repair", repair))


def _verify_padded(store: Store, kind: str, name: str, repair: bool, result: VerifyResult) -> None:
    try:
        padded = store.padded(kind, name)
        n_shards = padded.n_shards
        mismatch = _shape_mismatch(padded)
    except DataError as damage:  # the group's own metadata: only a whole remake helps
        record = store.record_of(kind, name)
        result.damaged.append(Damage(f"{kind}/{name}", str(damage), remake(kind, name, record, whole=True)))
        return
    if mismatch:
        result.damaged.append(
            Damage(f"{kind}/{name}", mismatch, remake(kind, name, padded.record, whole=True))
        )
        return
    with progress(f"verify {kind} {name}", n_shards, "shards") as advance:
        for shard in range(n_shards):
            result.shards += 1
            try:
                data, lengths = padded.read_shard(shard)
                if data.dtype.kind == "f":  # frames: numbers, not only bytes that match their checksum
                    padded.require_finite(shard, data, lengths)
            except Damaged as damage:
                rows = padded.shard_rows(shard)
                where = f"{kind}/{name} shard {shard} (rows {rows.start}-{rows.stop - 1})"
                fix = remake(kind, name, padded.record) if repair else repair_shard(kind, name, padded.record)
                result.damaged.append(Damage(where, damage.why, fix, repaired=repair))
                if repair:
                    padded.mark_shard_pending(shard)
            advance(1)


def _shape_mismatch(padded: PaddedSet) -> str | None:
    """Why a group's arrays cannot be what its record says (an edited record or array metadata)."""
    record, data, lengths = padded.record, padded.data, padded.lengths
    if isinstance(record, FeaturesRecord):
        frame = (record.max_frames, record.frame_dim)
    else:
        frame = data.shape[1:2] + (() if record.codebooks == 1 else (record.codebooks,))
    if data.shape[1:] != frame:
        return f"its record says frames of shape {frame}, its data array holds {data.shape[1:]}"
    if data.shape[0] != lengths.shape[0] or (data.shards or data.chunks)[0] != record.rows_per_shard:
        return (
            f"its record says shards of {record.rows_per_shard} rows; its data holds {data.shape[0]} rows "
            f"in shards of {(data.shards or data.chunks)[0]}, its lengths {lengths.shape[0]}"
        )
    return None


def _verify_clip_table(store: Store, result: VerifyResult) -> None:
    for column, why in store.unreadable_clip_columns().items():
        result.arrays += 1
        if why:
            result.damaged.append(Damage(f"clips/{column}", why, CLIP_TABLE_REPAIR))


def _verify_vocabularies(store: Store, result: VerifyResult) -> None:
    for name in store.names("vocab"):
        result.arrays += 1
        fix = remake("vocab", name, store.vocab_record(name))
        try:
            vocab = store.vocab(Pick(name))
        except Damaged as damage:
            result.damaged.append(Damage(f"vocab/{name}", damage.why, fix))
            continue
        if vocab.centroids.shape[-2] != vocab.record.n_clusters:  # [k, dim], or [codebooks, k, dim]
            why = f"its record says k={vocab.record.n_clusters}, its centroids are {vocab.centroids.shape}"
            edited = "its record cannot be trusted: make it again with the settings it was made with"
            result.damaged.append(
                Damage(f"vocab/{name}", why, f"{edited} (`audiotok vocab ... --overwrite`)")
            )


def _rewrite_unchecked(store: Store, result: VerifyResult) -> None:
    """Every array without checksums rewritten with one, unless it is damaged (its repair first)."""
    damaged = {d.what.split(" ")[0] for d in result.damaged}
    for path in result.unchecked:
        if not any(path.startswith(what) for what in damaged):
            store.rewrite_checked(path)
            result.rewritten.append(path)
    result.unchecked = [path for path in result.unchecked if path not in result.rewritten]


def _verify_mirror(mirror_dir: Path, repair: bool, result: VerifyResult) -> None:
    files = load_manifest(mirror_dir)["files"]
    if not files:
        result.mirror_empty = f"{mirror_dir} holds no file `fetch` verified: nothing to hash"
    damaged = []
    with progress("verify mirror", len(files), "files") as advance:
        for relative, entry in sorted(files.items()):
            result.mirror_files += 1
            why = _mirror_damage(mirror_dir / relative, entry)
            advance(1)
            if why is None:
                continue
            parts = Path(relative).parts  # data/{source}/{file}
            where = f"--mirror-dir {shlex.quote(str(mirror_dir))}"
            fetch = f"audiotok fetch {where}" + (f" --source {parts[1]}" if len(parts) > 2 else "")
            forget_first = f"audiotok verify --mirror {where} --repair; "  # else fetch trusts its hash
            damaged.append(relative)
            result.damaged.append(
                Damage(f"mirror {relative}", why, fetch if repair else forget_first + fetch, repaired=repair)
            )
    if repair and damaged:
        forget(mirror_dir, damaged)  # fetch then hashes them again instead of trusting the manifest


def _mirror_damage(path: Path, entry: dict) -> str | None:
    """Why a mirror file is not the one fetch verified, or None."""
    if not path.exists():
        return "missing"
    if path.stat().st_size != entry["size"]:
        return f"{path.stat().st_size} bytes, fetched as {entry['size']}"
    if file_hash(path, "sha256" if len(entry["hash"]) == 64 else "git-sha1") != entry["hash"]:
        return "its content no longer matches the hash fetch verified"
    return None
