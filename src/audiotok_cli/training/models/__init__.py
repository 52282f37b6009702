"""The model registry: every family's name, the input it reads and the module that builds it.

Families are imported only when built, so choosing `simple` never loads `transformers`, and
`settings.py` can validate `--model` against this registry without importing torch. A new family is
one module with a `build(spec)` function plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import nn

    from audiotok_cli.training.models.spec import ModelSpec

InputKind = Literal["tokens", "frames"]


@dataclass(frozen=True)
class ModelFamily:
    name: str
    inputs: tuple[InputKind, ...]  # what it can read; the first is its default
    module: str  # holds `build(spec) -> nn.Module`
    summary: str


_MODELS = "audiotok_cli.training.models"
FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily("simple", ("tokens",), f"{_MODELS}.pooled", "mean of token embeddings"),
        ModelFamily("lstm", ("tokens",), f"{_MODELS}.lstm", "bidirectional LSTM, mean-pooled"),
        ModelFamily("bert", ("tokens", "frames"), f"{_MODELS}.bert", "transformers BertModel, [CLS] head"),
        ModelFamily("baseline", ("frames",), f"{_MODELS}.frame_mlp", "per-frame MLP, mean-pooled"),
        ModelFamily("cnn", ("frames",), f"{_MODELS}.cnn", "PANNs-style 2-D CNN over the log-mel image"),
    )
}
MODEL_NAMES = tuple(FAMILIES)


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh model of `spec.kind`, importing only that family's module."""
    return importlib.import_module(FAMILIES[spec.kind].module).build(spec)
