"""AudioSet's 527-class label space (the official `class_labels_indices.csv`, shipped as package data).

The seed used the 543 ontology nodes; published AudioSet mAP is over these 527 classes, so every
multi-hot vector in audiotok has exactly this index.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from audiotok_cli.errors import DataError

N_CLASSES = 527


@dataclass(frozen=True)
class ClassIndex:
    mids: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def mid_to_index(self) -> dict[str, int]:
        return _lookup(self.mids)

    def multi_hot(self, mids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Multi-hot vector for `mids`, and the MIDs that are not among the 527 classes."""
        vector = np.zeros(len(self.mids), dtype=bool)
        unknown = []
        lookup = self.mid_to_index
        for mid in mids:
            index = lookup.get(mid.strip())
            if index is None:
                unknown.append(mid)
            else:
                vector[index] = True
        return vector, unknown


@cache
def _lookup(mids: tuple[str, ...]) -> dict[str, int]:
    return {mid: i for i, mid in enumerate(mids)}


@cache
def class_index() -> ClassIndex:
    text = resources.files("audiotok_cli").joinpath("data/class_labels_indices.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    if len(rows) != N_CLASSES or [int(r["index"]) for r in rows] != list(range(N_CLASSES)):
        raise DataError("packaged class_labels_indices.csv is damaged; reinstall audiotok")
    return ClassIndex(tuple(r["mid"] for r in rows), tuple(r["display_name"] for r in rows))
