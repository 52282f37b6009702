"""Building a model of a family (`model_families.py` names them, what each reads and its module):
families are imported only when built, so choosing `simple` never loads `transformers`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from audiotok_cli.model_families import FAMILIES, MODEL_NAMES, InputKind, ModelFamily

if TYPE_CHECKING:
    from torch import nn

    from audiotok_cli.training.models.spec import ModelSpec

__all__ = ["FAMILIES", "MODEL_NAMES", "InputKind", "ModelFamily", "build_model"]


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh model of `spec.kind`, importing only that family's module."""
    return importlib.import_module(FAMILIES[spec.kind].module).build(spec)
