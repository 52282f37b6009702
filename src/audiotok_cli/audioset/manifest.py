"""The fetch manifest (`{mirror}/.audiotok-fetch.json`): which mirror files are verified, and each
source's hub files in shard order. `fetch` writes it; `prune` and `--shards` read it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from audiotok_cli.atomic import write_json
from audiotok_cli.audioset.mirror import source_files
from audiotok_cli.errors import SettingsError

MANIFEST = ".audiotok-fetch.json"


def parse_shards(text: str | None) -> set[int] | None:
    """`0-49`, `3`, or `0-9,20-29` -> file indices (inclusive ranges)."""
    if not text:
        return None
    shards: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match[2] and int(match[2]) < int(match[1])):
            raise SettingsError(f"invalid --shards {text!r}; use ranges like 0-49 or 0-9,20")
        shards.update(range(int(match[1]), int(match[2] or match[1]) + 1))
    return shards


def manifest_path(mirror: Path) -> Path:
    return mirror / MANIFEST


def load_manifest(mirror: Path) -> dict[str, dict]:
    """`files`: verified files (hash, size, mtime); `listing`: each source's hub files in shard order."""
    path = manifest_path(mirror)
    return json.loads(path.read_text()) if path.exists() else {"files": {}, "listing": {}}


def save_manifest(mirror: Path, manifest: dict[str, dict]) -> None:
    write_json(manifest_path(mirror), manifest)


def record_listing(mirror: Path, listing: dict[str, list[str]]) -> None:
    manifest = load_manifest(mirror)
    manifest["listing"].update(listing)
    save_manifest(mirror, manifest)


def forget(mirror: Path, paths: list[str]) -> None:
    """Drop deleted files from the manifest (see `prune`)."""
    manifest = load_manifest(mirror)
    for path in paths:
        manifest["files"].pop(path, None)
    save_manifest(mirror, manifest)


def shard_paths(mirror: Path, source: str, layout: str, shards: set[int] | None) -> list[Path]:
    """Local files of `source` selected by hub shard index (as `fetch --shards` numbered them)."""
    listed = load_manifest(mirror)["listing"].get(source) or [
        p.relative_to(mirror).as_posix() for p in source_files(mirror, source, layout)
    ]
    chosen = [mirror / path for i, path in enumerate(listed) if shards is None or i in shards]
    return [path for path in chosen if path.exists()]
