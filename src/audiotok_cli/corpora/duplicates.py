"""Identical recordings inside a collection (ESC-50 and hand-made collections hold copies): each
file's content digest, and groups joined so that copies always share one, so no split can put one
copy in train and another in test.

`exact` digests the file's bytes; `near` the decoded samples and their rate, so the same audio in
another container or with other tags (a WAV and its FLAC, a re-tagged MP3) counts as a copy too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DEDUPE_MODES = ("exact", "near")


def content_digest(path: Path, mode: str = "exact") -> str:
    """A file's identity for duplicate finding (see the module's docstring)."""
    if mode == "exact":
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    digest = hashlib.sha256(f"{rate}:{samples.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(samples).tobytes())
    return "near:" + digest.hexdigest()


@dataclass(frozen=True)
class Duplicates:
    groups: np.ndarray  # every clip's group, copies joined into one
    files: int  # clips that have a copy
    sets: int  # sets of identical clips
    joined: int  # clips whose group changed


def join_copies(groups: np.ndarray, digests: np.ndarray) -> Duplicates:
    """Groups where every set of clips with one digest ("" where unknown) shares a group: the copies'
    own group where they have one, the union of theirs where they have several (`a+b`), else one
    named after the digest. Clips that share a group with a copy move with it."""
    n = len(groups)
    groups = np.asarray(groups, dtype=object)
    keys = np.where(digests != "", digests, None)
    copied = _members_of_repeated(keys)
    if not copied.any():
        return Duplicates(groups, 0, 0, 0)
    edges = [_chain(np.flatnonzero(keys == key)) for key in np.unique(keys[copied].astype(str))]
    edges += [_chain(np.flatnonzero(groups == group)) for group in set(groups[copied].tolist()) - {""}]
    pairs = np.concatenate(edges, axis=1)
    graph = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    joined = groups.copy()
    for label in np.unique(component[copied]):
        rows = np.flatnonzero(component == label)
        own = sorted(set(groups[rows].tolist()) - {""})
        joined[rows] = "+".join(own) if own else f"copies-{str(keys[rows[copied[rows]][0]])[-12:]}"
    sets = len(np.unique(keys[copied].astype(str)))
    return Duplicates(joined, int(copied.sum()), sets, int((joined != groups).sum()))


def _members_of_repeated(keys: np.ndarray) -> np.ndarray:
    known = keys != None  # noqa: E711 (elementwise on an object array)
    values, counts = np.unique(keys[known].astype(str), return_counts=True)
    repeated = set(values[counts > 1].tolist())
    return np.array([key is not None and key in repeated for key in keys], dtype=bool)


def _chain(rows: np.ndarray) -> np.ndarray:
    """Edges joining `rows` one after the other (enough to make them one component)."""
    return np.stack([rows[:-1], rows[1:]]) if len(rows) > 1 else np.zeros((2, 0), dtype=np.int64)
