"""The model families by name: what each reads and the module that builds it. A plain table on the
ground floor, so `settings.py` validates `--model` and `--input` against it without importing
`training/` (or torch); `training/models/build_model` imports a family's module only when built. A
new family is one module with a `build(spec)` function plus one line here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputKind = Literal["tokens", "frames"]
_MODELS = "audiotok_cli.training.models"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    inputs: tuple[InputKind, ...]  # what it can read; the first is its default
    module: str  # holds `build(spec) -> nn.Module`
    summary: str


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
