"""Class indices: AudioSet's 527-class label space (the official `class_labels_indices.csv`, shipped
as package data) and its three sources, and the class lists of other collections.

The seed used the 543 ontology nodes; published AudioSet mAP is over these 527 classes, so an
AudioSet store's multi-hot vectors have exactly this index. An imported collection whose labels are
not all AudioSet classes has its own class list (sorted label names), kept in its store.
"""

from __future__ import annotations

import csv
import io
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
    """Class `i` is `mids[i]` (an AudioSet MID, or a collection's own label) named `names[i]`."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.mids)

    @property
    def is_audioset(self) -> bool:
        return self.mids == class_index().mids

    def to_csv(self) -> str:
        """In the official file's columns (`index,mid,display_name`), so either reads back the same."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows(
            (i, mid, name) for i, (mid, name) in enumerate(zip(self.mids, self.names, strict=True))
        )
        return out.getvalue()

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
    """AudioSet's class index from the CSV's text; refused unless it is the 527 classes in order."""
    index = parse_class_csv(text, "a class_labels_indices.csv")
    if len(index) != N_CLASSES:
        raise DataError("a class_labels_indices.csv is damaged: it must list the 527 classes in order")
    return index


def parse_class_csv(text: str, what: str) -> ClassIndex:
    """Any class index in the official file's columns, refused unless its rows are numbered 0, 1, ...
    in order with a non-empty id each (`what` names the file in the message)."""
    try:
        rows = list(csv.DictReader(text.splitlines()))
        numbers = [int(r["index"]) for r in rows]
        index = ClassIndex(tuple(r["mid"] for r in rows), tuple(r["display_name"] for r in rows))
    except (KeyError, ValueError, TypeError):
        raise DataError(f"{what} is damaged: it needs the columns index, mid, display_name") from None
    if not rows or numbers != list(range(len(rows))) or not all(index.mids):
        raise DataError(f"{what} is damaged: its rows must be numbered 0, 1, ... in order, each with an id")
    return index


def own_classes(labels: list[str]) -> ClassIndex:
    """A collection's own class list: its label names, sorted, each its own id."""
    names = tuple(sorted(set(labels)))
    return ClassIndex(names, names)


def audioset_ids(labels: set[str]) -> dict[str, str] | None:
    """Each label as an AudioSet MID, where every one is a MID or a display name (case and `_` for
    spaces aside); None where any is not, so the collection keeps its own class list."""
    index = class_index()
    by_name = {_plain(name): mid for mid, name in zip(index.mids, index.names, strict=True)}
    ids = {label: label if label in index.mid_to_index else by_name.get(_plain(label)) for label in labels}
    return ids if labels and None not in ids.values() else None


def _plain(name: str) -> str:
    return name.replace("_", " ").strip().casefold()
