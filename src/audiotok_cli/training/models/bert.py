"""`bert`: `transformers.BertModel` over [CLS] + tokens with a real attention mask."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel

from audiotok_cli.audioset.classes import N_CLASSES
from audiotok_cli.training.models.ids import CLS_ID, N_SPECIAL, PAD_ID
from audiotok_cli.training.models.spec import ModelSpec


class BertClassifier(nn.Module):
    """`BertModel` over [CLS] + tokens with a real attention mask; [CLS] -> linear -> logits."""

    def __init__(
        self,
        n_tokens: int,
        max_frames: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=n_tokens + N_SPECIAL,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=4 * hidden_size,
            max_position_embeddings=max_frames + 1,  # every frame of a full clip, plus [CLS]
            type_vocab_size=1,
            pad_token_id=PAD_ID,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        self.bert = BertModel(config, add_pooling_layer=False)
        self.head = nn.Linear(hidden_size, N_CLASSES)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cls = torch.full((ids.shape[0], 1), CLS_ID, dtype=ids.dtype, device=ids.device)
        ids = torch.cat([cls, ids], dim=1)
        hidden = self.bert(input_ids=ids, attention_mask=(ids != PAD_ID).long()).last_hidden_state
        return self.head(hidden[:, 0])


def build(spec: ModelSpec) -> nn.Module:
    return BertClassifier(
        spec.n_tokens, spec.max_frames, spec.hidden_size, spec.num_layers, spec.num_heads, spec.dropout
    )
