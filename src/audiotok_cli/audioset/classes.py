"""AudioSet's 527-class label space (the official `class_labels_indices.csv`, shipped as package
data) and its three sources.

The seed used the 543 ontology nodes; published AudioSet mAP is over these 527 classes, so every
multi-hot vector in audiotok has exactly this index.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from audiotok_cli.errors import DataError, SettingsError

N_CLASSES = 527
SOURCES = ("bal_train", "unbal_train", "eval")  # the dataset's three parts, in store code order


def checked_sources(names: list[str]) -> list[str]:
    """Refuse source names other than AudioSet's three."""
    for name in names:
        if name not in SOURCES:
            raise SettingsError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    return names


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


def class_index_csv() -> str:
    """The official `class_labels_indices.csv`, as shipped."""
    return resources.files("audiotok_cli.audioset").joinpath("data/class_labels_indices.csv").read_text()


@cache
def class_index() -> ClassIndex:
    return parse_class_index(class_index_csv())


def parse_class_index(text: str) -> ClassIndex:
    """A class index from the CSV's text; refused unless it is the 527 classes in index order."""
    rows = list(csv.DictReader(text.splitlines()))
    if len(rows) != N_CLASSES or [int(r["index"]) for r in rows] != list(range(N_CLASSES)):
        raise DataError("a class_labels_indices.csv is damaged: it must list the 527 classes in order")
    return ClassIndex(tuple(r["mid"] for r in rows), tuple(r["display_name"] for r in rows))
