"""Run folders: everything it takes to apply a trained model to a new audio file, in safetensors
and JSON (never pickles), so copying the folder is enough to share it.

{runs_dir}/{name}/run.json            format, model spec, inputs (audio settings, vocabulary, split),
                                      training settings, history; `complete` once every epoch ran
{runs_dir}/{name}/model.safetensors   weights of the best val-mAP epoch (what `eval` scores)
{runs_dir}/{name}/last.safetensors    weights and optimizer state after the last finished epoch
{runs_dir}/{name}/vocab.safetensors   the vocabulary's centroids (token models)
{runs_dir}/{name}/classes.csv         the class index the 527 outputs follow
{runs_dir}/{name}/eval.json           the last `eval` report
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from audiotok_cli.atomic import replacing, write_atomic, write_json
from audiotok_cli.audioset.classes import ClassIndex, class_index_csv, parse_class_index
from audiotok_cli.errors import DataError, MismatchError, MissingInputError, SettingsError
from audiotok_cli.settings import AudioSettings
from audiotok_cli.store import SplitRecord
from audiotok_cli.training.models import build_model
from audiotok_cli.training.models.spec import ModelSpec

RUN_FORMAT = 2  # 2: four reserved token ids ([PAD] [CLS] [MASK] [SEP]); self-contained folders
RECORD, WEIGHTS, CHECKPOINT = "run.json", "model.safetensors", "last.safetensors"
CENTROIDS, CLASSES, REPORT = "vocab.safetensors", "classes.csv", "eval.json"


class RunInputs(BaseModel):
    """What the model was trained on: enough to featurize and tokenize a new file the same way."""

    store: str
    tokens: str
    vocab_fingerprint: str
    features: str
    audio: AudioSettings
    split: SplitRecord


class RunRecord(BaseModel):
    format: int = RUN_FORMAT
    model: ModelSpec
    inputs: RunInputs
    train: dict[str, Any] = Field(description="Training settings that shape the weights.")
    seed: int
    resume_key: str = Field(description="A rerun resumes only a run whose key matches.")
    history: list[dict[str, float]] = Field(default_factory=list)
    best_epoch: int | None = None
    complete: bool = False


@dataclass
class Run:
    """A loaded run folder."""

    directory: Path
    record: RunRecord
    model: nn.Module
    centroids: np.ndarray
    classes: ClassIndex


def read_record(directory: Path) -> RunRecord | None:
    """The run's record, or None where no run was started; older formats are refused."""
    path = directory / RECORD
    if not path.exists():
        return None
    try:
        record = RunRecord.model_validate_json(path.read_text())
    except ValidationError:
        record = None
    if record is None or record.format != RUN_FORMAT:
        raise MismatchError(
            f"run {directory} was written by another audiotok (not run format {RUN_FORMAT}); "
            "train it again with --overwrite"
        )
    return record


def write_record(directory: Path, record: RunRecord) -> None:
    write_json(directory / RECORD, record.model_dump(mode="json"))


def write_inputs(directory: Path, centroids: np.ndarray) -> None:
    """The parts of the store a run needs to stand alone: centroids and class index."""
    save_tensors(directory / CENTROIDS, {"centroids": torch.from_numpy(np.asarray(centroids, np.float32))})
    write_atomic(directory / CLASSES, class_index_csv().encode())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with replacing(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)


def save_best(directory: Path, model: nn.Module) -> None:
    save_tensors(directory / WEIGHTS, model.state_dict())


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Weights and optimizer state, flattened to named tensors (`optim.{param}.{key}`)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"optim.{index}.{key}": torch.as_tensor(value) for key, value in state.items()}
    save_tensors(directory / CHECKPOINT, tensors)


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    tensors = load_file(directory / CHECKPOINT)
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def load_run(directory: Path) -> Run:
    """A run folder, wherever it was copied: no store needed."""
    record = read_record(directory)
    if record is None or not (directory / WEIGHTS).exists():
        raise MissingInputError(f"no trained run at {directory}; run `audiotok train` first or pass --run")
    model = build_model(record.model)
    model.load_state_dict(load_file(directory / WEIGHTS))
    try:
        centroids = load_file(directory / CENTROIDS)["centroids"].numpy()
        classes = parse_class_index((directory / CLASSES).read_text())
    except (OSError, KeyError) as exc:
        raise DataError(f"run {directory} is incomplete ({exc}); train it again with --overwrite") from None
    return Run(directory, record, model, centroids, classes)


def find_runs(runs_dir: Path) -> list[tuple[Path, RunRecord]]:
    """Every finished-or-started run under `runs_dir` of the current format, by name."""
    runs = []
    for directory in sorted(runs_dir.glob("*/")) if runs_dir.exists() else []:
        try:
            record = read_record(directory)
        except MismatchError:
            continue
        if record is not None:
            runs.append((directory, record))
    return runs


def pick_device(name: str) -> torch.device:
    """The torch device for `--device`; asking for a GPU that is not there is a settings error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(f"--device {name}, but torch sees no CUDA GPU here; use --device auto or cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise SettingsError(f"--device {name}, but torch sees {torch.cuda.device_count()} GPUs")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("--device mps, but torch sees no Apple GPU here; use --device auto or cpu")
    return torch.device(name)
