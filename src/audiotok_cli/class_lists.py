"""Class lists: which class each column of a store's labels is, for AudioSet's 527 and for any
imported collection's own classes alike. AudioSet's is the official `class_labels_indices.csv`,
shipped as package data: the list a store's record names by leaving its classes out, so it lives on
the ground floor with the store's other lists (the store never imports `audioset/`). A run folder
keeps its list as `classes.csv` in the official file's columns, so either reads back the same.

The seed used the 543 ontology nodes; published AudioSet mAP is over these 527 classes, so an
AudioSet store's multi-hot vectors have exactly this index. An imported collection whose labels are
not all AudioSet classes has its own class list (sorted label names), kept in its store."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from audiotok_cli.errors import DataError


@dataclass(frozen=True)
class ClassIndex:
    """Class `i` is `mids[i]` (an AudioSet MID, or a collection's own label) named `names[i]`."""

    mids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.mids)

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
        """Multi-hot vector for `mids`, and the ids that are not among the classes."""
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


AUDIOSET_N_CLASSES = 527


@cache
def audioset_classes() -> ClassIndex:
    """AudioSet's 527 classes, in the official file's order."""
    return parse_audioset_classes(audioset_classes_csv())


def audioset_classes_csv() -> str:
    """The official `class_labels_indices.csv`, as shipped."""
    return resources.files("audiotok_cli").joinpath("data/class_labels_indices.csv").read_text()


def parse_audioset_classes(text: str) -> ClassIndex:
    """AudioSet's class index from the CSV's text; refused unless it is the 527 classes in order."""
    index = parse_class_csv(text, "a class_labels_indices.csv")
    if len(index) != AUDIOSET_N_CLASSES:
        raise DataError("a class_labels_indices.csv is damaged: it must list the 527 classes in order")
    return index


def is_audioset(index: ClassIndex) -> bool:
    """Whether a class list is AudioSet's 527, in order."""
    return index.mids == audioset_classes().mids
