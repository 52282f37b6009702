"""Typed records: what each store group holds and what made it, one pydantic model per kind.

A record lives under one attribute key of its group and is written last, after the group's arrays:
a group without a valid record is incomplete (a crash mid-creation) and no reader uses it. Only
`store/` reads and writes these; stages get and give record objects, never attribute dicts.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from audiotok_cli import __version__
from audiotok_cli.settings import AudioSettings, Layers

RECORD_KEY = "audiotok"


class Stamp(BaseModel):
    """Which audiotok wrote a group, and when."""

    audiotok_version: str = __version__
    written_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class VerifyRecord(BaseModel):
    """What the last `verify` found: `info` shows it."""

    at: str
    damaged: list[str] = Field(default_factory=list, description="What was damaged, and why.")
    repaired: list[str] = Field(
        default_factory=list, description="What --repair marked for its stage to redo."
    )


class StoreRecord(BaseModel):
    format_version: int
    n_clips: int = Field(0, description="Clip rows in use; moves only after appended rows are written.")
    created: Stamp = Field(default_factory=Stamp)
    last_verify: VerifyRecord | None = None


class SplitRecord(BaseModel):
    """The settings of the last `split`: every row's split follows from them, its ytid and labels."""

    val_ratio: float
    seed: int
    keep_unlabeled: bool = False
    train_sources: tuple[str, ...] | None = Field(
        ("bal_train", "unbal_train"), description="None: every source not tested."
    )
    test_fold: int | None = None
    test_groups: tuple[str, ...] = ()
    test_sources: tuple[str, ...] = ()
    test_ratio: float | None = Field(
        None, description="Imported clips hashed into test (no fold/group/source)."
    )
    val_by_group: bool = False
    stratify: bool = Field(False, description="Val (and a hashed test) drawn stratified by class.")
    test_rule: str = Field("the eval source", description="How test was chosen, for tables.")
    drop_leaked: bool = Field(False, description="Test and val clips with a copy in train left out.")
    leaked_sets: int = Field(0, description="Sets of copies with clips in more than one of train, val, test.")
    leaked_test: int = Field(0, description="Test clips with a copy in train or val (store/leaks.py).")
    leaked_val: int = Field(0, description="Val clips with a copy in train.")
    dropped_leaked: int = Field(0, description="Clips `drop_leaked` took out of test and val.")


class FileStamp(BaseModel):
    """A collection file as import last saw it: a re-import compares size and mtime (as git's index
    does) and hashes only a file whose stat differs, so a touched file is not called changed."""

    size: int
    mtime_ns: int
    sha256: str


class CollectionRecord(BaseModel):
    """A collection brought in by `import`: its clips' audio is read in place, under `root`."""

    root: str = Field(description="Absolute folder; a clip `{name}/{relative path}` is `root/relative path`.")
    layout: str = Field(description="How it was read: manifest, folders, esc50, urbansound8k.")
    unreadable: dict[str, str] = Field(
        default_factory=dict, description="Relative path -> why the file was skipped (retried next import)."
    )
    dedupe: str = Field("exact", description="How copies were found: exact (file bytes) or near (samples).")
    contents: dict[str, str] = Field(
        default_factory=dict, description="Relative path -> its content digest (corpora/duplicates.py)."
    )
    files: dict[str, FileStamp] = Field(
        default_factory=dict,
        description="Relative path -> the file as imported (empty where an older audiotok imported it).",
    )
    gone: list[str] = Field(default_factory=list, description="Imported files missing at the last import.")
    changed: list[str] = Field(
        default_factory=list, description="Files whose content changed at the last import (clips redone)."
    )


class ClipsRecord(BaseModel):
    sources: list[str]
    splits: list[str]
    classes: list[str] | None = Field(
        None, description="The class ids the labels' columns follow; None: AudioSet's 527 (MIDs)."
    )
    collections: dict[str, CollectionRecord] = Field(
        default_factory=dict, description="Imported collections by name (the first part of their clip ids)."
    )
    split: SplitRecord | None = None
    split_before_cv: SplitRecord | None = Field(
        None, description="The split a running (or killed) `train --cv` puts back when it ends."
    )
    expanded_files: dict[str, list[str]] = Field(
        default_factory=dict, description="Per source, mirror files whose clips are all stored."
    )
    bad_files: dict[str, str] = Field(
        default_factory=dict, description="Mirror file -> why it could not be read (retried by expand)."
    )
    skipped: dict[str, str] = Field(
        default_factory=dict, description="ytid -> why a mirror entry became no clip row."
    )
    mirror_files: list[str] = Field(
        default_factory=list, description="`source/file` names; clips/mirror_file holds indices into it."
    )


