"""Model token ids (the scheme lives in `audiotok_cli.tokenizer.ids`, which `export-tokens` shares):
four reserved ids before the centroids, fixed for every run format-2 model.
"""

from __future__ import annotations

import torch
from torch import nn

from audiotok_cli.tokenizer.ids import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID, SEP_ID

__all__ = [
    "CLS_ID", "MASK_ID", "N_SPECIAL", "PAD_ID", "SEP_ID",
    "cls_then_steps", "embed_steps", "step_ids", "to_model_ids",
]  # fmt: skip


def to_model_ids(tokens: torch.Tensor, codebook_size: int = 0) -> torch.Tensor:
    """Stored ids (centroid or -1) -> model ids (centroid + N_SPECIAL, or PAD_ID). Several ids a
    step (`[batch, step, codebook]`, pq and rvq): codebook `c`'s ids follow codebook `c-1`'s, so one
    embedding table of codebooks x k (+ the reserved ids) holds them all."""
    if tokens.dim() == 3:
        tokens = tokens.long() + torch.arange(tokens.shape[2], device=tokens.device) * codebook_size * (
            tokens >= 0
        )
    return torch.where(tokens >= 0, tokens.long() + N_SPECIAL, PAD_ID)


def embed_steps(embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """`[batch, step, dim]` embeddings: a step of several codebooks' ids is the sum of theirs."""
    embedded = embedding(ids)
    return embedded.sum(dim=2) if ids.dim() == 3 else embedded


def step_ids(ids: torch.Tensor) -> torch.Tensor:
    """`[batch, step]`: the first codebook's ids stand for their step (padding and masks)."""
    return ids[..., 0] if ids.dim() == 3 else ids


def cls_then_steps(embedding: nn.Embedding, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What a BERT reads of several ids a step (`[batch, step, codebook]`): the [CLS] embedding, then
    each step's summed embeddings (`inputs_embeds`), and the attention mask over them."""
    cls = torch.full((ids.shape[0], 1), CLS_ID, dtype=ids.dtype, device=ids.device)
    embeds = torch.cat([embedding(cls), embed_steps(embedding, ids)], dim=1)
    return embeds, (torch.cat([cls, step_ids(ids)], dim=1) != PAD_ID).long()
