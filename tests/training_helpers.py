"""Kills and comparisons shared by the training tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import audiotok_cli.training.loop as loop
from audiotok_cli.training.models.ids import to_model_ids
from audiotok_cli.training.runs import load_run


def killed_in_epoch_two(monkeypatch: pytest.MonkeyPatch, train: Callable[[], object]) -> None:
    """Run `train` until epoch 2's validation, where it dies as a Ctrl-C would."""
    real_map, calls = loop.mean_average_precision, []

    def crash_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_map(*args)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "mean_average_precision", crash_in_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            train()


def assert_same_tensors(ours: Path, theirs: Path, prefix: str = "") -> None:
    """Two safetensors files hold the same names and values (to 1e-6); with `prefix`, only the
    names of `ours` under it count, the prefix stripped (a checkpoint's `model.` weights)."""
    a, b = load_file(ours), load_file(theirs)
    if prefix:
        a = {name.removeprefix(prefix): value for name, value in a.items() if name.startswith(prefix)}
    assert a.keys() == b.keys()
    for name in b:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def assert_predict_scores_the_store_tokens(
    cli, run_dir: Path, tokens, store, file: Path, codebook_size: int = 0
):
    """`predict` on an audio file scores what the model gives the store's tokens of that clip: the
    file was featurized, transformed, quantized (and merged) as the store's clips were. Returns the
    clip's model ids."""
    predicted = cli("predict", str(run_dir), str(file), "--json", "--top", "3")
    assert predicted.exit_code == 0, predicted.output
    run = load_run(run_dir)
    row = store.row_of[file.stem]
    ids, lengths = tokens.read_shard(row // tokens.rows_per_shard)
    offset = row % tokens.rows_per_shard
    clip = to_model_ids(
        torch.from_numpy(ids[offset : offset + 1, : lengths[offset]].astype(np.int64)), codebook_size
    )
    with torch.no_grad():
        expected = torch.sigmoid(run.model.eval()(clip, torch.tensor([lengths[offset]])))[0]
    for name, score in json.loads(predicted.stdout)["files"][0]["top"]:
        assert score == pytest.approx(float(expected[run.classes.names.index(name)]), abs=1e-4), name
    return clip
