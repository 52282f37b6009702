"""Frame transforms applied before quantization (`vocab --transform`, repeatable, in order), and the
same way by `tokenize` and `predict`: each maps one clip's frames `[frame, dim]` to new frames of the
same count. A token made from one raw log-mel slice ties the token to absolute level and channel, so
one voice's vowel and another's land far apart; these remove or widen what a token sees.

    clip-mean    subtract the clip's mean frame (removes gain and channel: cepstral mean subtraction)
    clip-norm    subtract the clip's mean and divide by its deviation, per band
    deltas       append the first and second time derivatives (librosa's Savitzky-Golay, width 9)
    context:N    stack frames t-N..t+N into one vector (edges repeat the first and last frame)

A new transform is one function here and one line in `TRANSFORMS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import librosa
import numpy as np

from audiotok_cli.errors import SettingsError

DELTA_WIDTH = 9


def _clip_mean(frames: np.ndarray, _: int) -> np.ndarray:
    return frames - frames.mean(axis=0, keepdims=True)


def _clip_norm(frames: np.ndarray, _: int) -> np.ndarray:
    return _clip_mean(frames, 0) / (frames.std(axis=0, keepdims=True) + 1e-3)


def _deltas(frames: np.ndarray, _: int) -> np.ndarray:
    first = librosa.feature.delta(frames, width=DELTA_WIDTH, order=1, axis=0, mode="nearest")
    second = librosa.feature.delta(frames, width=DELTA_WIDTH, order=2, axis=0, mode="nearest")
    return np.concatenate([frames, first, second], axis=1)


def _context(frames: np.ndarray, n: int) -> np.ndarray:
    padded = np.pad(frames, ((n, n), (0, 0)), mode="edge")
    return np.concatenate([padded[i : i + len(frames)] for i in range(2 * n + 1)], axis=1)


@dataclass(frozen=True)
class Transform:
    apply: Callable[[np.ndarray, int], np.ndarray]
    widen: Callable[[int, int], int]  # (dim, argument) -> dim after
    takes_argument: bool = False


TRANSFORMS: dict[str, Transform] = {
    "clip-mean": Transform(_clip_mean, lambda dim, _: dim),
    "clip-norm": Transform(_clip_norm, lambda dim, _: dim),
    "deltas": Transform(_deltas, lambda dim, _: 3 * dim),
    "context": Transform(_context, lambda dim, n: (2 * n + 1) * dim, takes_argument=True),
}


def parse(spec: str) -> tuple[str, int]:
    """`name` or `name:N` -> (name, N); unknown names and bad arguments are refused in one line."""
    name, _, argument = spec.partition(":")
    transform = TRANSFORMS.get(name)
    choices = "clip-mean, clip-norm, deltas, context:N"
    if transform is None:
        raise SettingsError(f"unknown transform {spec!r}; choose from {choices}")
    if transform.takes_argument != bool(argument) or (argument and not argument.isdigit()):
        form = f"{name}:N with N a whole number" if transform.takes_argument else name
        raise SettingsError(f"transform {spec!r}: write it {form}")
    return name, int(argument or 0)


@dataclass(frozen=True)
class FrameTransforms:
    """A chain of transforms, as recorded with a vocabulary (`specs`, in order)."""

    specs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for spec in self.specs:
            parse(spec)

    def __bool__(self) -> bool:
        return bool(self.specs)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """One clip's valid frames `[frame, mel]`, transformed (float32)."""
        out = frames.astype(np.float32)
        for spec in self.specs:
            name, argument = parse(spec)
            out = TRANSFORMS[name].apply(out, argument).astype(np.float32)
        return np.ascontiguousarray(out)

    def dim(self, n_mels: int) -> int:
        for spec in self.specs:
            name, argument = parse(spec)
            n_mels = TRANSFORMS[name].widen(n_mels, argument)
        return n_mels

    def tag(self) -> str:
        """A name part: `clip-mean.deltas.context2` (store names allow no ':')."""
        return ".".join(spec.replace(":", "") for spec in self.specs)

    def valid_frames(self, block: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Every clip's valid frames of a padded block, each clip transformed on its own, in row
        order (the order `block[valid]` gives)."""
        clips = [self(block[row, :length]) for row, length in enumerate(lengths) if length > 0]
        return np.concatenate(clips) if clips else np.zeros((0, self.dim(block.shape[2])), np.float32)
