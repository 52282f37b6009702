"""Units the tool learns, HuBERT's recipe with no download: `pretrain --input frames --targets
VOCAB` trains a frame transformer to predict a vocabulary's ids at masked spans of frames (HuBERT:
p = 0.08 of the steps start a span of 10; a learned mask embedding; cross-entropy at masked steps,
one softmax a codebook for pq/rvq targets). `featurize --encoder RUN --layer L` then makes a
features group of that run's layer-L states, which `vocab` clusters into the next iteration's
targets (HuBERT: MFCC k-means, then layer 6 with k 500).

It learns from every featurized clip outside val and test, labelled or not: val's masked-prediction
loss picks the best epoch, and its accuracy is the run's figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiotok_cli.audio.transforms import FrameTransforms
from audiotok_cli.errors import MissingInputError, SettingsError
from audiotok_cli.store import PaddedSet, Pick, Store
from audiotok_cli.training.data import Batch, BatchReader, ModelInputs, frame_statistics
from audiotok_cli.training.inputs import frame_run_inputs
from audiotok_cli.training.loop import Job, TrainResult, fit, start_record
from audiotok_cli.training.models.bert import FrameMaskedUnits
from audiotok_cli.training.models.frames import time_mask
from audiotok_cli.training.models.spec import ModelSpec
from audiotok_cli.training.pretrain import NOT_FOR_PRETRAINING, masked_validation
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.run_names import run_directory
from audiotok_cli.training.runs import read_record
from audiotok_cli.training.unit_frames import MODEL_TYPE

MASK_START, MASK_SPAN = 0.08, 10  # HuBERT's: about half the steps end up masked


def span_mask(lengths: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[batch, steps] True on masked steps: each valid step starts a span of MASK_SPAN steps with
    probability MASK_START (at least one span a clip), spans cut at the clip's end."""
    valid = time_mask(lengths, steps)
    starts = (torch.rand(valid.shape, generator=generator) < MASK_START) & valid
    lonely = ~starts.any(dim=1) & (lengths > 0)
    if lonely.any():
        first = (torch.rand(len(lengths), generator=generator) * lengths.clamp(min=1)).long()
        starts[lonely, first[lonely]] = True
    padded = nn.functional.pad(starts.float(), (MASK_SPAN - 1, 0))
    return (padded.unfold(1, MASK_SPAN, 1).amax(dim=-1) > 0) & valid


@dataclass
class FramesWithTargets(ModelInputs):
    """Frames with the ids to predict riding along as their last `books` channels (-1 past each
    clip's end), so every batching path (shards joined, DDP shares, read-ahead workers) keeps a
    frame and its target together by construction."""

    targets: PaddedSet | None = None

    def shard_tensor(self, shard: int, keep: np.ndarray, shard_lengths: np.ndarray) -> torch.Tensor:
        frames = super().shard_tensor(shard, keep, shard_lengths)
        ids = self.targets.read_data(shard, shard_lengths)[keep]
        ids = torch.from_numpy(ids.reshape(len(keep), ids.shape[1], -1).astype(np.float32))
        return torch.cat([frames, ids], dim=-1)


