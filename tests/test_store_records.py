"""The store owns its metadata: records written last, incomplete groups invisible and recreated,
safe group names, inputs chosen by name or refused when ambiguous, `info` that never fails."""

from __future__ import annotations

import json

import numpy as np
import pytest

import audiotok_cli.store.layout as layout
from audiotok_cli.errors import OutputExistsError, SettingsError
from audiotok_cli.settings import VocabSettings
from audiotok_cli.stages.featurize import featurize
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.store import Pick, Store


class Killed(Exception):
    """Stands in for a kill between a group's arrays and its record."""


def _vocab(settings, k: int = 16, overwrite: bool = False, features: str | None = None):
    return build_vocab(settings.store_path, VocabSettings(n_clusters=k), 0, features, overwrite)


def _kill_before_records(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    real = layout.write_record

    def write_record(group, record):
        if group.path.startswith(f"{kind}/"):
            raise Killed
        real(group, record)

    monkeypatch.setattr(layout, "write_record", write_record)


def test_a_vocabulary_killed_mid_creation_is_invisible_then_recreated(featurized, monkeypatch, cli):
    with monkeypatch.context() as patch:
        _kill_before_records(patch, "vocab")
        with pytest.raises(Killed):
            _vocab(featurized)
    store = Store.open(featurized.store_path)
    assert store.names("vocab") == []  # the centroids are there, the record is not: nobody reads it
    assert "interrupted" in store.damaged("vocab")["logmel-k16"]
    info = cli("info", "--json")
    assert info.exit_code == 0
    damaged = json.loads(info.stdout)["store"]["damaged"]
    assert damaged == [
        {"kind": "vocab", "name": "logmel-k16", "problem": store.damaged("vocab")["logmel-k16"]}
    ]
    shown = cli("info")
    assert shown.exit_code == 0 and "run `audiotok vocab` again" in shown.stdout
    rows = [line for line in shown.stdout.splitlines() if "features" in line and "logmel" in line]
    assert len(rows) == 1 and "22050 Hz, n_fft 1024, hop 512, 64 mels" in rows[0]  # piped: no wrap
    refused = cli("tokenize")
    assert refused.exit_code == 4 and "no vocab in" in refused.stderr

    assert _vocab(featurized).name == "logmel-k16"  # the rerun recreates it without --overwrite
    store = Store.open(featurized.store_path)
    assert store.names("vocab") == ["logmel-k16"] and store.damaged("vocab") == {}
    with pytest.raises(OutputExistsError):
        _vocab(featurized)


def test_features_killed_mid_creation_are_recreated_by_the_rerun(featurized, monkeypatch):
    settings = featurized.model_copy(
        update={"features": featurized.features.model_copy(update={"name": "f2"})}
    )
    run = (settings.store_path, settings.audio_dir, settings.audio, settings.features)
    with monkeypatch.context() as patch:
        _kill_before_records(patch, "features")
        with pytest.raises(Killed):
            featurize(*run)
    assert Store.open(settings.store_path).names("features") == ["logmel"]
    assert featurize(*run).clips_done == 48
    assert Store.open(settings.store_path).names("features") == ["f2", "logmel"]


@pytest.mark.parametrize("name", ["a/b", "..", ".hidden", "x" * 65, ""])
def test_group_names_that_would_escape_or_nest_are_refused(cli, featurized, name):
    result = cli("featurize", "--name", name)
    assert result.exit_code == 3, result.output
    assert "features.name" in result.stderr or "invalid features name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli("info").exit_code == 0


def test_several_candidates_are_refused_with_their_names_and_a_pick_chooses(featurized, cli):
    _vocab(featurized, k=8)
    _vocab(featurized, k=16)
    bare = cli("tokenize")
    assert bare.exit_code == 3
    assert "2 vocab in" in bare.stderr and "logmel-k16, logmel-k8; choose one with --vocab" in bare.stderr
    assert cli("tokenize", "--k", "8").exit_code == 0
    assert cli("tokenize", "--vocab", "logmel-k16").exit_code == 0
    store = Store.open(featurized.store_path)
    assert store.names("tokens") == ["logmel-k16", "logmel-k8"]
    assert store.tokens(Pick(k=8)).record.n_clusters == 8
    missing = cli("tokenize", "--vocab", "logmel-k99")
    assert missing.exit_code == 4 and "it holds logmel-k16, logmel-k8" in missing.stderr


def test_vocab_asks_which_features_when_there_are_several(featurized, cli):
    assert cli("featurize", "--name", "wide", "--n-mels", "32").exit_code == 0
    refused = cli("vocab", "--k", "8")
    assert refused.exit_code == 3 and "logmel, wide; choose one with --features" in refused.stderr
    made = cli("vocab", "--k", "8", "--features", "wide", "--json")
    assert made.exit_code == 0 and json.loads(made.stdout)["name"] == "wide-k8"
    assert Store.open(featurized.store_path).vocab(Pick("wide-k8")).centroids.shape == (8, 32)


def test_vocab_refuses_an_existing_name_before_clustering(featurized, monkeypatch):
    _vocab(featurized)

    def no_clustering(*args):
        raise AssertionError("k-means ran although the vocabulary exists")

    monkeypatch.setattr("audiotok_cli.stages.vocab.kmeans", no_clustering)
    with pytest.raises(OutputExistsError, match="vocab 'logmel-k16' already exists"):
        _vocab(featurized)


def test_info_shows_tokens_of_a_rebuilt_vocabulary_as_stale(featurized, cli):
    _vocab(featurized)
    tokenize(featurized.store_path)
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16, niter=2), 9, overwrite=True)
    info = cli("info", "--json")
    assert info.exit_code == 0
    tokens = json.loads(info.stdout)["store"]["tokens"][0]
    assert "the vocabulary was rebuilt since" in tokens["stale"]
    assert "stale" in cli("info").stdout


def test_records_are_typed_and_describe_their_group(featurized):
    _vocab(featurized)
    store = Store.open(featurized.store_path)
    features = store.features()
    assert features.record.audio == featurized.audio and features.record.rows_per_shard == 256
    vocab = store.vocab()
    assert vocab.record.features == "logmel" and vocab.record.split == store.split
    assert vocab.record.fingerprint == layout.fingerprint(vocab.centroids)
    assert np.isfinite(vocab.record.inertia)
    with pytest.raises(SettingsError, match="invalid vocab name"):
        store.choose("vocab", Pick("../x"))
