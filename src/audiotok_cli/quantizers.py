"""How a vocabulary turns a frame into ids (`vocab --quantizer`): one id from flat k-means (the
default), or several, one per codebook, each from k centroids:

    kmeans   one codebook of k centroids over the whole frame: one id a frame
    pq:M     product quantization: the frame cut into M equal parts, a codebook each
    rvq:R    residual quantization: codebook r quantizes what codebooks 1..r-1 left over

A frame's M ids together can tell apart k^M sounds where flat k-means tells k; the token models
embed a step as the sum of its codebooks' embeddings (the EnCodec/MusicGen convention). Codebooks
are kept as one array `[codebooks, k, part]` (flat k-means: `[k, dim]`, as before); training them
is `vocab`'s (k-means on one thread), encoding is here, shared by `tokenize` and `predict`.
"""

from __future__ import annotations

import re

import faiss
import numpy as np

from audiotok_cli.errors import SettingsError

CHOICES = "kmeans, pq:M, rvq:R"


def parse_quantizer(spec: str) -> tuple[str, int]:
    """`kmeans` -> ("kmeans", 1); `pq:8` -> ("pq", 8); `rvq:4` -> ("rvq", 4)."""
    if spec == "kmeans":
        return "kmeans", 1
    match = re.fullmatch(r"(pq|rvq):(\d+)", spec)
    if not match or int(match[2]) < 2:
        raise SettingsError(f"unknown quantizer {spec!r}; choose from {CHOICES} (M, R: 2 or more)")
    return match[1], int(match[2])


def quantizer_tag(spec: str, k: int) -> str:
    """A vocabulary name's last part: `k256`, `pq8x256`, `rvq4x256`."""
    kind, codebooks = parse_quantizer(spec)
    return f"k{k}" if kind == "kmeans" else f"{kind}{codebooks}x{k}"


def nearest(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Each vector's nearest centroid (exact L2, one search thread: see tokenize's docstring)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return ids[:, 0]


def encode(spec: str, codebooks: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """`vectors` `[n, dim]` as ids: `[n]` for kmeans, `[n, codebooks]` for pq and rvq."""
    kind, count = parse_quantizer(spec)
    if kind == "kmeans":
        return nearest(codebooks, vectors)
    if kind == "pq":
        # every part contiguous in one copy (np.split's views cost a copy each, a fifth of pq's time)
        parts = np.ascontiguousarray(
            np.asarray(vectors, dtype=np.float32).reshape(len(vectors), count, -1).transpose(1, 0, 2)
        )
        return np.stack([nearest(book, part) for book, part in zip(codebooks, parts, strict=True)], axis=1)
    codes, residual = [], np.asarray(vectors, dtype=np.float32)
    for book in codebooks:
        ids = nearest(book, residual)
        codes.append(ids)
        residual = residual - book[ids]
    return np.stack(codes, axis=1)


def decode(spec: str, codebooks: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Ids back to the vectors they stand for (for reconstruction error)."""
    kind = parse_quantizer(spec)[0]
    if kind == "kmeans":
        return codebooks[codes]
    parts = [book[codes[:, i]] for i, book in enumerate(codebooks)]
    return np.concatenate(parts, axis=1) if kind == "pq" else np.sum(parts, axis=0)
