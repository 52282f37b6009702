"""`info`: what the store holds: clips per source and split, and each features/vocab/tokens group."""

from __future__ import annotations

from typing import Any

import numpy as np

from audiotok_cli.settings import Settings
from audiotok_cli.store import SOURCES, SPLITS, Store


def describe_store(settings: Settings) -> dict[str, Any]:
    store = Store.open(settings.store_path, mode="r")
    sources, splits = store.sources(), store.splits()
    clips = {
        source: {split: int(((sources == i) & (splits == j)).sum()) for j, split in enumerate(SPLITS)}
        for i, source in enumerate(SOURCES)
        if (sources == i).any()
    }
    groups: dict[str, list[dict[str, Any]]] = {}
    for kind in ("features", "tokens"):
        groups[kind] = []
        for name in store.names(kind):
            padded = store.padded(kind, name, fix="")
            lengths = padded.all_lengths()
            groups[kind].append(
                {
                    "name": name,
                    "done": int((lengths >= 0).sum()),
                    "pending": int((lengths < 0).sum()) + store.n_clips - len(lengths),
                    "frames": int(np.clip(lengths, 0, None).sum()),
                    "shape": list(padded.data.shape),
                    "attrs": padded.attrs,
                }
            )
    groups["vocab"] = [
        {"name": name, "attrs": store.group_attrs("vocab", name)} for name in store.names("vocab")
    ]
    return {
        "store": str(store.path),
        "format_version": store.root.attrs["format_version"],
        "n_clips": store.n_clips,
        "clips": clips,
        "split_settings": store.split_settings,
        **groups,
    }