class EncoderRecord(BaseModel):
    """The pretrained encoder whose hidden states a features group holds (audio/encoder.py)."""

    model_type: str
    layer: Layers = Field(
        description="Its hidden states kept, side by side in a frame: 0 its input embeddings, n_layers "
        "its last."
    )
    n_layers: int
    hidden_size: int
    sample_rate: int
    frames_per_second: float
    digest: str = Field(description="sha256 of its configuration and weights: which encoder it was.")
    weights_file: str | None = Field(
        None, description="A units run's weights file, whose sha256 begins with `digest` as it was then."
    )

    def changed(self) -> str | None:
        """Why features made by this encoder are stale: its weights file rewritten since (a units run
        trained again with --overwrite), or gone; None where they still hold, or cannot be told."""
        if self.weights_file is None:
            return None
        path = Path(self.weights_file)
        try:
            with path.open("rb") as handle:
                now = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError:
            return f"the weights {path} that made them are gone"
        if not now.startswith(self.digest):
            return f"the weights {path} that made them changed since (trained again?)"
        return None


class FeaturesRecord(BaseModel):
    audio: AudioSettings
    max_frames: int
    rows_per_shard: int
    encoder: EncoderRecord | None = Field(None, description="None: log-mel frames.")
    failures: dict[str, str] = Field(
        default_factory=dict, description="ytid -> why its clip could not be featurized (it stays pending)."
    )
    made: Stamp = Field(default_factory=Stamp)

    @property
    def frame_dim(self) -> int:
        """Values per frame: mel bands, or the encoder's hidden size."""
        return self.encoder.hidden_size if self.encoder else self.audio.n_mels

    def front_end(self) -> str:
        """What made the frames, for tables."""
        a, e = self.audio, self.encoder
        if e is None:
            return f"{a.sample_rate} Hz, n_fft {a.n_fft}, hop {a.hop_length}, {a.n_mels} mels"
        layers = f"layer {e.layer[0]}" if len(e.layer) == 1 else f"layers {', '.join(map(str, e.layer))}"
        return (
            f"{e.model_type} {a.encoder} {layers} of {e.n_layers}: {e.hidden_size} values a frame, "
            f"{e.frames_per_second:g} frames/s at {e.sample_rate} Hz"
        )


class VocabRecord(BaseModel):
    features: str
    audio: AudioSettings = Field(description="The audio settings of those features.")
    encoder: EncoderRecord | None = Field(None, description="The encoder that made them, if one did.")
    split: SplitRecord = Field(description="The split whose train frames were clustered.")
    n_clusters: int
    transforms: list[str] = Field(
        default_factory=list,
        description="Frame transforms before quantization, in order (audio/transforms.py).",
    )
    quantizer: str = Field("kmeans", description="kmeans, pq:M or rvq:R (quantizers.py).")
    niter: int
    init: str
    sample_frames: int | None = Field(None, description="The --sample-frames asked for (None: the default).")
    seed: int
    n_frames: int
    n_train_clips: int
    inertia: float = Field(description="faiss's objective on its training sample (not comparable).")
    heldout_inertia: float | None = Field(
        None, description="Mean squared distance of held-out train frames to their nearest centroid."
    )
    heldout_frames: int = 0
    fingerprint: str = Field(description="Hash of the centroids: tokens and runs must match it.")
    made: Stamp = Field(default_factory=Stamp)


class TokensRecord(BaseModel):
    vocab: str
    vocab_fingerprint: str
    n_clusters: int = Field(description="Distinct ids: the vocabulary's k, or k plus the merges learned.")
    features: str
    rows_per_shard: int
    codebooks: int = Field(1, description="Ids a step (pq:M, rvq:R): tokens are [clip, step, codebook].")
    merges: int = Field(0, description="Merges asked for (`tokenize --merges N`); 0: one id per frame.")
    merges_json: str | None = Field(None, description="The trained Hugging Face tokenizer that merged them.")
    made: Stamp = Field(default_factory=Stamp)


KINDS: dict[str, type[BaseModel]] = {"features": FeaturesRecord, "vocab": VocabRecord, "tokens": TokensRecord}
