"""What it takes to rebuild a model: recorded in every run, read back to load its weights."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelSpec(BaseModel):
    kind: str
    input: str = Field(description="tokens or frames.")
    n_tokens: int = Field(0, description="Vocabulary size k (token models): centroid ids before specials.")
    n_mels: int = Field(0, description="Values per frame (frame models).")
    n_classes: int = Field(527, gt=0, description="Outputs: the store's classes (AudioSet's 527 by default).")
    max_frames: int = Field(description="Longest sequence, in frames (BERT's position table).")
    embed_dim: int
    hidden_size: int
    num_layers: int
    num_heads: int
    dropout: float
    cnn_channels: tuple[int, ...] = (64, 128, 256, 512)
    conv_kernels: int = 0
    conv_size: int = 3
    target_k: int = Field(0, description="Masked unit prediction: ids per codebook of its targets.")
    target_codebooks: int = Field(1, description="Masked unit prediction: target ids a step (pq:M, rvq:R).")
