"""Training runs on disk: `{runs_dir}/{name}/model.safetensors` (weights, never pickles) + `run.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from audiotok_cli.batches import iter_batches
from audiotok_cli.errors import MissingInputError
from audiotok_cli.models import build_model
from audiotok_cli.progress import progress
from audiotok_cli.settings import Settings
from audiotok_cli.store import PaddedSet, Store

WEIGHTS, RECORD, REPORT = "model.safetensors", "run.json", "eval.json"


def run_dir(settings: Settings, name: str | None = None) -> Path:
    default = f"{settings.model.kind}-{settings.vocab.name}"
    return settings.runs_dir / (name or settings.train.run_name or default)


def write_json(path: Path, values: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(values, indent=2))
    os.replace(tmp, path)


def save_run(directory: Path, model: nn.Module, record: dict[str, Any]) -> None:
    """Weights first, then the record, each replaced atomically: a run with a record is whole."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{WEIGHTS}.partial"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, directory / WEIGHTS)
    write_json(directory / RECORD, record)


def load_run(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    if not (directory / RECORD).exists() or not (directory / WEIGHTS).exists():
        raise MissingInputError(f"no trained run at {directory}; run `audiotok train` first or pass --run")
    record = json.loads((directory / RECORD).read_text())
    model = build_model(record["model"])
    model.load_state_dict(load_file(directory / WEIGHTS))
    return model, record


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def predict(
    model: nn.Module,
    store: Store,
    tokens: PaddedSet,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and sigmoid scores of the selected rows, in row order."""
    model.eval()
    labels, scores, order = [], [], []
    with progress("predict", int(rows.sum())) as advance:
        for batch in iter_batches(store, tokens, rows, batch_size):
            logits = model(batch.ids.to(device), batch.lengths.to(device))
            scores.append(torch.sigmoid(logits).float().cpu().numpy())
            labels.append(batch.labels.numpy())
            order.append(batch.rows)
            advance(len(batch.rows))
    sort = np.argsort(np.concatenate(order))
    return np.concatenate(labels)[sort].astype(bool), np.concatenate(scores)[sort]
