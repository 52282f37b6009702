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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from pydantic import BaseModel, ValidationError

from audiotok_cli.class_lists import ClassIndex, is_audioset
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
from audiotok_cli.store.clips import (
    CLIP_ROWS_PER_CHUNK,
    CLIP_TABLE_REPAIR,
    MIRROR_FILE,
    SPLITS,
    UNKNOWN_FILE,
    ClipTable,
    add_protocol_columns,
)
from audiotok_cli.store.integrity import Integrity, finish_rewrites
from audiotok_cli.store.padded import (
    CHECKSUMMED,
    COMPRESSED,
    PENDING,
    Damaged,
    PaddedSet,
    R,
    write_record,
)
from audiotok_cli.store.records import (
    KINDS,
    RECORD_KEY,
    ClipsRecord,
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


@dataclass(frozen=True)
class NewStore:
    """What a store is made with, given by its maker (AudioSet's `expand`, a collection's `import`):
    the class list its labels' columns follow and the sources its clips come from, in code order."""

    classes: ClassIndex
    sources: tuple[str, ...]


@dataclass
class Vocab:
    name: str
    record: VocabRecord
    centroids: np.ndarray
    fitted: dict[str, np.ndarray] = field(default_factory=dict)  # its fitted transforms' map_a, map_b


class Store(ClipTable, Integrity):
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
        create: NewStore | None = None,
        repairing: bool = False,
    ) -> Iterator[Store]:
        """The store under its writer lock; `create` makes an empty one where none is complete, with
        the class list and sources its caller gives (the store knows no dataset of its own)."""
        with WriterLock(path, command):
            finish_rewrites(path)
            if create is not None:
                yield cls._open_or_create(path, create)
            else:
                yield cls.open(path, repairing=repairing)

    @classmethod
    def _open_or_create(cls, path: Path, new: NewStore) -> Store:
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
        add_protocol_columns(clips, 0)
        clips.create_array(
            "labels",
            shape=(0, len(new.classes)),
            dtype="bool",
            chunks=(CLIP_ROWS_PER_CHUNK, len(new.classes)),
            fill_value=False,
            compressors=COMPRESSED,
        )
        own = None if is_audioset(new.classes) else list(new.classes.mids)
        write_record(clips, ClipsRecord(sources=list(new.sources), splits=list(SPLITS), classes=own))
        for kind in KINDS:
            root.create_group(kind)
        write_record(root, StoreRecord(format_version=FORMAT_VERSION))
        return cls(root, path)

    def _read_record(self, group: zarr.Group, model: type[R]) -> R | None:
        try:
            return model.model_validate(group.attrs[RECORD_KEY])
        except (KeyError, ValidationError):
            return None

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
FITTED_ARRAYS = ("map_a", "map_b")  # a vocabulary's fitted frame transforms (audio/transforms.LinearMap)
_OPTION = {"features": "--features", "vocab": "--vocab", "tokens": "--vocab"}


def _open_root(path: Path, mode: str) -> zarr.Group:
    """The store's root group; a damaged `zarr.json` or an array in its place is refused in one line."""
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3)
    except ValueError as exc:  # JSON that does not parse, or a Zarr array where the group should be
        raise DataError(
            f"{path} is not a readable audiotok store ({type(exc).__name__}: {exc}); move it aside and "
            "run `audiotok expand` to build a new one, or pass --store"
        ) from None


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "none"
