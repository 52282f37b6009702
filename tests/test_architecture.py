"""The import rules of docs/architecture.md, checked on the source: rooms stay rooms."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "audiotok_cli"


def _imports(path: Path) -> set[str]:
    """Every audiotok_cli module a file imports, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("audiotok_cli")}


def _room(room: str) -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


@pytest.mark.parametrize("path", _room("stages"), ids=lambda p: p.name)
def test_a_stage_never_imports_another_stage_the_cli_or_training(path):
    own = f"audiotok_cli.stages.{path.stem}"
    for name in _imports(path):
        assert not name.startswith(
            ("audiotok_cli.cli", "audiotok_cli.training", "audiotok_cli.experiments", "audiotok_cli.results")
        ), name
        assert not name.startswith("audiotok_cli.stages.") or name == own, name


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        (
            "store",
            (
                "audiotok_cli.stages",
                "audiotok_cli.training",
                "audiotok_cli.cli",
                "audiotok_cli.audio.",
                "audiotok_cli.audioset",  # the store is given its classes and sources by its maker
            ),
        ),
        ("audio", ("audiotok_cli.stages", "audiotok_cli.training", "audiotok_cli.cli", "audiotok_cli.store")),
        (
            "audioset",
            ("audiotok_cli.stages", "audiotok_cli.training", "audiotok_cli.cli", "audiotok_cli.store"),
        ),
        (
            "corpora",
            ("audiotok_cli.stages", "audiotok_cli.training", "audiotok_cli.cli", "audiotok_cli.store"),
        ),
        (
            "tokenizer",
            ("audiotok_cli.stages", "audiotok_cli.training", "audiotok_cli.cli", "audiotok_cli.store"),
        ),
        (
            "training",
            ("audiotok_cli.stages", "audiotok_cli.cli", "audiotok_cli.experiments", "audiotok_cli.results"),
        ),
        ("results", ("audiotok_cli.cli", "audiotok_cli.experiments")),
        ("experiments", ("audiotok_cli.cli",)),
    ],
)
def test_rooms_import_only_downwards(room, forbidden):
    for path in _room(room):
        for name in _imports(path):
            assert not name.startswith(forbidden), f"{path.relative_to(PACKAGE)} imports {name}"


def test_only_the_store_touches_zarr():
    for path in PACKAGE.rglob("*.py"):
        if "store" not in path.relative_to(PACKAGE).parts:
            source = path.read_text()
            assert "import zarr" not in source and "from zarr" not in source, path


GROUND_FLOOR = (
    "settings.py", "errors.py", "progress.py", "atomic.py", "model_families.py",
    "class_lists.py", "lock.py",
)  # fmt: skip


@pytest.mark.parametrize("module", GROUND_FLOOR)
def test_the_ground_floor_imports_no_room(module):
    """Settings validate `--model` against the family table beside them, not against `training/`
    (a transform's or quantizer's name against its registry in `audio/` or `tokenizer/`: the two
    small imports up, inside their validators)."""
    rooms = ("cli", "stages", "training", "experiments", "store", "audioset", "corpora")
    for name in _imports(PACKAGE / module):
        assert not name.startswith(tuple(f"audiotok_cli.{room}" for room in rooms)), (
            f"{module} imports {name}"
        )
