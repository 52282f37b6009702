"""`pretrain`: masked-token modelling (BERT's MLM) over tokenized clips with their labels unused,
so the encoder learns from every clip (unbal_train's 2 M included) before `train --init` fine-tunes
it on the labeled ones. A pretraining run is a run folder like any other: resumable, with curves,
listed by `runs` with its val MLM loss and accuracy.

It learns from every tokenized clip outside the val split (its held-out score) and the test split
(the official eval set stays unseen, as published self-supervised AudioSet models keep it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audiotok_cli.errors import MissingInputError, SettingsError
from audiotok_cli.store import Store
from audiotok_cli.training.data import Batch, BatchReader
from audiotok_cli.training.inputs import inputs_for_training
from audiotok_cli.training.loop import Job, TrainResult, fit, start_record
from audiotok_cli.training.models.ids import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID, cls_then_steps, step_ids
from audiotok_cli.training.request import RunRequest
from audiotok_cli.training.run_names import run_directory

MASK_SHARE = 0.15  # of real tokens chosen per clip; of those 80% [MASK], 10% random, 10% kept
IGNORED = -100  # the label of every position the loss skips (transformers' convention)
NOT_FOR_PRETRAINING = {"sampler": "uniform", "mixup": 0.0, "token_mask": 0.0, "time_mask": 0, "freq_mask": 0}


def mask_tokens(
    ids: torch.Tensor, n_tokens: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of model ids: MASK_SHARE of the real tokens are chosen (never [PAD], nor the
    [CLS] the model prepends); 80% of them become [MASK], 10% a random centroid, 10% stay. Labels
    are the chosen tokens' ids and IGNORED elsewhere. With several codebooks a step
    (`[batch, step, codebook]`, `n_tokens` = codebooks x k), whole steps are chosen: every codebook
    of a chosen step is masked (or each replaced by a random id of its own codebook) and labelled."""
    steps = step_ids(ids)

    def uniform(shape: torch.Size = steps.shape) -> torch.Tensor:
        where = generator.device if generator is not None else ids.device
        return torch.rand(shape, generator=generator, device=where).to(ids.device)

    real = steps >= N_SPECIAL
    chosen = (uniform() < MASK_SHARE) & real
    if not chosen.any() and real.any():  # a tiny batch: one token at least, or the loss is NaN
        chosen.view(-1)[real.view(-1).nonzero()[0]] = True
    fate = uniform()
    if ids.dim() == 3:
        books = ids.shape[2]
        k = n_tokens // books
        offsets = torch.arange(books, device=ids.device) * k
        random_ids = N_SPECIAL + offsets + (uniform(ids.shape) * k).long().clamp(max=k - 1)
        chosen, fate = chosen[..., None], fate[..., None]
    else:
        random_ids = N_SPECIAL + (uniform() * n_tokens).long().clamp(max=n_tokens - 1)
    masked = torch.where(chosen & (fate < 0.8), MASK_ID, ids)
    masked = torch.where(chosen & (fate >= 0.8) & (fate < 0.9), random_ids, masked)
    return masked, torch.where(chosen, ids, IGNORED)


