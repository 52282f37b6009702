"""`bert`: `transformers.BertModel` over [CLS] + tokens, or over [CLS] + log-mel frames linearly
projected into its input embeddings ("skip tokenization"); a real attention mask either way. And
the frame encoder's HuBERT-style pretraining model (`FrameMaskedUnits`)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertModel

from audiotok_cli.training.models.frames import front_end, time_mask
from audiotok_cli.training.models.ids import CLS_ID, N_SPECIAL, PAD_ID, cls_then_steps
from audiotok_cli.training.models.spec import ModelSpec


def bert_config(spec: ModelSpec) -> BertConfig:
    """The encoder's config: token ids (or, for frames, only the special ids) and a position table
    holding every frame of a full clip plus [CLS]."""
    return BertConfig(
        vocab_size=spec.n_tokens + N_SPECIAL,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=4 * spec.hidden_size,
        max_position_embeddings=spec.max_frames + 1,
        type_vocab_size=1,
        pad_token_id=PAD_ID,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.dropout,
        attn_implementation="sdpa",  # torch's fused attention: flash or memory-efficient kernels on GPU
    )


class BertClassifier(nn.Module):
    """[CLS] + tokens -> `BertModel` -> [CLS] -> linear -> logits."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.bert = BertModel(bert_config(spec), add_pooling_layer=False)
        self.head = nn.Linear(spec.hidden_size, spec.n_classes)

    @property
    def token_embeddings(self) -> nn.Embedding:
        """Where token mixup mixes two clips."""
        return self.bert.embeddings.word_embeddings

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if ids.dim() == 3:  # several codebooks a step: the step's embedding is the sum of theirs
            embeds, mask = cls_then_steps(self.bert.embeddings.word_embeddings, ids)
            hidden = self.bert(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            return self.head(hidden[:, 0])
        cls = torch.full((ids.shape[0], 1), CLS_ID, dtype=ids.dtype, device=ids.device)
        ids = torch.cat([cls, ids], dim=1)
        hidden = self.bert(input_ids=ids, attention_mask=(ids != PAD_ID).long()).last_hidden_state
        return self.head(hidden[:, 0])


class FrameBertClassifier(nn.Module):
    """[CLS] + projected frames -> `BertModel` (same [CLS] embedding, mask and positions) -> head."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.front, width = front_end(spec)
        self.project = nn.Linear(width, spec.hidden_size)
        self.bert = BertModel(bert_config(spec), add_pooling_layer=False)
        self.head = nn.Linear(spec.hidden_size, spec.n_classes)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.front is not None:
            frames = self.front(frames, lengths)
        cls_id = torch.full((frames.shape[0], 1), CLS_ID, device=frames.device)
        embeds = torch.cat([self.bert.embeddings.word_embeddings(cls_id), self.project(frames)], dim=1)
        mask = torch.cat([torch.ones_like(cls_id, dtype=torch.bool), time_mask(lengths, frames.shape[1])], 1)
        hidden = self.bert(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        return self.head(hidden[:, 0])


class FrameMaskedUnits(nn.Module):
    """HuBERT's masked prediction over frames: [CLS] + projected frames, the masked steps' inputs
    replaced by one learned mask embedding, and at every step one softmax over k per target
    codebook. `front`, `project` and `bert` are FrameBertClassifier's, named alike, so `train
    --init` starts a frame classifier from them and `featurize --encoder RUN` reads their layers."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.front, width = front_end(spec)
        self.project = nn.Linear(width, spec.hidden_size)
        self.bert = BertModel(bert_config(spec), add_pooling_layer=False)
        self.mask_embedding = nn.Parameter(torch.rand(spec.hidden_size))  # HuBERT: uniform in [0, 1)
        self.books, self.k = spec.target_codebooks, spec.target_k
        self.heads = nn.Linear(spec.hidden_size, self.books * self.k)

    def hidden_states(
        self, frames: torch.Tensor, lengths: torch.Tensor, masked: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Every layer's states `[batch, 1 + steps, hidden]` (0: the embeddings; [CLS] first)."""
        if self.front is not None:
            frames = self.front(frames, lengths)
        projected = self.project(frames)
        if masked is not None:
            projected = torch.where(masked[..., None], self.mask_embedding.to(projected.dtype), projected)
        cls_id = torch.full((frames.shape[0], 1), CLS_ID, device=frames.device)
        embeds = torch.cat([self.bert.embeddings.word_embeddings(cls_id), projected], dim=1)
        mask = torch.cat([torch.ones_like(cls_id, dtype=torch.bool), time_mask(lengths, frames.shape[1])], 1)
        return self.bert(
            inputs_embeds=embeds, attention_mask=mask.long(), output_hidden_states=True
        ).hidden_states

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Logits `[batch, steps, codebooks, k]` of every step's target ids."""
        last = self.hidden_states(frames, lengths, masked)[-1][:, 1:]
        return self.heads(last).unflatten(-1, (self.books, self.k))


def build(spec: ModelSpec) -> nn.Module:
    return FrameBertClassifier(spec) if spec.input == "frames" else BertClassifier(spec)


def build_masked_lm(spec: ModelSpec) -> BertForMaskedLM:
    """The pretraining model: the same encoder (`bert.*`, what `train --init` loads) under
    transformers' masked-token head (`cls.*`, its decoder tied to the token embeddings)."""
    return BertForMaskedLM(bert_config(spec))
