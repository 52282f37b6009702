"""Model token ids (the scheme lives in `audiotok_cli.token_ids`, which `export-tokens` shares):
four reserved ids before the centroids, fixed for every run format-2 model.
"""

from __future__ import annotations

import torch

from audiotok_cli.token_ids import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID, SEP_ID

__all__ = ["CLS_ID", "MASK_ID", "N_SPECIAL", "PAD_ID", "SEP_ID", "to_model_ids"]


def to_model_ids(tokens: torch.Tensor) -> torch.Tensor:
    """Stored ids (centroid or -1) -> model ids (centroid + N_SPECIAL, or PAD_ID)."""
    return torch.where(tokens >= 0, tokens.long() + N_SPECIAL, PAD_ID)
