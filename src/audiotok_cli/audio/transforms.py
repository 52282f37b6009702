"""Frame transforms applied before quantization (`vocab --transform`, repeatable, in order), and the
same way by `tokenize` and `predict`: each maps one clip's frames `[frame, dim]` to new frames (of
the same count, but for `pool:M`). A token made from one raw log-mel slice ties the token to absolute
level and channel, so one voice's vowel and another's land far apart; these remove or widen what a
token sees.

    clip-mean    subtract the clip's mean frame (removes gain and channel: cepstral mean subtraction)
    clip-norm    subtract the clip's mean and divide by its deviation, per band
    deltas       append the first and second time derivatives (librosa's Savitzky-Golay, width 9)
    context:N    stack frames t-N..t+N into one vector (edges repeat the first and last frame)
    pool:M       one frame per M: the mean of each M (the last of what is left), so one token per M
                 frames (shorter sequences; for tokens only: frame models read every frame)

and, fitted on the train split's frames by `vocab` and stored with the vocabulary (they come last,
after the per-clip ones, and compose into one affine map `LinearMap`):

    cmvn         standardise each dimension with the train frames' mean and deviation
    pca:D        project onto the train frames' D principal components (faiss's PCAMatrix)

A new transform is one function here and one line in `TRANSFORMS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from audiotok_cli.errors import SettingsError

if TYPE_CHECKING:
    import faiss

DELTA_WIDTH = 9


def _clip_mean(frames: np.ndarray, _: int) -> np.ndarray:
    return frames - frames.mean(axis=0, keepdims=True)


def _clip_norm(frames: np.ndarray, _: int) -> np.ndarray:
    return _clip_mean(frames, 0) / (frames.std(axis=0, keepdims=True) + 1e-3)


def _deltas(frames: np.ndarray, _: int) -> np.ndarray:
    import librosa  # here: training a token model imports this module, and librosa takes seconds

    first = librosa.feature.delta(frames, width=DELTA_WIDTH, order=1, axis=0, mode="nearest")
    second = librosa.feature.delta(frames, width=DELTA_WIDTH, order=2, axis=0, mode="nearest")
    return np.concatenate([frames, first, second], axis=1)


def _context(frames: np.ndarray, n: int) -> np.ndarray:
    padded = np.pad(frames, ((n, n), (0, 0)), mode="edge")
    return np.concatenate([padded[i : i + len(frames)] for i in range(2 * n + 1)], axis=1)


def _pool(frames: np.ndarray, m: int) -> np.ndarray:
    steps = _pooled_length(len(frames), m)
    sums = np.pad(frames, ((0, steps * m - len(frames)), (0, 0))).reshape(steps, m, -1).sum(axis=1)
    return sums / np.minimum(m, len(frames) - m * np.arange(steps))[:, None]


def _pooled_length(n: int | np.ndarray, m: int) -> int | np.ndarray:
    return -(-n // m)


@dataclass(frozen=True)
class LinearMap:
    """`frames @ a.T + b`: what the fitted transforms compose to, stored with the vocabulary."""

    a: np.ndarray  # [out, in]
    b: np.ndarray  # [out]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(frames @ self.a.T + self.b, dtype=np.float32)

    def then(self, after: LinearMap) -> LinearMap:
        return LinearMap(after.a @ self.a, after.a @ self.b + after.b)

    def arrays(self) -> dict[str, np.ndarray]:
        """As kept with the vocabulary and in a run's preprocessing."""
        return {"map_a": self.a, "map_b": self.b}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LinearMap | None:
        return cls(arrays["map_a"], arrays["map_b"]) if "map_a" in arrays else None

    def back(self, mapped: np.ndarray) -> np.ndarray:
        """Vectors of the mapped space in the space before it (least squares: PCA drops some)."""
        return (mapped - self.b) @ np.linalg.pinv(self.a).T


