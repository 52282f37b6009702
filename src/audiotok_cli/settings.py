"""One settings model for every stage: defaults < `.env` < `AUDIOTOK_*` environment < CLI flags.

Nested groups use `__` in the environment: `AUDIOTOK_AUDIO__N_MELS=128`. Validation rejects
inconsistent values with one line naming the setting, so a bad value never reaches a stage.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as PydanticSettingsError

from audiotok_cli.errors import AudiotokError, SettingsError
from audiotok_cli.model_families import FAMILIES, MODEL_NAMES

ENV_PREFIX = "AUDIOTOK_"
ENV_FILE = ".env"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # store groups and run folders: no '/', no '..'


def comma_list(value: object) -> object:
    """A list setting given as text (a flag, or an environment variable: `a,b` or JSON `["a", "b"]`)
    as a tuple; pydantic validates the items."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        try:
            return tuple(json.loads(value))
        except (json.JSONDecodeError, TypeError):
            raise ValueError(f'{value!r} is not a JSON list; write it a,b or ["a", "b"]') from None
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _layer_list(value: object) -> object:
    """`6`, `"2,4"`, `[2, 4]`: one layer or several."""
    return (value,) if isinstance(value, int) else comma_list(value)


def _unique_layers(layers: tuple[int, ...]) -> tuple[int, ...]:
    if not layers or min(layers) < -1 or len(set(layers)) < len(layers):
        raise ValueError(f"layers {list(layers)}: one or more distinct layers, each 0 or more (-1: the last)")
    return layers


# An encoder's layers kept, in order; one layer is written as a bare number, as records held before
# several could be kept, so their settings, and the identity of runs made from them, read the same.
Layers = Annotated[
    tuple[int, ...],
    BeforeValidator(_layer_list),
    AfterValidator(_unique_layers),
    NoDecode,
    PlainSerializer(lambda layers: layers[0] if len(layers) == 1 else list(layers)),
]


class _Group(BaseModel):
    """A settings group: unknown keys (a typo in a variable name) and inf or NaN are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def folder_path(path: Path) -> Path:
    """A path audiotok keeps files under: a file there would fail each command differently."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder; pass a folder (or a new path)")
    return path


class PathSettings(_Group):
    """Where each stage reads and writes; unset paths live under `data_dir`."""

    mirror_dir: Path | None = Field(None, description="Local mirror of the hub dataset repo.")
    audio_dir: Path | None = Field(None, description="Expanded audio files, one folder per source.")
    store: Path | None = Field(None, description="The Zarr v3 store every stage talks through.")
    runs_dir: Path | None = Field(None, description="Training runs: checkpoints and reports.")

    @field_validator("mirror_dir", "audio_dir", "runs_dir")
    @classmethod
    def _a_folder(cls, path: Path | None) -> Path | None:
        return path if path is None else folder_path(path)


@dataclass(frozen=True)
class Paths:
    """Resolved paths, for library functions that touch several of them."""

    mirror_dir: Path
    audio_dir: Path
    store: Path
    runs_dir: Path


class AudioSettings(_Group):
    """The front end: log-mel (the seed's librosa settings) or a pretrained encoder's hidden states;
    everything that determines feature values, recorded with the features and the runs trained on them."""

    sample_rate: int = Field(22050, gt=0, description="Audio is resampled to this rate (Hz).")
    n_fft: int = Field(1024, gt=0, description="STFT window length in samples.")
    hop_length: int = Field(512, gt=0, description="STFT hop in samples.")
    n_mels: int = Field(64, gt=0, description="Mel bands per frame.")
    normalize: bool = Field(False, description="Scale each clip's log-mel to [0, 1].")
    clip_seconds: float = Field(
        10.0, gt=0, le=600, description="Longest audio kept per clip (at most 600 s); sets max frames."
    )
    encoder: str | None = Field(
        None,
        description="A transformers audio encoder (hub name or saved folder): its hidden states are the "
        "frames instead of log-mel, at its own sample rate.",
    )
    layer: Layers = Field(
        (-1,),
        description="The encoder's hidden states kept (0: its input embeddings; -1: the last); repeat "
        "for several, side by side in each frame (`vocab --quantizer pq:L` gives each its own codebook).",
    )

    @property
    def max_frames(self) -> int:
        """Frames of a full clip with librosa's centred STFT: 1 + samples // hop."""
        return 1 + round(self.clip_seconds * self.sample_rate) // self.hop_length

    @model_validator(mode="after")
    def _consistent(self) -> AudioSettings:
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length {self.hop_length} > n_fft {self.n_fft} skips samples")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ValueError(
                f"n_mels {self.n_mels} exceeds the {self.n_fft // 2 + 1} FFT bins of n_fft "
                f"{self.n_fft}; lower n_mels or raise n_fft"
            )
        return self


