"""`simple`: a bag of token embeddings, averaged over true frames, then a linear head."""

from __future__ import annotations

import torch
from torch import nn

from audiotok_cli.training.models.ids import N_SPECIAL, PAD_ID, embed_steps, step_ids
from audiotok_cli.training.models.spec import ModelSpec


class MeanPoolClassifier(nn.Module):
    def __init__(self, n_tokens: int, embed_dim: int, dropout: float, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tokens + N_SPECIAL, embed_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, n_classes)

    @property
    def token_embeddings(self) -> nn.Embedding:
        """Where token mixup mixes two clips."""
        return self.embed

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (step_ids(ids) != PAD_ID).unsqueeze(-1)
        summed = (embed_steps(self.embed, ids) * mask).sum(dim=1)
        return self.head(self.dropout(summed / lengths.clamp(min=1).unsqueeze(-1)))


def build(spec: ModelSpec) -> nn.Module:
    return MeanPoolClassifier(spec.n_tokens, spec.embed_dim, spec.dropout, spec.n_classes)
