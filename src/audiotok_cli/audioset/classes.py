"""AudioSet's 527-class label space (the official `class_labels_indices.csv`, shipped as package
data) and its three sources; the class lists of any store are `class_lists.py`'s.

The seed used the 543 ontology nodes; published AudioSet mAP is over these 527 classes, so an
AudioSet store's multi-hot vectors have exactly this index. An imported collection whose labels are
not all AudioSet classes has its own class list (sorted label names), kept in its store.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from audiotok_cli.class_lists import ClassIndex, parse_class_csv
from audiotok_cli.errors import DataError, SettingsError

N_CLASSES = 527
SOURCES = ("bal_train", "unbal_train", "eval")  # the dataset's three parts, in store code order


def checked_sources(names: list[str]) -> list[str]:
    """Refuse source names other than AudioSet's three."""
    for name in names:
        if name not in SOURCES:
            raise SettingsError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    return names


def is_audioset(index: ClassIndex) -> bool:
    """Whether a class list is AudioSet's 527, in order."""
    return index.mids == class_index().mids


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


def audioset_ids(labels: set[str]) -> dict[str, str] | None:
    """Each label as an AudioSet MID, where every one is a MID or a display name (case and `_` for
    spaces aside); None where any is not, so the collection keeps its own class list."""
    index = class_index()
    by_name = {_plain(name): mid for mid, name in zip(index.mids, index.names, strict=True)}
    ids = {label: label if label in index.mid_to_index else by_name.get(_plain(label)) for label in labels}
    return ids if labels and None not in ids.values() else None


def _plain(name: str) -> str:
    return name.replace("_", " ").strip().casefold()
