"""The id scheme every token model reads, shared by training and by `export-tokens` (which writes
what the models read, so a toolchain fed the Parquet file sees the ids the exported BERT saw).

Stored tokens are centroid indices in [0, k) padded with -1; models see four reserved ids, then
centroid `c` as `c + 4`, after a `[CLS]`. [MASK] and [SEP] are reserved now, unused by classifiers,
so masked-token pretraining and two-segment inputs never shift the ids of a saved model.
"""

from __future__ import annotations

import numpy as np

PAD_ID, CLS_ID, MASK_ID, SEP_ID = 0, 1, 2, 3
N_SPECIAL = 4
SCHEME = (
    f"[PAD]={PAD_ID} [CLS]={CLS_ID} [MASK]={MASK_ID} [SEP]={SEP_ID}; centroid c is c+{N_SPECIAL}; "
    "input_ids start with [CLS], as every audiotok token model read them"
)


STEPS_SCHEME = (
    f"several ids a step (pq, rvq): codebook c's centroid i is c*k+i+{N_SPECIAL}, all in one table after "
    f"[PAD]={PAD_ID} [CLS]={CLS_ID} [MASK]={MASK_ID} [SEP]={SEP_ID}; a model embeds a step as the sum of "
    "its ids' embeddings, after a lone [CLS] (not in input_ids)"
)


def input_ids(centroids: np.ndarray) -> np.ndarray:
    """One clip's centroid ids (no padding) as a model reads them: [CLS], then each id + 4."""
    return np.concatenate([[CLS_ID], centroids.astype(np.int64) + N_SPECIAL])


def step_input_ids(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """One clip's `[step, codebook]` ids (no padding) as a model's embedding table numbers them."""
    return codes.astype(np.int64) + N_SPECIAL + np.arange(codes.shape[1]) * codebook_size