class FeaturesSettings(_Group):
    """Where `featurize` writes in the store, and how its arrays are cut into shards."""

    name: str = Field("logmel", pattern=f"^{NAME_PATTERN}$", description="Store group for the features.")
    clips_per_shard: int = Field(256, gt=0, description="Clips per Zarr shard: the unit of work.")
    clips_per_chunk: int = Field(16, gt=0, description="Clips per inner chunk (random-read unit).")

    @model_validator(mode="after")
    def _consistent(self) -> FeaturesSettings:
        if self.clips_per_shard % self.clips_per_chunk:
            raise ValueError("clips_per_shard must be a multiple of clips_per_chunk")
        return self


class SplitSettings(_Group):
    """Which clips are test, val and train: AudioSet's eval source is always test; an imported
    collection is cut by its own structure (a fold, groups, sources) or, with none named, by a
    seeded hash (by group where clips have groups). Val is drawn by group where groups exist, so it
    never shares a speaker or a recording with train."""

    val_ratio: float = Field(0.1, gt=0, lt=1, description="Share of training clips held out.")
    keep_unlabeled: bool = Field(
        False, description="Put clips with no labels in train/val/test too (they train as all-negative)."
    )
    train_sources: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        min_length=1,
        description="Sources split into train and val (default: every source not tested); others stay "
        "unassigned (pretrain still reads them).",
    )
    test_fold: int | None = Field(None, description="Clips of this fold are the test split (ESC-50, US8K).")
    test_groups: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Clips of these groups (speakers, recordings) are test."
    )
    test_sources: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Clips of these sources are test (eval always is)."
    )
    test_ratio: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Imported clips drawn into test when no fold, group or source is named (by group "
        "where they have groups; default 0.2, or the published `test` source where the collection has "
        "one).",
    )
    drop_leaked: bool = Field(
        False,
        description="Leave out of test (and val) the clips with an identical copy on a training side.",
    )
    val_by_group: bool | None = Field(
        None,
        description="Draw val by group, never sharing one with train (default: where clips have groups).",
    )
    stratify: bool | None = Field(
        None,
        description="Draw val (and a hashed test) so each holds every class in proportion, groups kept whole "
        "(scikit-learn's StratifiedGroupKFold; default: collections whose clips have one label each).",
    )

    @field_validator("train_sources", "test_groups", "test_sources", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("train_sources")
    @classmethod
    def _training_sources(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is not None and "eval" in names:
            raise ValueError("train source 'eval': eval is AudioSet's test split; choose other sources")
        return names


class VocabSettings(_Group):
    """FAISS k-means over training-split frames."""

    n_clusters: int = Field(64, ge=2, description="Vocabulary size k (number of centroids).")
    niter: int = Field(20, gt=0, description="k-means iterations.")
    max_points_per_centroid: int = Field(
        256, gt=0, description="Frames sampled per centroid (unless --sample-frames is set)."
    )
    sample_frames: int | None = Field(
        None, gt=0, description="Train frames to cluster (default: k x max_points_per_centroid)."
    )
    init: Literal["kmeans++", "random"] = Field("kmeans++", description="Centroid start: kmeans++ or random.")
    transforms: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Frame transforms before k-means, in order (`audiotok vocab --help` lists them).",
    )

    quantizer: str = Field(
        "kmeans",
        description="How a frame becomes ids: kmeans, or M codebooks a frame (`audiotok vocab --help`).",
    )

    @field_validator("transforms", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("quantizer")
    @classmethod
    def _known_quantizer(cls, spec: str) -> str:
        from audiotok_cli.tokenizer.quantizers import parse_quantizer

        try:
            parse_quantizer(spec)
        except AudiotokError as exc:
            raise ValueError(str(exc)) from None
        return spec

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, specs: tuple[str, ...]) -> tuple[str, ...]:
        if not specs:
            return specs
        from audiotok_cli.audio.transforms import FrameTransforms  # the registry, as for models

        try:
            FrameTransforms(specs)
        except AudiotokError as exc:
            raise ValueError(str(exc)) from None
        return specs


class ModelSettings(_Group):
    kind: str = Field("lstm", description=f"Model family: {', '.join(MODEL_NAMES)}.")
    input: Literal["tokens", "frames"] | None = Field(
        None,
        description="What the model reads: tokens or frames (bert reads either); unset: its own.",
    )
    vocab_size: int | None = Field(None, description="When set, train refuses a vocabulary of another size.")
    embed_dim: int = Field(128, gt=0, description="Token embedding size (simple, lstm).")
    hidden_size: int = Field(128, gt=0, description="Hidden size (lstm, bert, baseline).")
    num_layers: int = Field(2, gt=0, description="Layers (lstm, bert, baseline).")
    num_heads: int = Field(4, gt=0, description="Attention heads (bert).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout probability.")
    cnn_channels: Annotated[tuple[int, ...], NoDecode] = Field(
        (64, 128, 256, 512), min_length=1, description="Channels of each conv block (cnn), e.g. 64,128,256."
    )
    conv_kernels: int = Field(
        0, ge=0, description="Kernels of a 1-D convolution over time before a frame model (0: none)."
    )
    conv_size: int = Field(3, gt=0, description="Width in frames of that convolution's kernels (odd).")
    frame_transforms: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Frame models: each clip's frames transformed before the model, in order (clip-mean, "
        "clip-norm, deltas, context:N), as `vocab --transform` does for tokens; predict applies them too.",
    )

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        if kind not in MODEL_NAMES:
            raise ValueError(f"unknown model {kind!r}; choose from {', '.join(MODEL_NAMES)}")
        return kind

    @field_validator("cnn_channels", "frame_transforms", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("frame_transforms")
    @classmethod
    def _per_clip_transforms(cls, specs: tuple[str, ...]) -> tuple[str, ...]:
        from audiotok_cli.audio.transforms import FrameTransforms  # the registry, as for models

        try:
            fitted = FrameTransforms(specs).fitted
        except AudiotokError as exc:
            raise ValueError(str(exc)) from None
        if fitted:
            raise ValueError(f"{', '.join(fitted)}: frame models standardise each band already; leave it out")
        if FrameTransforms(specs).shortens:
            raise ValueError("pool:M is for tokens (vocab --transform): frame models read every frame")
        return specs

    @model_validator(mode="after")
    def _input_of_family(self) -> ModelSettings:
        inputs = FAMILIES[self.kind].inputs
        if self.input is None:
            self.input = inputs[0]
        elif self.input not in inputs:
            raise ValueError(f"model {self.kind!r} reads {' or '.join(inputs)}, not {self.input}")
        if self.conv_kernels and self.input != "frames":
            raise ValueError("conv_kernels is a front end for frame models; this model reads tokens")
        if self.frame_transforms and self.input != "frames":
            raise ValueError(
                "frame_transforms are for frame models; tokens take theirs from `vocab --transform`"
            )
        if self.conv_size % 2 == 0:
            raise ValueError(f"conv_size {self.conv_size} must be odd, so each frame stays centred")
        return self


class TrainSettings(_Group):
    epochs: int = Field(15, gt=0, description="Passes over the train split.")
    batch_size: int = Field(32, gt=0, description="Clips per optimizer step.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="Learning rate after warmup: constant, cosine or linear decay to zero."
    )
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps of linear warmup (wins over the ratio).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Warmup as a share of all optimizer steps.")
    patience: int = Field(
        0, ge=0, description="Stop after this many epochs without a better val mAP (0: never)."
    )
    accumulate: int = Field(1, gt=0, description="Batches whose gradients add up to one optimizer step.")
    clip_grad_norm: float = Field(0.0, ge=0, description="Clip the gradient norm to this (0: no clipping).")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto (bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16."
    )
    bucket_by_length: bool = Field(
        False,
        description="Batches of clips of similar length (sorted within each shard read, batches then "
        "shuffled), so padding past a batch's longest clip is never computed: for collections whose "
        "clips vary in length.",
    )
    loss: Literal["auto", "ce", "bce"] = Field(
        "auto",
        description="ce: softmax cross-entropy (one class a clip); bce: multi-label binary cross-entropy; "
        "auto: ce for collections whose clips each have one label, bce for AudioSet.",
    )
    sampler: Literal["uniform", "balanced"] = Field(
        "uniform",
        description="uniform: each train clip once per epoch; balanced: clips drawn with weights from "
        "inverse class frequencies (with replacement, as many as the split holds).",
    )
    mixup: float = Field(0.0, ge=0, description="Mixup Beta(alpha, alpha) of clips and labels (0: off).")
    time_mask: int = Field(
        0, ge=0, description="Widest SpecAugment time mask, frames (frame models; 0: off)."
    )
    freq_mask: int = Field(0, ge=0, description="Widest SpecAugment frequency mask, mel bands (0: off).")
    token_mask: float = Field(
        0.0, ge=0, lt=1, description="Share of tokens replaced by [MASK] (token models; 0: off)."
    )
    mask_span: int = Field(1, gt=0, description="Tokens per [MASK] span of --token-mask.")
    average_last: int = Field(
        0, ge=0, description="The run's model averages the weights of its last N epochs (0: best epoch)."
    )
    tensorboard: bool = Field(False, description="Also write TensorBoard event files into the run folder.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps.")
    loader_workers: int | None = Field(
        None,
        ge=0,
        description="Processes reading batches ahead (default: none on a CPU, which the model needs "
        "whole; up to 4 on a GPU).",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch's threads per training process on the CPU (default: the cores available to it, "
        "shared among torchrun's ranks here); 1 on a machine busy with other work.",
    )
    run_name: str | None = Field(
        None,
        pattern=f"^{NAME_PATTERN}$",
        description="Run folder name; default {model}-{input}, then -2, -3, ... (never one that exists).",
    )

    @model_validator(mode="after")
    def _average_within_epochs(self) -> TrainSettings:
        if self.average_last > self.epochs:
            raise ValueError(
                f"average_last {self.average_last} > epochs {self.epochs}; average at most every epoch"
            )
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, device):
            raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps")
        return device


