"""`info`: what the mirror and the store hold: mirror files per source, clips per source and split,
and each features/vocab/tokens group."""

from __future__ import annotations

from typing import Any

import numpy as np

from audiotok_cli.errors import MissingInputError
from audiotok_cli.mirror import available_sources, clip_ids, detect_layout, source_files
from audiotok_cli.settings import Settings
from audiotok_cli.store import SOURCES, SPLITS, Store


def describe(settings: Settings) -> dict[str, Any]:
    """Mirror and store side by side; either may be absent, not both."""
    mirror = describe_mirror(settings)
    store = describe_store(settings) if (settings.store_path / "zarr.json").exists() else None
    if mirror is None and store is None:
        Store.open(settings.store_path)  # raises the missing-store error with its fix
    return {"mirror": mirror, "store": store}


def describe_mirror(settings: Settings) -> dict[str, Any] | None:
    """Files, clips and bytes per source in the local hub mirror, or None without one."""
    try:
        layout = detect_layout(settings.mirror_dir)
    except MissingInputError:
        return None
    sources = {}
    for source in available_sources(settings.mirror_dir, layout):
        files = source_files(settings.mirror_dir, source, layout)
        sources[source] = {
            "files": len(files),
            "clips": sum(len(clip_ids(path, layout)) for path in files),
            "bytes": sum(path.stat().st_size for path in files),
        }
    return {"path": str(settings.mirror_dir), "layout": layout, "sources": sources}


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