def _masked_lm(
    model: nn.Module, masked: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] + masked ids through BertForMaskedLM; [CLS] is never a target. Returns the loss and
    the predicted ids (shaped like `labels`). Several codebooks a step: the step's embedding is the
    sum of its codebooks', and each codebook is predicted by a softmax over its own k ids (a slice
    of the one tied output layer); the loss is the mean over codebooks."""
    if masked.dim() == 2:
        cls = torch.full((masked.shape[0], 1), CLS_ID, dtype=masked.dtype, device=masked.device)
        ids = torch.cat([cls, masked], dim=1)
        labels = torch.cat([torch.full_like(cls, IGNORED), labels], dim=1)
        out = model(input_ids=ids, attention_mask=(ids != PAD_ID).long(), labels=labels)
        return out.loss, out.logits[:, 1:].argmax(-1)
    embeds, mask = cls_then_steps(model.bert.embeddings.word_embeddings, masked)
    logits = model(inputs_embeds=embeds, attention_mask=mask).logits[:, 1:]
    books = masked.shape[2]
    k = (logits.shape[-1] - N_SPECIAL) // books
    per_book, losses = [], []
    for book in range(books):
        start = N_SPECIAL + book * k
        sliced = logits[..., start : start + k]
        target = torch.where(labels[..., book] == IGNORED, IGNORED, labels[..., book] - start)
        losses.append(
            nn.functional.cross_entropy(sliced.reshape(-1, k), target.reshape(-1), ignore_index=IGNORED)
        )
        per_book.append(sliced.argmax(-1) + start)
    return torch.stack(losses).mean(), torch.stack(per_book, dim=-1)


@dataclass
class MaskedTokens:
    """The MLM task: cross-entropy on the chosen tokens; val loss and accuracy on val clips masked
    the same way every epoch (a fixed generator), so epochs compare."""

    n_tokens: int
    score: str = "val_loss"  # accuracy moves in steps on a small val split; the loss does not

    def loss(self, model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
        masked, labels = mask_tokens(batch.inputs.to(device), self.n_tokens)
        return _masked_lm(model, masked, labels)[0]

    def validate(
        self, model: nn.Module, reader: BatchReader, rows: np.ndarray, batch_size: int, device: torch.device
    ) -> dict[str, float]:
        return masked_validation(model, reader.batches(rows, batch_size), self._guessed, device)

    def _guessed(
        self, model: nn.Module, batch: Batch, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        masked, labels = mask_tokens(batch.inputs, self.n_tokens, generator)
        labels = labels.to(device)
        loss, guessed = _masked_lm(model, masked.to(device), labels)
        chosen = labels != IGNORED
        return loss, guessed[chosen], labels[chosen]


Guesses = Callable[
    [nn.Module, Batch, torch.Generator, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]


@torch.no_grad()
def masked_validation(
    model: nn.Module, batches: Iterable[Batch], guesses: Guesses, device: torch.device
) -> dict[str, float]:
    """Val loss and accuracy of a masked-prediction task, its batches masked the same way every
    epoch (a generator seeded alike), so epochs compare; `guesses` gives a batch's mean loss, the
    ids guessed at the masked positions and the ids there."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    loss, correct, count = 0.0, 0, 0
    for batch in batches:
        batch_loss, guessed, wanted = guesses(model, batch, generator, device)
        loss += batch_loss.item() * len(wanted)
        correct += int((guessed == wanted).sum())
        count += len(wanted)
    return {"val_loss": loss / max(count, 1), "val_accuracy": correct / max(count, 1)}


def pretrain(request: RunRequest) -> TrainResult:
    """Pretrain a BERT encoder on the tokens `request.pick` chooses into `{runs_dir}/{run_name or
    pretrain-bert-{vocab}}`, or resume an interrupted pretraining run."""
    paths, model, settings = request.paths, request.model, request.train
    if model.kind != "bert" or model.input != "tokens":
        raise SettingsError(
            f"pretrain trains --model bert on tokens, not {model.kind!r} on {model.input}; frame inputs "
            "are not supported yet"
        )
    refused = [name for name, off in NOT_FOR_PRETRAINING.items() if getattr(settings, name) != off]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise SettingsError(
            f"{flags} shape classifier training; pretrain masks {MASK_SHARE:.0%} of tokens itself"
        )
    store = Store.open(paths.store)
    chosen = inputs_for_training(store, model, request.pick)
    padded = chosen.model_inputs.padded
    lengths = padded.all_lengths()
    val, test = store.split_rows(lengths, "val"), store.split_rows(lengths, "test")
    train = (lengths > 0) & ~val & ~test
    if not train.any() or not val.any():
        raise MissingInputError(
            f"pretraining needs tokenized clips outside the test split and some in val, in {store.path}; "
            "run `audiotok split` and `audiotok tokenize`"
        )
    spec = chosen.spec(model)
    record = start_record(chosen.record, spec, settings, request.seed, "masked-tokens")
    directory = run_directory(
        paths.runs_dir, settings.run_name, f"pretrain-bert-{padded.name}", record, request.overwrite
    )
    from audiotok_cli.training.models.bert import build_masked_lm

    job = Job(
        directory, "pretrain", record, store, chosen.model_inputs, (train, val), chosen.preprocessing,
        lambda: build_masked_lm(spec),
    )  # fmt: skip
    return fit(job, MaskedTokens(spec.n_tokens), request)