def _fit_cmvn(frames: np.ndarray, _: int) -> LinearMap:
    scale = 1.0 / (frames.std(axis=0) + 1e-3)
    return LinearMap(np.diag(scale).astype(np.float32), (-frames.mean(axis=0) * scale).astype(np.float32))


def _fit_pca(frames: np.ndarray, d: int) -> LinearMap:
    if not 0 < d <= frames.shape[1]:
        raise SettingsError(
            f"transform pca:{d}: the frames it gets have {frames.shape[1]} dimensions; keep 1 to that"
        )
    import faiss

    pca = faiss.PCAMatrix(frames.shape[1], d)
    pca.train(np.ascontiguousarray(frames, dtype=np.float32))
    a = faiss.vector_to_array(pca.A).reshape(d, frames.shape[1])
    return LinearMap(a.astype(np.float32), faiss.vector_to_array(pca.b).astype(np.float32))


@dataclass(frozen=True)
class Transform:
    apply: Callable[[np.ndarray, int], np.ndarray] | None  # per clip; None for a fitted one
    widen: Callable[[int, int], int]  # (dim, argument) -> dim after
    argument: str = ""  # the letter its help writes its number with (`context:N`); "": it takes none
    fit: Callable[[np.ndarray, int], LinearMap] | None = None  # on the train frames, for a fitted one
    shorten: Callable[[np.ndarray, int], np.ndarray] | None = None  # (lengths, argument) -> lengths after
    least: int = 0  # the smallest argument that means something


TRANSFORMS: dict[str, Transform] = {
    "clip-mean": Transform(_clip_mean, lambda dim, _: dim),
    "clip-norm": Transform(_clip_norm, lambda dim, _: dim),
    "deltas": Transform(_deltas, lambda dim, _: 3 * dim),
    "context": Transform(_context, lambda dim, n: (2 * n + 1) * dim, argument="N"),
    "pool": Transform(_pool, lambda dim, _: dim, argument="M", shorten=_pooled_length, least=1),
    "cmvn": Transform(None, lambda dim, _: dim, fit=_fit_cmvn),
    "pca": Transform(None, lambda _, d: d, argument="D", fit=_fit_pca),
}


def spelled(names: list[str]) -> str:
    """Transforms as a user writes them: `deltas, context:N`."""
    return ", ".join(
        name + (f":{TRANSFORMS[name].argument}" if TRANSFORMS[name].argument else "") for name in names
    )


PER_CLIP = spelled([name for name, transform in TRANSFORMS.items() if transform.fit is None])
FITTED = spelled([name for name, transform in TRANSFORMS.items() if transform.fit is not None])
CHOICES = spelled(list(TRANSFORMS))


def parse(spec: str) -> tuple[str, int]:
    """`name` or `name:N` -> (name, N); unknown names and bad arguments are refused in one line."""
    name, _, argument = spec.partition(":")
    transform = TRANSFORMS.get(name)
    if transform is None:
        raise SettingsError(f"unknown transform {spec!r}; choose from {CHOICES}")
    if (
        bool(transform.argument) != bool(argument)
        or (argument and not argument.isdigit())
        or int(argument or 0) < transform.least
    ):
        whole = f"a whole number from {transform.least}" if transform.least else "a whole number"
        form = f"{name}:N with N {whole}" if transform.argument else name
        raise SettingsError(f"transform {spec!r}: write it {form}")
    return name, int(argument or 0)


