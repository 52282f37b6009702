"""`info`: what the mirror and the store hold: mirror files per source, clips per source and split,
and each features/vocab/tokens group. It never fails on a store that `Store.open` accepts:
an incomplete group, or an unreadable mirror file, is listed with its fix instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from audiotok_cli.audioset.mirror import available_sources, clip_ids, detect_layout, source_files
from audiotok_cli.class_lists import is_audioset
from audiotok_cli.errors import DataError, MismatchError, MissingInputError
from audiotok_cli.lock import holder_of
from audiotok_cli.store import SPLITS, Pick, Store


def describe(store_path: Path, mirror_dir: Path) -> dict[str, Any]:
    """Mirror and store side by side; either may be absent, not both."""
    mirror = describe_mirror(mirror_dir)
    store = describe_store(store_path) if (store_path / "zarr.json").exists() else None
    if mirror is None and store is None:
        Store.open(store_path)  # raises the missing-store error with its fix
    return {"mirror": mirror, "store": store}


def describe_mirror(mirror_dir: Path) -> dict[str, Any] | None:
    """Files, clips and bytes per source in the local hub mirror, or None without one."""
    try:
        layout = detect_layout(mirror_dir)
    except MissingInputError:
        return None
    sources = {}
    for source in available_sources(mirror_dir, layout):
        files = source_files(mirror_dir, source, layout)
        clips, damaged = 0, {}
        for path in files:
            try:
                clips += len(clip_ids(path, layout))
            except DataError as exc:
                damaged[str(path)] = str(exc)
        sources[source] = {
            "files": len(files),
            "clips": clips,
            "bytes": sum(path.stat().st_size for path in files),
            "damaged": damaged,
        }
    return {"path": str(mirror_dir), "layout": layout, "sources": sources}


def describe_store(store_path: Path) -> dict[str, Any]:
    store = Store.open(store_path, mode="r")
    sources, splits = store.sources(), store.splits()
    clips = {
        source: {split: int(((sources == i) & (splits == j)).sum()) for j, split in enumerate(SPLITS)}
        for i, source in enumerate(store.source_names)
        if (sources == i).any()
    }
    groups: dict[str, Any] = {"damaged": []}
    for kind in ("features", "tokens"):
        groups[kind] = []
        for name in store.names(kind):
            try:
                padded = store.padded(kind, name)
                lengths = padded.all_lengths()
            except DataError as damage:  # said below the table; the other groups are still described
                groups["damaged"].append({"kind": kind, "name": name, "problem": str(damage)})
                continue
            groups[kind].append(
                {
                    "name": name,
                    "done": int((lengths >= 0).sum()),
                    "pending": int((lengths < 0).sum()) + store.n_clips - len(lengths),
                    "frames": int(np.clip(lengths, 0, None).sum()),
                    "shape": list(padded.data.shape),
                    "record": padded.record.model_dump(mode="json"),
                    **({"front_end": padded.record.front_end()} if kind == "features" else {}),
                    "stale": _staleness(store, kind, name),
                }
            )
    groups["vocab"] = [
        {"name": name, "record": store.vocab_record(name).model_dump(mode="json")}
        for name in store.names("vocab")
    ]
    groups["damaged"] += [
        {"kind": kind, "name": name, "problem": problem}
        for kind in ("features", "vocab", "tokens")
        for name, problem in store.damaged(kind).items()
    ]
    split, writer = store.split, holder_of(store_path)
    return {
        "store": str(store.path),
        "format_version": store.record.format_version,
        "n_clips": store.n_clips,
        "classes": None if is_audioset(store.classes) else list(store.classes.mids),
        "collections": {name: c.model_dump() for name, c in store.collections.items()},
        "clips": clips,
        "split": split.model_dump() if split else None,
        "writer": writer.model_dump() if writer and writer.running() else None,
        "last_verify": store.record.last_verify.model_dump() if store.record.last_verify else None,
        **groups,
    }


def _staleness(store: Store, kind: str, name: str) -> str | None:
    """Why readers would refuse tokens (a rebuilt vocabulary, a re-split store) or features (a units
    run trained again since), or None."""
    if kind == "features":
        encoder = store.features(name).record.encoder
        return encoder and encoder.changed()
    try:
        store.tokens(Pick(name))
    except (MismatchError, MissingInputError) as exc:
        return str(exc)
    return None