@dataclass
class MaskedUnits:
    """The task: cross-entropy on the target ids at masked steps; val loss and accuracy on val
    clips masked the same way every epoch (a fixed generator), so epochs compare."""

    books: int
    score: str = "val_loss"

    def split(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return inputs[..., : -self.books], inputs[..., -self.books :].long()

    def loss(self, model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
        frames, targets = self.split(batch.inputs)
        masked = span_mask(batch.lengths, frames.shape[1])
        return self._predicted(model, frames, batch.lengths, masked, targets, device)[0]

    def _predicted(
        self,
        model: nn.Module,
        frames: torch.Tensor,
        lengths: torch.Tensor,
        masked: torch.Tensor,
        targets: torch.Tensor,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss over the masked steps' targets, the ids guessed there and those targets."""
        frames, lengths, masked, targets = (t.to(device) for t in (frames, lengths, masked, targets))
        logits = model(frames, lengths, masked)
        chosen = masked[..., None] & (targets >= 0)
        picked, wanted = logits[chosen].float(), targets[chosen]
        return nn.functional.cross_entropy(picked, wanted), picked.argmax(-1), wanted

    def validate(
        self, model: nn.Module, reader: BatchReader, rows: np.ndarray, batch_size: int, device: torch.device
    ) -> dict[str, float]:
        return masked_validation(model, reader.batches(rows, batch_size), self._guessed, device)

    def _guessed(
        self, model: nn.Module, batch: Batch, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames, targets = self.split(batch.inputs)
        masked = span_mask(batch.lengths, frames.shape[1], generator)
        return self._predicted(model, frames, batch.lengths, masked, targets, device)


def pretrain_units(request: RunRequest, targets: str | None = None) -> TrainResult:
    """Train a frame BERT to predict the ids of tokens `targets` (a vocabulary's) at masked spans of
    frames, into `{runs_dir}/{run_name or units-TARGETS}`; or resume it. The frames are those the
    targets were made from (with the vocabulary's per-clip transforms), or `pick.features`, of the
    same frame count (HuBERT's second iteration: log-mel frames, targets from the first's units)."""
    paths, model, settings, pick = request.paths, request.model, request.train, request.pick
    if targets is None or pick.name or pick.k:
        raise SettingsError(
            "pretrain --input frames predicts the ids of a vocabulary's tokens: name them with --targets "
            "VOCAB (not --vocab or --k); --features chooses its frames"
        )
    refused = [name for name, off in NOT_FOR_PRETRAINING.items() if getattr(settings, name) != off]
    if refused or model.kind != "bert":
        flags = ", ".join("--" + name.replace("_", "-") for name in refused) or f"--model {model.kind}"
        raise SettingsError(f"{flags}: masked unit prediction trains --model bert and masks spans itself")
    store = Store.open(paths.store)
    tokens = store.tokens(Pick(targets))
    vocab = store.vocab_record(tokens.record.vocab)
    features = store.features(pick.features or tokens.record.features)
    own = _own_transforms(store, vocab.transforms, tokens.record.features, features.name)
    transforms = FrameTransforms(model.frame_transforms or own).per_clip
    if tokens.record.merges or transforms.shortens:
        raise SettingsError(
            f"targets {targets!r} are not one id a frame (merged, or pooled: {', '.join(vocab.transforms)}); "
            "choose a vocabulary without merges or pool:M"
        )
    lengths = features.all_lengths()
    if not np.array_equal(np.where(lengths > 0, tokens.all_lengths(), 0), np.clip(lengths, 0, None)):
        raise MissingInputError(
            f"tokens {targets!r} do not cover every featurized clip of {features.name!r}; "
            f"run `audiotok tokenize --vocab {tokens.record.vocab}`"
        )
    val, test = store.split_rows(lengths, "val"), store.split_rows(lengths, "test")
    train = (lengths > 0) & ~val & ~test  # unlabelled and unassigned clips too
    if not train.any() or not val.any():
        raise MissingInputError(
            f"masked unit prediction needs featurized clips outside the test split and some in val, in "
            f"{store.path}; run `audiotok split`"
        )
    mean, std = frame_statistics(features, train, transforms)
    inputs = FramesWithTargets(features, "frames", mean, std, transforms, targets=tokens)
    spec = ModelSpec(
        input="frames",
        n_mels=transforms.dim(features.data.shape[2]),
        max_frames=features.data.shape[1],
        n_classes=len(store.classes),
        target_k=vocab.n_clusters,
        target_codebooks=tokens.record.codebooks,
        **model.model_dump(exclude={"vocab_size", "frame_transforms", "input"}),
    )
    run_inputs = frame_run_inputs(store, features, transforms).model_copy(
        update={"targets": tokens.name, "targets_fingerprint": tokens.record.vocab_fingerprint}
    )
    record = start_record(run_inputs, spec, settings, request.seed, "masked-units")
    record.member = request.member  # the set `pretrain --seeds` planned it in
    name = units_run_name(tokens.name)
    directory = run_directory(paths.runs_dir, settings.run_name, name, record, request.overwrite)
    job = Job(
        directory, "pretrain", record, store, inputs, (train, val), {"mean": mean, "std": std},
        lambda: FrameMaskedUnits(spec),
    )  # fmt: skip
    return fit(job, MaskedUnits(spec.target_codebooks), request)


def units_run_name(targets: str) -> str:
    """A units run's name without --run-name (`pretrain --seeds` appends `-seedS` to it)."""
    return f"units-{targets}"


def _own_transforms(
    store: Store, vocab_transforms: list[str], target_features: str, frames: str
) -> tuple[str, ...]:
    """The per-clip transforms the frames get unless `--frame-transform` says: the target
    vocabulary's own, where it was made from these frames; where its frames are a units run's states
    of these frames (HuBERT's next iteration), the transforms that run read them with: the next
    iteration learns from the input the first did."""
    if target_features == frames:
        return tuple(vocab_transforms)
    made = store.features(target_features).record
    if made.encoder is None or made.encoder.model_type != MODEL_TYPE:
        return ()
    run = read_record(Path(made.audio.encoder))
    return tuple(run.inputs.transforms) if run and run.inputs.features == frames else ()