@dataclass(frozen=True)
class FrameTransforms:
    """A chain of transforms, as recorded with a vocabulary (`specs`, in order)."""

    specs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fitted = [TRANSFORMS[parse(spec)[0]].fit is not None for spec in self.specs]
        if fitted != sorted(fitted):  # per-clip ones need each clip's frames; fitted ones map single frames
            raise SettingsError(
                f"transforms {', '.join(self.specs)}: write cmvn and pca:D last, after the per-clip ones"
            )

    def __bool__(self) -> bool:
        return bool(self.specs)

    @property
    def fitted(self) -> tuple[str, ...]:
        return tuple(spec for spec in self.specs if TRANSFORMS[parse(spec)[0]].fit is not None)

    @property
    def per_clip(self) -> FrameTransforms:
        """The chain without its fitted transforms: what `__call__` applies."""
        return FrameTransforms(tuple(spec for spec in self.specs if spec not in self.fitted))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """One clip's valid frames `[frame, mel]`, through the per-clip transforms (float32); the
        fitted ones are the vocabulary's `LinearMap`, applied after."""
        out = frames.astype(np.float32, copy=False)
        for spec in self.specs:
            name, argument = parse(spec)
            if TRANSFORMS[name].apply is not None:
                out = TRANSFORMS[name].apply(out, argument).astype(np.float32)
        return np.ascontiguousarray(out)

    def fit(self, frames: np.ndarray) -> LinearMap | None:
        """The fitted transforms, fitted in order on train `frames` (already through the per-clip
        ones) and composed into one map; None without any."""
        total = None
        for spec in self.fitted:
            name, argument = parse(spec)
            step = TRANSFORMS[name].fit(frames, argument)
            frames = step(frames)
            total = step if total is None else total.then(step)
        return total

    @property
    def shortens(self) -> bool:
        return any(TRANSFORMS[parse(spec)[0]].shorten is not None for spec in self.specs)

    def lengths(self, lengths: np.ndarray) -> np.ndarray:
        """Frames each clip has after the chain, from its stored lengths (pending ones stay pending)."""
        out = np.asarray(lengths).copy()
        for spec in self.specs:
            name, argument = parse(spec)
            if TRANSFORMS[name].shorten is not None:
                out = np.where(out > 0, TRANSFORMS[name].shorten(out, argument), out)
        return out

    def dim(self, n_mels: int) -> int:
        for spec in self.specs:
            name, argument = parse(spec)
            n_mels = TRANSFORMS[name].widen(n_mels, argument)
        return n_mels

    def tag(self) -> str:
        """A name part: `clip-mean.deltas.context2` (store names allow no ':')."""
        return ".".join(spec.replace(":", "") for spec in self.specs)

    def padded(self, block: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """A padded block `[clip, frame, dim]` with each clip's valid frames transformed on their
        own; padding stays zero (frame models read it this way)."""
        out = np.zeros((*block.shape[:2], self.per_clip.dim(block.shape[2])), dtype=np.float32)
        for row, length in enumerate(lengths):
            if length > 0:
                out[row, :length] = self(block[row, :length])
        return out

    def valid_frames(self, block: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Every clip's valid frames of a padded block, each clip through the per-clip transforms
        on its own, in row order (the order `block[valid]` gives)."""
        frames = valid_float32(block, lengths)
        if not self.per_clip:
            return frames
        clips = np.split(frames, np.cumsum(lengths[lengths > 0])[:-1])
        return (
            np.concatenate([self(clip) for clip in clips])
            if len(frames)
            else np.zeros((0, self.per_clip.dim(block.shape[2])), np.float32)
        )


def valid_float32(block: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every clip's valid frames of a padded block `[clip, frame, dim]` in row order, as float32
    `[n, dim]`: gathered in the stored dtype, then cast at once. float16 goes through faiss's fp16
    decoder (IEEE half floats are its codes; equal to numpy's cast for all 65,536 values): 1.5x
    numpy's and torch's casts of a demo shard, and no torch import in the stages that read frames."""
    clips = [block[row, :length] for row, length in enumerate(lengths) if length > 0]
    if not clips:
        return np.zeros((0, block.shape[2]), np.float32)
    frames = np.concatenate(clips)
    if frames.dtype != np.float16:
        return frames.astype(np.float32, copy=False)
    return _half_decoder(frames.shape[1]).sa_decode(frames.view(np.uint8))


@functools.cache
def _half_decoder(dim: int) -> faiss.IndexScalarQuantizer:
    import faiss  # here, as for pca: the rest of the module is numpy

    return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
