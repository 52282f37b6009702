"""`train`: a token or frame model on the train split (softmax cross-entropy for single-label
collections, multi-label BCE for AudioSet), keeping the best epoch by val mAP (or the average of
the last epochs' weights)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from audiotok_cli.errors import AlreadyTrained, MismatchError, MissingInputError, SettingsError
from audiotok_cli.progress import progress
from audiotok_cli.settings import ModelSettings, TrainSettings
from audiotok_cli.store import ReaderLease, Store, WriterLock
from audiotok_cli.training.augment import Augment, mixing_embeddings
from audiotok_cli.training.data import (
    Batch,
    BatchReader,
    ModelInputs,
    balanced_weights,
    cpu_threads,
    reader_workers,
    score_rows,
)
from audiotok_cli.training.distributed import (
    Ranks,
    barrier,
    from_main,
    mean_over_ranks,
    rank_device,
    ranks,
    wrap,
)
from audiotok_cli.training.inputs import TrainingInputs, inputs_for_training
from audiotok_cli.training.metrics import accuracy, mean_average_precision
from audiotok_cli.training.models import build_model
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.monitor import RunMonitor, board_from_log
from audiotok_cli.training.objectives import CLASSIFICATION
from audiotok_cli.training.request import EpochCallback, RunRequest
from audiotok_cli.training.run_names import run_directory
from audiotok_cli.training.runs import (
    CHECKPOINT,
    REPORT,
    WEIGHTS,
    AveragedWeights,
    RunInputs,
    RunRecord,
    average_weights,
    init_encoder,
    keep_recent_weights,
    load_checkpoint,
    pick_device,
    read_record,
    save_best,
    save_checkpoint,
    settings_differences,
    settings_key,
    sized_like_init,
    write_inputs,
    write_record,
)
from audiotok_cli.training.schedule import lr_factor, warmup_steps

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    score: str  # the history key that chose the best epoch: val_mAP, or val_loss when pretraining
    best_score: float
    history: list[dict[str, float]]
    averaged: AveragedWeights | None = None
    scores: dict[str, float] | None = None  # its eval's headline scores, where it was scored


class Task(Protocol):
    """What a run learns: its loss on a batch and its val scores (`score` picks the best epoch:
    the highest, or the lowest for a score named *loss)."""

    score: str

    def loss(self, model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor: ...

    def validate(
        self, model: nn.Module, reader: BatchReader, rows: np.ndarray, batch_size: int, device: torch.device
    ) -> dict[str, float]: ...


@dataclass
class Classification:
    """Softmax cross-entropy (`ce`: one class a clip) or multi-label BCE over the store's classes,
    scored by val mAP; augmentation applies here."""

    augment: Augment
    loss_name: str = "bce"
    score: str = "val_mAP"

    def loss(self, model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
        inputs, lengths, labels = (t.to(device) for t in (batch.inputs, batch.lengths, batch.labels))
        inputs, lengths, labels, mix = self.augment.batch(inputs, lengths, labels)
        with mixing_embeddings(model, mix):
            logits = model(inputs, lengths).float()
        if self.loss_name == "ce":  # soft targets: mixup's mixed labels are a distribution too
            targets = labels / labels.sum(dim=1, keepdim=True).clamp_min(1e-12)
            return nn.functional.cross_entropy(logits, targets)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)

    def validate(
        self, model: nn.Module, reader: BatchReader, rows: np.ndarray, batch_size: int, device: torch.device
    ) -> dict[str, float]:
        labels, scores = score_rows(model, reader, rows, batch_size, device, self.loss_name)
        top = accuracy(labels, scores)
        return {"val_mAP": mean_average_precision(labels, scores)} | (
            {} if top is None else {"val_accuracy": top}
        )


@dataclass
class Job:
    """One run to fit: where it goes, what it reads, and the network with its record."""

    directory: Path
    command: str
    record: RunRecord
    store: Store
    inputs: ModelInputs
    rows: tuple[np.ndarray, np.ndarray]  # train, val masks
    preprocessing: dict[str, np.ndarray]
    build: Callable[[], nn.Module]  # seeded by the caller; loads an --init encoder, sets head biases


@dataclass
class Planned:
    """A classification run before it trains: its record (the identity a rerun is matched by),
    default name, and what it reads."""

    record: RunRecord
    default_name: str
    store: Store
    chosen: TrainingInputs
    rows: tuple[np.ndarray, np.ndarray]  # train, val masks
    model: ModelSettings  # as given, with the encoder sizes of an --init run filled in


def plan_run(request: RunRequest) -> Planned:
    """What `train` would train, without training: `--seeds` and `--cv` match finished runs by it."""
    paths, model, pick, init = request.paths, request.model, request.pick, request.init
    if None not in (model.vocab_size, pick.k) and model.vocab_size != pick.k:
        raise SettingsError(f"model.vocab_size {model.vocab_size} != --k {pick.k}; they must agree")
    if init:
        model = sized_like_init(paths.runs_dir, init, model)
    store = Store.open(paths.store)
    chosen = inputs_for_training(store, model, pick)
    padded = chosen.model_inputs.padded
    lengths = padded.all_lengths()
    rows = store.split_rows(lengths, "train"), store.split_rows(lengths, "val")
    what = "tokenized" if model.input == "tokens" else "featurized"
    if not rows[0].any():
        raise MissingInputError(f"no {what} train clips in {store.path}; run `audiotok split`")
    if not rows[1].any():
        raise MissingInputError(
            f"no {what} val clips in {store.path}; run `audiotok split` with a larger --val-ratio"
        )
    settings = request.train.model_copy(update={"loss": resolved_loss(request.train.loss, store)})
    record = start_record(chosen.record, chosen.spec(model), settings, request.seed, CLASSIFICATION, init)
    record.member = request.member
    return Planned(record, default_run_name(model, padded.name), store, chosen, rows, model)


def resolved_loss(loss: str, store: Store) -> str:
    """`auto`: softmax cross-entropy where every labelled clip has one class (ESC-50, digits: what
    their papers train), BCE where clips may have several (AudioSet)."""
    if loss != "auto":
        return loss
    return "ce" if store.single_label() else "bce"


def train(request: RunRequest) -> TrainResult:
    """Train on what `request.pick` chooses (default: the store's only tokens, or only features for
    frame models) into `{runs_dir}/{run_name or model-input}`, or resume an interrupted run with the
    same settings from its last finished epoch; `request.init` names a pretraining run whose encoder
    the model starts from."""
    paths, settings, init = request.paths, request.train, request.init
    pick_device(settings.device)  # a missing GPU is refused before any work
    planned = plan_run(request)
    record, store, rows = planned.record, planned.store, planned.rows
    augment = Augment.of(settings, planned.model.input)
    directory = run_directory(
        paths.runs_dir, settings.run_name, planned.default_name, record, request.overwrite
    )
    encoder = init_encoder(paths.runs_dir, init, record) if init else None
    prior = store.label_prior(rows[0])
    spec = record.model

    def build() -> nn.Module:
        network = build_model(spec)
        if encoder is not None:
            unused = network.load_state_dict(encoder, strict=False).unexpected_keys
            if unused:
                raise MismatchError(
                    f"--init {init} holds weights this model has not: {', '.join(unused[:3])}"
                )
        init_head_bias(network, prior, record.loss)
        return network

    chosen = planned.chosen
    job = Job(directory, "train", record, store, chosen.model_inputs, rows, chosen.preprocessing, build)
    return fit(job, Classification(augment, record.loss), request)


def default_run_name(model: ModelSettings, inputs: str) -> str:
    """`lstm-logmel-k64`, `cnn-logmel`: the model and what it reads."""
    return f"{model.kind}-{inputs}"


def fit(job: Job, task: Task, request: RunRequest) -> TrainResult:
    """Fit `job` for `task` in its run folder, or resume it from its last finished epoch; one
    rank of a DDP run under torchrun (see `distributed`)."""
    settings = request.train
    device = pick_device(settings.device)
    with ranks(device) as here:
        # the DDP wrapper lives in _fit_rank's frame alone: it is gone before `ranks` destroys
        # the process group (see `distributed.ranks`)
        history = _fit_rank(
            job, task, settings, request.seed, request.overwrite, request.on_epoch, here, device
        )
    best = _best(history, task.score)
    if here.main and len(history) > 1 and best["epoch"] == history[-1]["epoch"]:
        log.warning(
            "%s: its best epoch is its last (%d): the model may still be improving; more --epochs may "
            "change a comparison", job.directory.name, len(history),
        )  # fmt: skip
    return TrainResult(
        job.directory, int(best["epoch"]), task.score, best[task.score], history, job.record.averaged
    )


def _fit_rank(
    job: Job,
    task: Task,
    settings: TrainSettings,
    seed: int,
    overwrite: bool,
    on_epoch: EpochCallback | None,
    here: Ranks,
    device: torch.device,
) -> list[dict[str, float]]:
    """This rank's part of `fit`: the run's epochs, finished or resumed; its history."""
    device = rank_device(device, here)
    record = job.record
    with (
        WriterLock(job.directory, job.command) if here.main else nullcontext(),
        ReaderLease(job.store.path, read_groups(record.inputs), job.command) if here.main else nullcontext(),
        cpu_threads(settings.threads, here.local_world) as threads,
    ):
        record.threads = threads if device.type == "cpu" else None
        history = _resumable_history(job.directory, record, overwrite, settings.tensorboard)
        if not history and here.main:
            (job.directory / REPORT).unlink(missing_ok=True)
            record.digests = write_inputs(job.directory, job.preprocessing, job.store.classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = job.build()
            record.n_parameters = sum(p.numel() for p in network.parameters())
            network.to(device)
            optimizer = torch.optim.AdamW(
                network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
            )
            if history:
                load_checkpoint(job.directory, network, optimizer)
                if here.main:  # said: a run picked up from an earlier process is never a surprise
                    log.warning(
                        "resuming %s after epoch %d of %d", job.directory, len(history), settings.epochs
                    )
            workers = reader_workers(settings.loader_workers, device, here.local_world)
            with BatchReader(job.store, job.inputs, workers) as reader:
                balanced = settings.sampler == "balanced"
                epochs = _Fit(
                    settings=settings,
                    seed=seed,
                    reader=reader,
                    model=network,
                    trainer=wrap(network, device, here),
                    optimizer=optimizer,
                    rows=job.rows,
                    device=device,
                    directory=job.directory,
                    on_epoch=on_epoch if here.main else None,
                    task=task,
                    weights=balanced_weights(reader.labels, job.rows[0]) if balanced else None,
                    here=here,
                )
                epochs.epochs(record, history)
    return history


def read_groups(inputs: RunInputs) -> list[str]:
    """The store groups a run reads while it trains: none may be replaced under it."""
    if inputs.input == "tokens":
        return [f"tokens/{inputs.tokens}", f"vocab/{inputs.tokens}"]  # tokens are named after their vocab
    return [f"features/{inputs.features}"] + [f"tokens/{inputs.targets}"] * (inputs.targets is not None)


def init_head_bias(model: nn.Module, label_prior: np.ndarray, loss: str = "bce") -> None:
    """Start each class's logit at its train-split log-odds (BCE) or log-frequency (softmax).

    With 527 mostly-absent classes, a zero bias spends the first updates learning "everything is
    absent", and the LSTM and BERT then stall at the prior (measured on the demo: val mAP 0.33 vs
    0.87 for the LSTM with this start).
    """
    prior = np.clip(label_prior, 1e-4, 1 - 1e-4)
    bias = np.log(prior) if loss == "ce" else np.log(prior / (1 - prior))
    with torch.no_grad():
        model.head.bias.copy_(torch.from_numpy(bias).float())


def _best(history: list[dict[str, float]], score: str) -> dict[str, float]:
    """The epoch with the best `score` (the first of equals)."""
    return max(history, key=lambda epoch: _goodness(epoch, score))


def _goodness(entry: dict[str, float], score: str) -> float:
    """Higher is better: a score named *loss (pretraining's val_loss) counts negated."""
    return -entry[score] if score.endswith("loss") else entry[score]


# Where a run trains and how it is watched, never what it learns: not part of a run's identity, so
# `--tensorboard` on finished runs keeps them (W&B and MLflow never let logging change a run), and a
# moved store or another worker count resumes the same run. `threads` is kept in the record apart:
# BERT's and the CNN's last bits on a CPU depend on it.
NOT_IDENTITY = ("device", "run_name", "loader_workers", "threads", "tensorboard")


def start_record(
    inputs: RunInputs,
    spec: ModelSpec,
    settings: TrainSettings,
    seed: int,
    objective: str,
    init: str | None = None,
) -> RunRecord:
    """What makes a run; a rerun resumes only a run whose `resume_key` matches. The objective is
    named in the record; its identity is the task and inputs it implies."""
    shaping = settings.model_dump(exclude=set(NOT_IDENTITY))
    task = "classify" if objective == CLASSIFICATION else "pretrain"
    record = RunRecord(
        model=spec, inputs=inputs, train=shaping, seed=seed, task=task, init=init, resume_key="",
        objective=objective,
    )  # fmt: skip
    record.resume_key = settings_key(record, with_seed=True)
    return record


def _resumable_history(
    directory: Path, record: RunRecord, overwrite: bool, tensorboard: bool = False
) -> list[dict[str, float]]:
    """Epochs already done by an interrupted run with these settings ([] for a fresh run); `record`
    takes over the digests of its files. A run of other settings is never resumed nor reported; a
    finished one asked for TensorBoard gets its event files from the history it logged."""
    if overwrite:
        return []
    previous = read_record(directory)
    if previous is None:
        return []
    if previous.resume_key != record.resume_key:
        raise MismatchError(
            f"run {directory} was made with other settings ({settings_differences(previous, record)}); "
            "pass --overwrite to replace it, or another --run-name"
        )
    if previous.complete:
        board = f"; its TensorBoard event files are in {board_from_log(directory)}" if tensorboard else ""
        raise AlreadyTrained(
            f"run {directory} is already trained with these settings{board}; pass --overwrite to train "
            "it again, or another --run-name"
        )
    if not (directory / CHECKPOINT).exists():
        raise MismatchError(f"run {directory} was interrupted before its first epoch; pass --overwrite")
    record.digests = previous.digests  # of the files the interrupted run wrote, which resuming keeps
    return previous.history


@dataclass
class _Fit:
    """The epoch loop. Each epoch draws its randomness from (seed, epoch), so a resumed run
    matches an uninterrupted one; after each epoch the best weights, the checkpoint and then the
    record are written."""

    settings: TrainSettings
    seed: int
    reader: BatchReader
    model: nn.Module  # what is saved and scored
    trainer: nn.Module  # what the training step calls: the model, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    rows: tuple[np.ndarray, np.ndarray]
    device: torch.device
    directory: Path
    on_epoch: EpochCallback | None
    task: Task
    weights: np.ndarray | None  # balanced sampling weights of the train rows
    here: Ranks

    def epochs(self, record: RunRecord, history: list[dict[str, float]]) -> None:
        total, score, main = self.settings.epochs, self.task.score, self.here.main
        first_step = len(history) * self.steps_per_epoch
        shown = RunMonitor(self.directory, len(history), first_step, self.settings.tensorboard, main)
        with shown as monitor:
            for epoch in range(len(history) + 1, total + 1):
                if _patience_ran_out(history, self.settings.patience, score):
                    break
                started = time.perf_counter()
                entry = self._train_epoch(epoch, monitor)
                entry |= from_main(self._validate() if main else None, self.here)  # scored once
                entry["seconds"] = round(time.perf_counter() - started, 2)
                better = not history or _goodness(entry, score) > _goodness(_best(history, score), score)
                if better and main:
                    record.digests[WEIGHTS] = save_best(self.directory, self.model)
                history.append(entry)
                record.history, record.best_epoch = history, int(_best(history, score)["epoch"])
                record.complete = epoch == total or _patience_ran_out(history, self.settings.patience, score)
                if main:
                    self._commit(record, history, entry, monitor)
                barrier(self.here)  # no rank runs ahead of rank 0's checkpoint
                if self.on_epoch:
                    self.on_epoch(entry, total)
                if record.complete:
                    break

    def _commit(
        self, record: RunRecord, history: list[dict[str, float]], entry: dict[str, float], monitor: RunMonitor
    ) -> None:
        """Rank 0 writes the epoch: averaged weights, curves, then the checkpoint (the commit
        point: a resume drops the curves' lines of an epoch with no checkpoint), then run.json."""
        if self.settings.average_last:
            self._average(record, int(entry["epoch"]))
        monitor.epoch(entry, history)
        save_checkpoint(self.directory, self.model, self.optimizer, record)
        write_record(self.directory, record)  # a readable copy for people and tools

    @property
    def rows_per_rank(self) -> int:
        return -(-int(self.rows[0].sum()) // self.here.world)

    @property
    def steps_per_epoch(self) -> int:
        batches = -(-self.rows_per_rank // self.settings.batch_size)
        return -(-batches // self.settings.accumulate)

    def _train_epoch(self, epoch: int, monitor: RunMonitor) -> dict[str, float]:
        """One pass over the train rows (or as many balanced draws): the epoch's entry with the
        mean batch loss, the last learning rate and throughput. The learning rate is a function of
        the optimizer step alone, so a resumed run needs no scheduler state; `accumulate` batches
        make one step."""
        cfg = self.settings
        rng = np.random.default_rng([self.seed, epoch])  # the same plan on every rank
        torch.manual_seed(self.seed * 100_003 + epoch + self.here.rank * 1_000_003)  # own dropout, masks
        self.model.train()
        all_steps = self.steps_per_epoch * cfg.epochs
        warmup = warmup_steps(all_steps, cfg.warmup_steps, cfg.warmup_ratio)
        step, lr = (epoch - 1) * self.steps_per_epoch, cfg.learning_rate
        total, batches, samples = 0.0, 0, 0

        def optimizer_step() -> None:
            nonlocal step, lr
            lr = cfg.learning_rate * lr_factor(step, all_steps, warmup, cfg.schedule)
            self._step(lr)
            monitor.step(epoch, step, loss.item(), lr)
            step += 1

        read_before = self.reader.counts()
        started = time.perf_counter()
        part = (self.here.rank, self.here.world)
        expected = -(-self.rows_per_rank // cfg.batch_size)  # batches, the same on every rank
        with progress(f"epoch {epoch}/{cfg.epochs}", self.rows_per_rank) as advance:
            for index, batch in enumerate(
                self.reader.batches(
                    self.rows[0], cfg.batch_size, rng, self.weights, part, cfg.bucket_by_length
                )
            ):
                steps = (index + 1) % cfg.accumulate == 0 or index + 1 == expected
                with self._gradients(synced=steps):
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                        loss = self.task.loss(self.trainer, batch, self.device)
                    (loss / cfg.accumulate).backward()
                total, batches, samples = total + loss.item(), batches + 1, samples + len(batch.rows)
                if (index + 1) % cfg.accumulate == 0:
                    optimizer_step()
                advance(len(batch.rows))
        if batches != expected:  # a rank stepping on gradients it never shared would drift silently
            raise RuntimeError(
                f"epoch {epoch} read {batches} batches on rank {self.here.rank}, not {expected}"
            )
        if batches % cfg.accumulate:  # the epoch's last, partial accumulation
            optimizer_step()
        return {
            "epoch": epoch,
            "step": step,
            "train_loss": mean_over_ranks(total, batches, self.here),
            "learning_rate": lr,
            "samples_per_s": round(samples * self.here.world / (time.perf_counter() - started), 1),
            "reader_samples_per_s": round(self.reader.samples_per_second(read_before) * self.here.world, 1),
        }

    def _gradients(self, synced: bool) -> AbstractContextManager:
        """DDP averages the gradients over the ranks at every backward; between the micro-batches
        of one accumulated step that is wasted, so only the step's last backward syncs."""
        return nullcontext() if synced or not self.here.distributed else self.trainer.no_sync()

    def _validate(self) -> dict[str, float]:
        return self.task.validate(
            self.model, self.reader, self.rows[1], self.settings.batch_size, self.device
        )

    def _step(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.settings.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def _average(self, record: RunRecord, epoch: int) -> None:
        """Keep this epoch's weights among the last `average_last`; when the run completes, its
        model becomes their average, scored on val like an epoch."""
        recent = keep_recent_weights(self.directory, self.model, epoch, self.settings.average_last)
        if not record.complete:
            return
        training_weights = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(average_weights(recent))
        scores = self._validate()
        record.averaged = AveragedWeights(
            epochs=[epoch for epoch, _ in recent], score=scores[self.task.score]
        )
        record.digests[WEIGHTS] = save_best(self.directory, self.model)
        self.model.load_state_dict(training_weights)  # the checkpoint keeps the last epoch's

    @property
    def bf16(self) -> bool:
        """bf16 autocast: asked for, or `auto` on CUDA (fp32 on CPU keeps runs reproducible)."""
        precision = self.settings.precision
        return precision == "bf16" or (precision == "auto" and self.device.type == "cuda")


def _patience_ran_out(history: list[dict[str, float]], patience: int, score: str) -> bool:
    """Early stopping: the last `patience` epochs brought no better score than the best before."""
    return bool(patience and history) and len(history) - int(_best(history, score)["epoch"]) >= patience
