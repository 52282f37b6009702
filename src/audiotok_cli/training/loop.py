"""`train`: a token model on the train split with multi-label BCE, keeping the best epoch by val mAP."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiotok_cli.errors import MismatchError, MissingInputError, OutputExistsError, SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.settings import AudioSettings, ModelSettings, Paths, TrainSettings
from audiotok_cli.store import Pick, Store, TokenSet, WriterLock, fingerprint
from audiotok_cli.training.data import iter_batches, predict
from audiotok_cli.training.metrics import mean_average_precision
from audiotok_cli.training.models import FAMILIES, build_model
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.runs import (
    CHECKPOINT,
    REPORT,
    RunInputs,
    RunRecord,
    load_checkpoint,
    pick_device,
    read_record,
    save_best,
    save_checkpoint,
    write_inputs,
    write_record,
)

log = logging.getLogger(__name__)
EpochCallback = Callable[[dict[str, float], int], None]  # (history entry, total epochs)


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_val_map: float
    history: list[dict[str, float]]


def train(
    paths: Paths,
    model: ModelSettings,
    settings: TrainSettings,
    seed: int,
    pick: Pick | None = None,
    overwrite: bool = False,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train on the tokens `pick` chooses (default: the store's only tokens) into
    `{runs_dir}/{run_name or model-vocab}`, or resume an interrupted run with the same settings
    from its last finished epoch."""
    if FAMILIES[model.kind].input != "tokens":
        raise SettingsError(f"model {model.kind!r} reads frames; this audiotok trains token models only")
    device = pick_device(settings.device)
    pick = pick or Pick()
    if None not in (model.vocab_size, pick.k) and model.vocab_size != pick.k:
        raise SettingsError(f"model.vocab_size {model.vocab_size} != --k {pick.k}; they must agree")
    store = Store.open(paths.store)
    tokens = store.tokens(pick)
    n_tokens = tokens.record.n_clusters
    if model.vocab_size not in (None, n_tokens):
        raise SettingsError(
            f"model.vocab_size {model.vocab_size} != {n_tokens}, the size of vocabulary {tokens.name!r}; "
            "unset it or choose a vocabulary of that size with --k"
        )
    lengths = tokens.all_lengths()
    rows = store.split_rows(lengths, "train"), store.split_rows(lengths, "val")
    if not rows[0].any():
        raise MissingInputError(f"no tokenized train clips in {store.path}; run `audiotok split`")
    if not rows[1].any():
        raise MissingInputError(
            f"no tokenized val clips in {store.path}; run `audiotok split` with a larger --val-ratio"
        )
    spec = ModelSpec(
        n_tokens=n_tokens, max_frames=tokens.data.shape[1], **model.model_dump(exclude={"vocab_size"})
    )
    directory = paths.runs_dir / (settings.run_name or f"{model.kind}-{tokens.name}")
    with WriterLock(directory, "train"):
        vocab = store.vocab(Pick(tokens.record.vocab))
        record = _start_record(paths, tokens, vocab.record.audio, store, spec, settings, seed)
        history = _resumable_history(directory, record, overwrite)
        if not history:
            (directory / REPORT).unlink(missing_ok=True)
            write_inputs(directory, vocab.centroids)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = build_model(spec)
            init_head_bias(network, store.label_prior(rows[0]))
            network.to(device)
            optimizer = torch.optim.AdamW(
                network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
            )
            if history:
                load_checkpoint(directory, network, optimizer)
                log.info("resuming %s after epoch %d", directory, len(history))
            fit = _Fit(settings, seed, store, tokens, network, optimizer, rows, device, directory, on_epoch)
            fit.epochs(record, history)
    best = _best(history)
    return TrainResult(directory, int(best["epoch"]), best["val_mAP"], history)


def init_head_bias(model: nn.Module, label_prior: np.ndarray) -> None:
    """Start each class's logit at its train-split log-odds.

    With 527 mostly-absent classes, a zero bias spends the first updates learning "everything is
    absent", and the LSTM and BERT then stall at the prior (measured on the demo: val mAP 0.33 vs
    0.87 for the LSTM with this start).
    """
    prior = np.clip(label_prior, 1e-4, 1 - 1e-4)
    with torch.no_grad():
        model.head.bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))).float())


