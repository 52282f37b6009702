"""How a vocabulary turns a frame into ids (`vocab --quantizer`): one id from flat k-means (the
default), or several, one per codebook, each from k centroids:

    kmeans   one codebook of k centroids over the whole frame: one id a frame
    pq:M     product quantization: the frame cut into M equal parts, a codebook each
    rvq:R    residual quantization: codebook r quantizes what codebooks 1..r-1 left over

A frame's M ids together can tell apart k^M sounds where flat k-means tells k; the token models
embed a step as the sum of its codebooks' embeddings (the EnCodec/MusicGen convention). Codebooks
are kept as one array `[codebooks, k, part]` (flat k-means: `[k, dim]`). Each quantizer is a class
with faiss's contract (`train`, `encode`, `decode`) and one line in `QUANTIZERS`: a new one is a
class and a line. Training takes the k-means to run (`vocab`'s, on one thread) as `cluster`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from audiotok_cli.errors import SettingsError

Cluster = Callable[[np.ndarray], np.ndarray]  # k-means over a sample: its k centroids


class Quantizer(Protocol):
    ARGUMENT: ClassVar[str]  # the letter help writes its count with (`pq:M`); "": it takes none
    SUMMARY: ClassVar[str]  # what `vocab --help` says of it
    codebooks: np.ndarray

    @classmethod
    def train(cls, sample: np.ndarray, count: int, cluster: Cluster) -> Quantizer: ...
    def encode(self, vectors: np.ndarray) -> np.ndarray: ...
    def decode(self, codes: np.ndarray) -> np.ndarray: ...


def nearest(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Each vector's nearest centroid (exact L2, one search thread: see tokenize's docstring)."""
    import faiss  # here, so the registry's names cost `--help` no faiss import

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return ids[:, 0]


@dataclass(frozen=True)
class FlatKMeans:
    """One codebook `[k, dim]` over the whole frame: one id a frame, `[n]`."""

    ARGUMENT: ClassVar[str] = ""  # takes no count
    SUMMARY: ClassVar[str] = "one id a frame"

    codebooks: np.ndarray

    @classmethod
    def train(cls, sample: np.ndarray, count: int, cluster: Cluster) -> FlatKMeans:
        return cls(cluster(sample))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return nearest(self.codebooks, vectors)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.codebooks[codes]


@dataclass(frozen=True)
class ProductQuantizer:
    """A codebook `[k, dim / M]` for each of the frame's M equal parts: ids `[n, M]`."""

    ARGUMENT: ClassVar[str] = "M"
    SUMMARY: ClassVar[str] = "product quantization, a codebook of k for each of M equal parts of a frame"

    codebooks: np.ndarray

    @classmethod
    def train(cls, sample: np.ndarray, count: int, cluster: Cluster) -> ProductQuantizer:
        if sample.shape[1] % count:
            raise SettingsError(
                f"pq:{count} cuts each frame into {count} equal parts, and its {sample.shape[1]} dimensions "
                f"do not divide; add --transform pca:D with D a multiple of {count}"
            )
        return cls(np.stack([cluster(part) for part in np.split(sample, count, axis=1)]))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        count = len(self.codebooks)
        # every part contiguous in one copy (np.split's views cost a copy each, a fifth of pq's time)
        parts = np.ascontiguousarray(
            np.asarray(vectors, dtype=np.float32).reshape(len(vectors), count, -1).transpose(1, 0, 2)
        )
        codes = [nearest(book, part) for book, part in zip(self.codebooks, parts, strict=True)]
        return np.stack(codes, axis=1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.concatenate([book[codes[:, i]] for i, book in enumerate(self.codebooks)], axis=1)


@dataclass(frozen=True)
class ResidualQuantizer:
    """R codebooks `[k, dim]`, each over what the ones before it left: ids `[n, R]`."""

    ARGUMENT: ClassVar[str] = "R"
    SUMMARY: ClassVar[str] = "residual quantization, R codebooks of k, each over what the ones before left"

    codebooks: np.ndarray

    @classmethod
    def train(cls, sample: np.ndarray, count: int, cluster: Cluster) -> ResidualQuantizer:
        books, residual = [], sample
        for _ in range(count):
            book = cluster(residual)
            residual = residual - book[nearest(book, residual)]
            books.append(book)
        return cls(np.stack(books))

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        codes, residual = [], np.asarray(vectors, dtype=np.float32)
        for book in self.codebooks:
            ids = nearest(book, residual)
            codes.append(ids)
            residual = residual - book[ids]
        return np.stack(codes, axis=1)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return np.sum([book[codes[:, i]] for i, book in enumerate(self.codebooks)], axis=0)


QUANTIZERS: dict[str, type[Quantizer]] = {
    "kmeans": FlatKMeans,
    "pq": ProductQuantizer,
    "rvq": ResidualQuantizer,
}


def spelled(kind: str) -> str:
    """A quantizer as a user writes it: `kmeans`, `pq:M`."""
    argument = QUANTIZERS[kind].ARGUMENT
    return f"{kind}:{argument}" if argument else kind


CHOICES = ", ".join(map(spelled, QUANTIZERS))
DESCRIBED = "; ".join(f"{spelled(kind)} ({quantizer.SUMMARY})" for kind, quantizer in QUANTIZERS.items())


def parse_quantizer(spec: str) -> tuple[str, int]:
    """`kmeans` -> ("kmeans", 1); `pq:8` -> ("pq", 8); `rvq:4` -> ("rvq", 4)."""
    if spec == "kmeans":
        return "kmeans", 1
    match = re.fullmatch(r"([a-z]+):(\d+)", spec)
    if not match or match[1] not in QUANTIZERS or match[1] == "kmeans" or int(match[2]) < 2:
        raise SettingsError(f"unknown quantizer {spec!r}; choose from {CHOICES} (a count: 2 or more)")
    return match[1], int(match[2])


def quantizer_of(spec: str, codebooks: np.ndarray) -> Quantizer:
    """The quantizer `spec` names, with its trained codebooks."""
    return QUANTIZERS[parse_quantizer(spec)[0]](codebooks)


def train_quantizer(spec: str, sample: np.ndarray, cluster: Cluster) -> Quantizer:
    """The quantizer `spec` names, its codebooks trained on `sample` with `cluster`."""
    kind, count = parse_quantizer(spec)
    return QUANTIZERS[kind].train(sample, count, cluster)


def quantizer_tag(spec: str, k: int) -> str:
    """A vocabulary name's last part: `k256`, `pq8x256`, `rvq4x256`."""
    kind, codebooks = parse_quantizer(spec)
    return f"k{k}" if kind == "kmeans" else f"{kind}{codebooks}x{k}"
