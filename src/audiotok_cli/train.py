"""`train`: a token model on the train split with multi-label BCE, keeping the best epoch by val mAP."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiotok_cli.atomic import write_json
from audiotok_cli.batches import iter_batches
from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError
from audiotok_cli.metrics import mean_average_precision
from audiotok_cli.models import build_model, init_head_bias, model_spec
from audiotok_cli.progress import progress
from audiotok_cli.runs import (
    CHECKPOINT,
    RECORD,
    load_checkpoint,
    pick_device,
    predict,
    read_record,
    run_dir,
    save_best,
    save_checkpoint,
)
from audiotok_cli.settings import Settings
from audiotok_cli.store import PaddedSet, Store, fingerprint, split_code
from audiotok_cli.tokenize import open_tokens

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_val_map: float
    history: list[dict]


def split_rows(store: Store, lengths: np.ndarray, split: str) -> np.ndarray:
    """Mask of the split's clips that have tokens (clips appended since tokenizing are left out)."""
    return (store.splits(slice(0, len(lengths))) == split_code(split)) & (lengths > 0)


def train(settings: Settings, overwrite: bool = False) -> TrainResult:
    """Train, or resume an interrupted run with the same settings from its last finished epoch."""
    store = Store.open(settings.store_path)
    tokens = open_tokens(store, settings)
    n_tokens = int(tokens.attrs["n_clusters"])
    if settings.model.vocab_size not in (None, n_tokens):
        raise MismatchError(
            f"model.vocab_size {settings.model.vocab_size} != the {n_tokens} tokens of {tokens.name!r}"
        )
    lengths = tokens.all_lengths()
    train_rows, val_rows = split_rows(store, lengths, "train"), split_rows(store, lengths, "val")
    if not train_rows.any():
        raise MissingInputError(f"no tokenized train clips in {store.path}; run `audiotok split`")
    if not val_rows.any():
        raise MissingInputError(
            f"no tokenized val clips in {store.path}; run `audiotok split` with a larger --val-ratio"
        )
    spec = model_spec(settings.model, n_tokens, tokens.data.shape[1])
    directory = run_dir(settings)
    record = _start_record(settings, tokens, spec, store)
    history = _resumable_history(directory, record, overwrite)
    device = pick_device(settings.train.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = build_model(spec)
        init_head_bias(model, store.label_prior(train_rows))
        model.to(device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.train.learning_rate, weight_decay=settings.train.weight_decay
        )
        if history:
            load_checkpoint(directory, model, optimizer)
            log.info("resuming %s after epoch %d", directory, len(history))
        _fit(
            settings,
            store,
            tokens,
            model,
            optimizer,
            (train_rows, val_rows),
            device,
            directory,
            record,
            history,
        )
    best = _best(history)
    return TrainResult(directory, best["epoch"], best["val_mAP"], history)


def _best(history: list[dict]) -> dict:
    """The epoch with the highest val mAP (the first of equals)."""
    return max(history, key=lambda epoch: epoch["val_mAP"])


def _start_record(settings: Settings, tokens: PaddedSet, spec: dict, store: Store) -> dict:
    """What makes a run: a rerun resumes only a run whose `resume_key` matches."""
    train = settings.train.model_dump(exclude={"device", "run_name"})
    inputs = {"spec": spec, "train": train, "seed": settings.seed, "split": store.split_settings}
    return {
        "model": spec,
        "tokens": tokens.name,
        "vocab_fingerprint": tokens.attrs["vocab_fingerprint"],
        "split_settings": store.split_settings,
        "store": str(settings.store_path),
        "settings": settings.model_dump(mode="json"),
        "resume_key": fingerprint({**inputs, "vocab": tokens.attrs["vocab_fingerprint"]}),
        "history": [],
        "best_epoch": None,
        "complete": False,
    }


def _resumable_history(directory: Path, record: dict, overwrite: bool) -> list[dict]:
    """Epochs already done by an interrupted run with these settings ([] for a fresh run)."""
    previous = read_record(directory)
    if previous is None or overwrite:
        return []
    if previous.get("complete"):
        raise OutputExistsError(f"run {directory} already exists; pass --overwrite or --run-name")
    if previous.get("resume_key") != record["resume_key"] or not (directory / CHECKPOINT).exists():
        raise MismatchError(
            f"run {directory} was interrupted but made with other settings; pass --overwrite or --run-name"
        )
    return previous["history"]


def _fit(
    settings: Settings,
    store: Store,
    tokens: PaddedSet,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rows: tuple[np.ndarray, np.ndarray],
    device: torch.device,
    directory: Path,
    record: dict,
    history: list[dict],
) -> None:
    """Epochs of AdamW + BCE from where `history` stops. Each epoch draws its randomness from
    (seed, epoch), so a resumed run matches an uninterrupted one; after each epoch the best weights,
    the checkpoint and then the record are written."""
    cfg = settings.train
    train_rows, val_rows = rows
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        rng = np.random.default_rng([settings.seed, epoch])
        torch.manual_seed(settings.seed * 100_003 + epoch)
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
        log.info("epoch %d: loss %.4f, val mAP %.4f", epoch, total / max(batches, 1), val_map)
        if not history or val_map > _best(history)["val_mAP"]:
            save_best(directory, model)
        history.append({"epoch": epoch, "train_loss": total / max(batches, 1), "val_mAP": val_map})
        save_checkpoint(directory, model, optimizer)
        record |= {
            "history": history,
            "best_epoch": _best(history)["epoch"],
            "complete": epoch == cfg.epochs,
        }
        write_json(directory / RECORD, record)