class Settings(BaseSettings):
    """Every setting of every stage, validated together."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=ENV_FILE,
        extra="ignore",
        allow_inf_nan=False,
    )

    data_dir: Path = Field(Path("data"), description="Root of every default path.")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed for splits, k-means and training.")
    log_level: str = Field("WARNING", description=f"Logging level: {', '.join(LOG_LEVELS)}.")
    paths: PathSettings = PathSettings()
    audio: AudioSettings = AudioSettings()
    features: FeaturesSettings = FeaturesSettings()
    split: SplitSettings = SplitSettings()
    vocab: VocabSettings = VocabSettings()
    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()

    @field_validator("data_dir")
    @classmethod
    def _a_folder(cls, path: Path) -> Path:
        return folder_path(path)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}; choose from {', '.join(LOG_LEVELS)}")
        return level.upper()

    @property
    def resolved_paths(self) -> Paths:
        """Every path, unset ones under `data_dir`."""
        return Paths(
            mirror_dir=self.paths.mirror_dir or self.data_dir / "mirror",
            audio_dir=self.paths.audio_dir or self.data_dir / "audio",
            store=self.paths.store or self.data_dir / "audiotok.zarr",
            runs_dir=self.paths.runs_dir or self.data_dir / "runs",
        )

    @property
    def mirror_dir(self) -> Path:
        return self.resolved_paths.mirror_dir

    @property
    def audio_dir(self) -> Path:
        return self.resolved_paths.audio_dir

    @property
    def store_path(self) -> Path:
        return self.resolved_paths.store

    @property
    def runs_dir(self) -> Path:
        return self.resolved_paths.runs_dir


UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings with `overrides` (from CLI flags) on top; raise SettingsError on bad values,
    naming the setting and where its value came from."""
    overrides = prune_none(overrides or {})
    try:
        _require_parsable_env_file()
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {where}{_from(where, overrides)}: {message}") from None
    except UnicodeDecodeError as exc:  # the only text file read here
        utf16 = ": a UTF-16 byte-order mark, as Windows editors save" if exc.object[:2] in UTF16_MARKS else ""
        raise SettingsError(
            f"{Path(ENV_FILE).resolve()} is not UTF-8 text (byte {exc.object[exc.start]:#x} at {exc.start}"
            f"{utf16}); save it as UTF-8"
        ) from None
    except PydanticSettingsError as exc:  # a nested group given as a value that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = field[1] if field else "settings"
        raise SettingsError(
            f"invalid setting {name}{_from(name, overrides)}: not a JSON object; set its values one by one "
            f"({ENV_PREFIX}{name.upper()}__NAME=VALUE) or give JSON such as '{{\"n_mels\": 64}}'"
        ) from None


