"""Run folders stand alone: copied anywhere, they load and score without the store; older run
formats are refused; the model registry refuses what it does not know."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from audiotok_cli.class_lists import AUDIOSET_N_CLASSES, audioset_classes
from audiotok_cli.errors import MismatchError, SettingsError
from audiotok_cli.settings import ModelSettings, TrainSettings, VocabSettings, load_settings
from audiotok_cli.stages.tokenize import tokenize
from audiotok_cli.stages.vocab import build_vocab
from audiotok_cli.store import Store
from audiotok_cli.training.loop import train
from audiotok_cli.training.models import FAMILIES, MODEL_NAMES
from audiotok_cli.training.models.ids import to_model_ids
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.runs import CHECKPOINT, RECORD, load_run


@pytest.fixture
def trained(featurized):
    build_vocab(featurized.store_path, VocabSettings(n_clusters=16), seed=0)
    tokenize(featurized.store_path)
    result = train(
        RunRequest(
            featurized.resolved_paths,
            ModelSettings(kind="lstm", embed_dim=8, hidden_size=8),
            TrainSettings(epochs=1),
            0,
        ),
    )
    return featurized, result.run_dir


def test_a_run_folder_copied_elsewhere_loads_without_the_store(trained, tmp_path):
    settings, run_dir = trained
    store = Store.open(settings.store_path)
    centroids = store.vocab().centroids
    ids, lengths = store.tokens().read_shard(0)
    original = load_run(run_dir)

    copy = tmp_path / "elsewhere" / "shared-run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(settings.store_path)  # nothing of the store is left
    loaded = load_run(copy)

    assert loaded.record.model.kind == "lstm" and loaded.record.inputs.tokens == "logmel-k16"
    assert loaded.record.inputs.audio == settings.audio  # featurize a new file the same way
    assert np.array_equal(loaded.preprocessing["centroids"], centroids)  # tokenize it the same way
    assert loaded.classes == audioset_classes()  # and name its 527 outputs
    batch = to_model_ids(torch.from_numpy(ids[:4].astype(np.int64)))
    true = torch.from_numpy(lengths[:4].astype(np.int64))
    with torch.no_grad():
        scores = loaded.model.eval()(batch, true)
        assert torch.equal(scores, original.model.eval()(batch, true))
    assert scores.shape == (4, AUDIOSET_N_CLASSES)


def test_a_run_of_an_older_format_is_refused_with_the_fix(trained, cli):
    _, run_dir = trained
    record = json.loads((run_dir / RECORD).read_text())
    (run_dir / RECORD).write_text(json.dumps({**record, "format": 2}))
    save_file(load_file(run_dir / CHECKPOINT), run_dir / CHECKPOINT)  # format 1 kept no record there
    with pytest.raises(MismatchError, match=r"not run format 3.*train the run again with --overwrite"):
        load_run(run_dir)
    result = cli("eval", "--run", run_dir.name)
    assert result.exit_code == 6 and "train the run again with --overwrite" in result.stderr


def test_the_registry_knows_each_family_and_its_input():
    assert MODEL_NAMES == ("simple", "lstm", "bert", "baseline", "cnn")
    assert {name: family.inputs for name, family in FAMILIES.items()} == {
        "simple": ("tokens",),
        "lstm": ("tokens",),
        "bert": ("tokens", "frames"),
        "baseline": ("frames",),
        "cnn": ("frames",),
    }
    with pytest.raises(
        SettingsError, match="unknown model 'gpt'; choose from simple, lstm, bert, baseline, cnn"
    ):
        load_settings({"model": {"kind": "gpt"}})
    with pytest.raises(SettingsError, match="model 'lstm' reads tokens, not frames"):
        load_settings({"model": {"kind": "lstm", "input": "frames"}})
    assert load_settings({"model": {"kind": "cnn"}}).model.input == "frames"
    assert load_settings({"model": {"kind": "bert", "input": "frames"}}).model.input == "frames"


def test_training_the_simple_model_never_imports_transformers_librosa_or_faiss(trained):
    settings, _ = trained
    probe = (
        "import sys\n"
        "from audiotok_cli.settings import ModelSettings, TrainSettings, load_settings\n"
        "from audiotok_cli.training.loop import train\n"
        "from audiotok_cli.training.request import RunRequest\n"
        "paths = load_settings().resolved_paths\n"
        "train(RunRequest(paths, ModelSettings(kind='simple'), TrainSettings(epochs=1, run_name='p'), 0))\n"
        "print(*(name in sys.modules for name in ('transformers', 'librosa', 'faiss')))\n"
    )
    env = {**os.environ, "AUDIOTOK_PATHS__STORE": str(settings.store_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "False", "False"]
