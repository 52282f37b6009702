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

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from audiotok_cli.audioset.fetch import file_hash
from audiotok_cli.audioset.manifest import forget, load_manifest
from audiotok_cli.errors import DataError
from audiotok_cli.progress import progress
from audiotok_cli.settings import AudioSettings
from audiotok_cli.store import Damaged, FeaturesRecord, Store, TokensRecord, VerifyRecord, WriterLock

REMAKE = {"features": "featurize", "tokens": "tokenize"}


@dataclass
class Damage:
    what: str  # "features/logmel shard 3 (rows 768-1023)", a mirror file
    why: str
    fix: str  # the command that makes it again
    repaired: bool = False  # marked pending (or forgotten) by --repair: `fix` redoes exactly it


@dataclass
class VerifyResult:
    store: str
    shards: int = 0  # shards read
    arrays: int = 0  # clip columns and vocabularies read
    mirror_files: int = 0  # mirror files hashed
    runs: int = 0  # run folders checked (`verify --runs`)
    damaged: list[Damage] = field(default_factory=list)

    def problem(self) -> DataError | None:
        """Exit 5 while anything damaged is left as it is (repaired damage waits for its stage)."""
        left = [damage for damage in self.damaged if not damage.repaired]
        if not left:
            return None
        return DataError(f"{len(left)} damaged: first {left[0].what} ({left[0].why}); {left[0].fix}")


def verify(store_path: Path, repair: bool = False, mirror_dir: Path | None = None) -> VerifyResult:
    """Read the whole store (and the mirror's files) under the store's writer lock: nothing changes
    what is being read, and a repair is written by the only writer."""
    with Store.writing(store_path, "verify") as store:
        result = VerifyResult(str(store_path))
        for kind in REMAKE:
            for name in store.names(kind):
                _verify_padded(store, kind, name, repair, result)
        _verify_arrays(store, result)
        if mirror_dir is not None:
            with WriterLock(mirror_dir, "verify"):
                _verify_mirror(mirror_dir, repair, result)
        store.save_verify(
            VerifyRecord(
                at=datetime.now(UTC).isoformat(timespec="seconds"),
                damaged=[f"{d.what}: {d.why}" for d in result.damaged],
                repaired=[d.what for d in result.damaged if d.repaired],
            )
        )
    return result


def _verify_padded(store: Store, kind: str, name: str, repair: bool, result: VerifyResult) -> None:
    remake = _remake(kind, name)
    try:
        padded = store.padded(kind, name)
        remake = _remake(kind, name, padded.record)
        n_shards = padded.n_shards
    except DataError as damage:  # the group's own metadata: only a whole remake helps
        result.damaged.append(Damage(f"{kind}/{name}", str(damage), f"{remake} --overwrite"))
        return
    with progress(f"verify {kind} {name}", n_shards, "shards") as advance:
        for shard in range(n_shards):
            result.shards += 1
            try:
                padded.read_shard(shard)
            except Damaged as damage:
                rows = padded.shard_rows(shard)
                where = f"{kind}/{name} shard {shard} (rows {rows.start}-{rows.stop - 1})"
                result.damaged.append(Damage(where, damage.why, remake, repaired=repair))
                if repair:
                    padded.mark_shard_pending(shard)
            advance(1)


def _remake(kind: str, name: str, record: TokensRecord | FeaturesRecord | None = None) -> str:
    """The command that makes a group's pending rows again: features with the settings they were
    made with (the ones that differ from the defaults), merged tokens by tokenizing their vocabulary
    with the same merges."""
    if isinstance(record, FeaturesRecord):
        return f"audiotok featurize --name {name}{_audio_flags(record)}"
    if kind == "features":
        return f"audiotok featurize --name {name}"
    if record is None or not record.merges:
        return f"audiotok tokenize --vocab {record.vocab if record else name}"
    return f"audiotok tokenize --vocab {record.vocab} --merges {record.merges}"


def _audio_flags(record: FeaturesRecord) -> str:
    """The featurize flags of a features group's settings that are not the defaults (an encoder's
    sample rate is its own, so it is left out)."""
    made, default = record.audio.model_dump(), AudioSettings().model_dump()
    if record.encoder is not None:
        made.pop("sample_rate")
    flags = []
    for setting, value in made.items():
        if value != default[setting]:
            flag = setting.replace("_", "-")
            shown = f"--{flag}" if value is True else f"--no-{flag}" if value is False else None
            flags.append(shown or f"--{flag} {shlex.quote(str(value))}")
    return "".join(f" {flag}" for flag in flags)


def _verify_arrays(store: Store, result: VerifyResult) -> None:
    for column, why in store.unreadable_clip_columns().items():
        result.arrays += 1
        if why:
            result.damaged.append(
                Damage(
                    f"clips/{column}",
                    why,
                    "the clip table cannot be remade in place: expand or import into a new --store",
                )
            )
    for name in store.names("vocab"):
        result.arrays += 1
        try:
            store.vocab_centroids(name)
        except Damaged as damage:
            result.damaged.append(
                Damage(
                    f"vocab/{name}",
                    damage.why,
                    f"audiotok vocab --overwrite, then tokenize --overwrite ({name})",
                )
            )


def _verify_mirror(mirror_dir: Path, repair: bool, result: VerifyResult) -> None:
    files = load_manifest(mirror_dir)["files"]
    damaged = []
    with progress("verify mirror", len(files), "files") as advance:
        for relative, entry in sorted(files.items()):
            result.mirror_files += 1
            why = _mirror_damage(mirror_dir / relative, entry)
            advance(1)
            if why is None:
                continue
            parts = Path(relative).parts  # data/{source}/{file}
            fetch = f"audiotok fetch --source {parts[1]}" if len(parts) > 2 else "audiotok fetch"
            damaged.append(relative)
            result.damaged.append(
                Damage(f"mirror {relative}", why, f"{fetch} (downloads it again)", repaired=repair)
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