def _require_parsable_env_file() -> None:
    """A `.env` line python-dotenv cannot parse is refused in one line naming the file and the line
    (python-dotenv would warn, naming neither, once for every settings group that reads the file)."""
    path = Path(ENV_FILE)
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as handle:
        for binding in parse_stream(handle):
            if binding.error:
                line = binding.original.string.strip()
                shown = line if len(line) <= 40 else line[:40] + "..."
                raise SettingsError(
                    f"{path.resolve()} line {binding.original.line} is not NAME=VALUE ({shown!r}); "
                    "fix it or comment it out with #"
                )


def origin(name: str, overrides: dict[str, Any]) -> tuple[str, str | None]:
    """Where the value of dotted setting `name` comes from (cli, env, .env or default), and the
    variable that set it: its own (`AUDIOTOK_AUDIO__N_MELS`) or its group's (`AUDIOTOK_AUDIO`)."""
    if name in flatten(overrides) or name.split(".")[0] in overrides:
        return "cli", None
    variables = [ENV_PREFIX + name.replace(".", "__").upper(), ENV_PREFIX + name.split(".")[0].upper()]
    dotenv = {k.upper() for k in dotenv_values(ENV_FILE)} if Path(ENV_FILE).exists() else set()
    for source, names in (("env", os.environ), (".env", dotenv)):
        for variable in variables:
            if variable in names:
                return source, variable
    return "default", None


def _from(name: str, overrides: dict[str, Any]) -> str:
    """` (from AUDIOTOK_X in .env)`, or nothing for command-line and default values."""
    source, variable = origin(name, overrides)
    place = {"env": "the environment", ".env": ENV_FILE}.get(source)
    return f" (from {variable} in {place})" if place else ""


def prune_none(values: dict[str, Any]) -> dict[str, Any]:
    """Drop unset CLI flags (None) so they do not mask env or `.env` values."""
    pruned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = prune_none(value)
            if value:
                pruned[key] = value
        elif value is not None:
            pruned[key] = value
    return pruned


def setting_sources(settings: Settings, overrides: dict[str, Any] | None = None) -> list[dict]:
    """Each setting's dotted name, effective value and origin: cli, env, .env or default."""
    overrides = prune_none(overrides or {})
    return [
        {
            "name": name,
            "value": value,
            "source": origin(name, overrides)[0],
            "env": ENV_PREFIX + name.replace(".", "__").upper(),
        }
        for name, value in flatten(settings.model_dump(mode="json")).items()
    ]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
