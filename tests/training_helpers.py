"""Kills and comparisons shared by the resume tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import audiotok_cli.training.loop as loop


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
