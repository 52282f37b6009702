"""AudioSet's three sources and its labels as a collection names them: its 527 classes themselves
are a class list like any store's (`class_lists.audioset_classes`)."""

from __future__ import annotations

from audiotok_cli.class_lists import audioset_classes
from audiotok_cli.errors import SettingsError

SOURCES = ("bal_train", "unbal_train", "eval")  # the dataset's three parts, in store code order


def checked_sources(names: list[str]) -> list[str]:
    """Refuse source names other than AudioSet's three."""
    for name in names:
        if name not in SOURCES:
            raise SettingsError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}")
    return names


def audioset_ids(labels: set[str]) -> dict[str, str] | None:
    """Each label as an AudioSet MID, where every one is a MID or a display name (case and `_` for
    spaces aside); None where any is not, so the collection keeps its own class list."""
    index = audioset_classes()
    by_name = {_plain(name): mid for mid, name in zip(index.mids, index.names, strict=True)}
    ids = {label: label if label in index.mid_to_index else by_name.get(_plain(label)) for label in labels}
    return ids if labels and None not in ids.values() else None


def _plain(name: str) -> str:
    return name.replace("_", " ").strip().casefold()
