"""Training runs on disk, in safetensors (never pickles):

{runs_dir}/{name}/model.safetensors   weights of the best val-mAP epoch (what `eval` scores)
{runs_dir}/{name}/last.safetensors    weights and optimizer state after the last finished epoch
{runs_dir}/{name}/run.json            model spec, inputs, history; `complete` once every epoch ran
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from audiotok_cli.atomic import replacing
from audiotok_cli.batches import iter_batches
from audiotok_cli.errors import MissingInputError
from audiotok_cli.models import build_model
from audiotok_cli.progress import progress
from audiotok_cli.settings import Settings
from audiotok_cli.store import PaddedSet, Store

WEIGHTS, CHECKPOINT, RECORD, REPORT = "model.safetensors", "last.safetensors", "run.json", "eval.json"


def run_dir(settings: Settings, name: str | None = None) -> Path:
    default = f"{settings.model.kind}-{settings.vocab.name}"
    return settings.runs_dir / (name or settings.train.run_name or default)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with replacing(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)


def save_best(directory: Path, model: nn.Module) -> None:
    _save_tensors(directory / WEIGHTS, model.state_dict())


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Weights and optimizer state, flattened to named tensors (`optim.{param}.{key}`)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"optim.{index}.{key}": torch.as_tensor(value) for key, value in state.items()}
    _save_tensors(directory / CHECKPOINT, tensors)


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    tensors = load_file(directory / CHECKPOINT)
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def read_record(directory: Path) -> dict[str, Any] | None:
    path = directory / RECORD
    return json.loads(path.read_text()) if path.exists() else None


def load_run(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    if not (directory / RECORD).exists() or not (directory / WEIGHTS).exists():
        raise MissingInputError(f"no trained run at {directory}; run `audiotok train` first or pass --run")
    record = read_record(directory)
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
