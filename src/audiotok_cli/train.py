"""`train`: a token model on the train split with multi-label BCE, keeping the best epoch by val mAP."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiotok_cli.batches import iter_batches
from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError
from audiotok_cli.metrics import mean_average_precision
from audiotok_cli.models import build_model, init_head_bias, model_spec
from audiotok_cli.progress import progress
from audiotok_cli.runs import RECORD, pick_device, predict, run_dir, save_run, write_json
from audiotok_cli.settings import Settings
from audiotok_cli.store import PaddedSet, Store, split_code
from audiotok_cli.tokenize import open_tokens

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_val_map: float
    history: list[dict]


def split_rows(store: Store, lengths: np.ndarray, split: str) -> np.ndarray:
    """Mask of the split's clips that have tokens."""
    return (store.splits() == split_code(split)) & (lengths > 0)


def train(settings: Settings, overwrite: bool = False) -> TrainResult:
    store = Store.open(settings.store_path)
    tokens = open_tokens(store, settings)
    n_tokens = int(tokens.attrs["n_clusters"])
    if settings.model.vocab_size not in (None, n_tokens):
        raise MismatchError(
            f"model.vocab_size {settings.model.vocab_size} != the {n_tokens} tokens of {tokens.name!r}"
        )
    directory = run_dir(settings)
    if (directory / RECORD).exists() and not overwrite:
        raise OutputExistsError(f"run {directory} already exists; pass --overwrite or --run-name")
    lengths = tokens.all_lengths()
    train_rows, val_rows = split_rows(store, lengths, "train"), split_rows(store, lengths, "val")
    if not train_rows.any():
        raise MissingInputError(f"no tokenized train clips in {store.path}; run `audiotok split`")
    if not val_rows.any():
        raise MissingInputError(
            f"no tokenized val clips in {store.path}; run `audiotok split` with a larger --val-ratio"
        )
    spec = model_spec(settings.model, n_tokens, tokens.data.shape[1])
    device = pick_device(settings.train.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = build_model(spec)
        init_head_bias(model, store.label_prior(train_rows))
        model.to(device)
        history = _fit(settings, store, tokens, model, train_rows, val_rows, device, directory, spec)
    best = max(history, key=lambda epoch: epoch["val_mAP"])
    return TrainResult(directory, best["epoch"], best["val_mAP"], history)


def _fit(
    settings: Settings,
    store: Store,
    tokens: PaddedSet,
    model: torch.nn.Module,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    device: torch.device,
    directory: Path,
    spec: dict,
) -> list[dict]:
    """Epochs of AdamW + BCE; the weights of the best val-mAP epoch are saved as they happen."""
    cfg = settings.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(settings.seed)
    history: list[dict] = []
    best = -1.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        total, batches = 0.0, 0
        with progress(f"epoch {epoch}/{cfg.epochs}", int(train_rows.sum())) as advance:
            for batch in iter_batches(store, tokens, train_rows, cfg.batch_size, rng):
                optimizer.zero_grad()
                logits = model(batch.ids.to(device), batch.lengths.to(device))
                loss = loss_fn(logits, batch.labels.to(device))
                loss.backward()
                optimizer.step()
                total, batches = total + loss.item(), batches + 1
                advance(len(batch.rows))
        labels, scores = predict(model, store, tokens, val_rows, cfg.batch_size, device)
        val_map = mean_average_precision(labels, scores)
        history.append({"epoch": epoch, "train_loss": total / max(batches, 1), "val_mAP": val_map})
        log.info("epoch %d: loss %.4f, val mAP %.4f", epoch, total / max(batches, 1), val_map)
        if val_map > best:
            best = val_map
            save_run(directory, model, _record(settings, tokens, spec, history))
    write_json(directory / RECORD, _record(settings, tokens, spec, history))  # full history
    return history


def _record(settings: Settings, tokens: PaddedSet, spec: dict, history: list[dict]) -> dict:
    return {
        "model": spec,
        "tokens": tokens.name,
        "vocab_fingerprint": tokens.attrs["vocab_fingerprint"],
        "store": str(settings.store_path),
        "settings": settings.model_dump(mode="json"),
        "best_epoch": max(history, key=lambda e: e["val_mAP"])["epoch"],
        "history": history,
    }