def _best(history: list[dict[str, float]]) -> dict[str, float]:
    """The epoch with the highest val mAP (the first of equals)."""
    return max(history, key=lambda epoch: epoch["val_mAP"])


def _start_record(
    paths: Paths,
    tokens: TokenSet,
    audio: AudioSettings,
    store: Store,
    spec: ModelSpec,
    settings: TrainSettings,
    seed: int,
) -> RunRecord:
    """What makes a run; a rerun resumes only a run whose `resume_key` matches."""
    inputs = RunInputs(
        store=str(paths.store),
        tokens=tokens.name,
        vocab_fingerprint=tokens.record.vocab_fingerprint,
        features=tokens.record.features,
        audio=audio,
        split=store.split,
    )
    shaping = settings.model_dump(exclude={"device", "run_name"})
    key = {"model": spec.model_dump(), "train": shaping, "seed": seed, **inputs.model_dump(exclude={"store"})}
    return RunRecord(model=spec, inputs=inputs, train=shaping, seed=seed, resume_key=fingerprint(key))


def _resumable_history(directory: Path, record: RunRecord, overwrite: bool) -> list[dict[str, float]]:
    """Epochs already done by an interrupted run with these settings ([] for a fresh run)."""
    if overwrite:
        return []
    previous = read_record(directory)
    if previous is None:
        return []
    if previous.complete:
        raise OutputExistsError(f"run {directory} already exists; pass --overwrite or --run-name")
    if previous.resume_key != record.resume_key or not (directory / CHECKPOINT).exists():
        raise MismatchError(
            f"run {directory} was interrupted but made with other settings; pass --overwrite or --run-name"
        )
    return previous.history


@dataclass
class _Fit:
    """The epoch loop. Each epoch draws its randomness from (seed, epoch), so a resumed run
    matches an uninterrupted one; after each epoch the best weights, the checkpoint and then the
    record are written."""

    settings: TrainSettings
    seed: int
    store: Store
    tokens: TokenSet
    model: nn.Module
    optimizer: torch.optim.Optimizer
    rows: tuple[np.ndarray, np.ndarray]
    device: torch.device
    directory: Path
    on_epoch: EpochCallback | None

    def epochs(self, record: RunRecord, history: list[dict[str, float]]) -> None:
        total = self.settings.epochs
        for epoch in range(len(history) + 1, total + 1):
            started = time.perf_counter()
            loss = self._train_epoch(epoch)
            labels, scores = predict(
                self.model, self.store, self.tokens, self.rows[1], self.settings.batch_size, self.device
            )
            val_map = mean_average_precision(labels, scores)
            if not history or val_map > _best(history)["val_mAP"]:
                save_best(self.directory, self.model)
            entry = {
                "epoch": epoch,
                "train_loss": loss,
                "val_mAP": val_map,
                "seconds": round(time.perf_counter() - started, 2),
            }
            history.append(entry)
            record.history, record.best_epoch = history, int(_best(history)["epoch"])
            record.complete = epoch == total
            save_checkpoint(self.directory, self.model, self.optimizer, record)  # the commit point
            write_record(self.directory, record)  # a readable copy for people and tools
            if self.on_epoch:
                self.on_epoch(entry, total)

    def _train_epoch(self, epoch: int) -> float:
        """One pass over the train rows; returns the mean batch loss."""
        cfg = self.settings
        rng = np.random.default_rng([self.seed, epoch])
        torch.manual_seed(self.seed * 100_003 + epoch)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        self.model.train()
        total, batches = 0.0, 0
        with progress(f"epoch {epoch}/{cfg.epochs}", int(self.rows[0].sum())) as advance:
            for batch in iter_batches(self.store, self.tokens, self.rows[0], cfg.batch_size, rng):
                self.optimizer.zero_grad()
                logits = self.model(batch.ids.to(self.device), batch.lengths.to(self.device))
                loss = loss_fn(logits, batch.labels.to(self.device))
                loss.backward()
                self.optimizer.step()
                total, batches = total + loss.item(), batches + 1
                advance(len(batch.rows))
        return total / max(batches, 1)
