"""Shared fixtures: real demo mirrors, real stores, and a CLI runner with an isolated environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from typer.testing import CliRunner

from audiotok_cli.audioset.demo import DemoResult, write_demo_mirror
from audiotok_cli.cli import app

# CI replays the same examples on every run (red means a regression, never bad luck); locally each
# run explores new ones.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own directory with no AUDIOTOK_* variables from the outside."""
    for name in list(os.environ):
        if name.startswith("AUDIOTOK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIOTOK_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def small_mirrors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DemoResult]:
    """One small demo mirror per layout, written once per session (copy before changing one)."""
    mirrors = {}
    for layout in ("parquet", "tar"):
        root = tmp_path_factory.mktemp(f"mirror-{layout}")
        mirrors[layout] = write_demo_mirror(root, layout=layout, clips=48, seconds=4.0, seed=7)
    return mirrors


@pytest.fixture
def featurized(small_mirrors):
    """Settings of a store with the small parquet mirror expanded, split and featurized (k=16)."""
    return _featurized(small_mirrors, {})


@pytest.fixture
def tokenized(featurized):
    """`featurized`, with a k=16 vocabulary and its tokens."""
    return _tokenized(featurized)


@pytest.fixture
def small_shards(small_mirrors):
    """`tokenized`, in shards of 8 clips (6 shards), for readers that cross shard ends."""
    return _tokenized(_featurized(small_mirrors, {"clips_per_shard": 8, "clips_per_chunk": 4}))


def _featurized(small_mirrors, features: dict):
    from audiotok_cli.settings import load_settings
    from audiotok_cli.stages.expand import expand
    from audiotok_cli.stages.featurize import featurize
    from audiotok_cli.stages.split import split

    settings = load_settings(
        {
            "paths": {"mirror_dir": small_mirrors["parquet"].mirror_dir},
            "vocab": {"n_clusters": 16},
            "features": features,
        }
    )
    expand(settings.resolved_paths, ["bal_train", "eval"])
    split(settings.store_path, settings.split, settings.seed)
    featurize(settings.store_path, settings.audio_dir, settings.audio, settings.features)
    return settings


def _tokenized(settings):
    from audiotok_cli.stages.tokenize import tokenize
    from audiotok_cli.stages.vocab import build_vocab

    build_vocab(settings.store_path, settings.vocab, seed=0)
    tokenize(settings.store_path)
    return settings
