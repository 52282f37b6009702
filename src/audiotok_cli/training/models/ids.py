"""Model token ids: four reserved ids before the centroids, fixed for every run format-2 model.

Stored tokens are centroid indices in [0, k) padded with -1; models see centroid `c` as `c + 4`.
[MASK] and [SEP] are reserved now, unused by classifiers, so masked-token pretraining and
two-segment inputs never shift the ids of a saved model (the seed padded with centroid 0).
"""

from __future__ import annotations

import torch

PAD_ID, CLS_ID, MASK_ID, SEP_ID = 0, 1, 2, 3
N_SPECIAL = 4


def to_model_ids(tokens: torch.Tensor) -> torch.Tensor:
    """Stored ids (centroid or -1) -> model ids (centroid + N_SPECIAL, or PAD_ID)."""
    return torch.where(tokens >= 0, tokens.long() + N_SPECIAL, PAD_ID)
