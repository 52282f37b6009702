"""What it takes to rebuild a model: recorded in every run, read back to load its weights."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelSpec(BaseModel):
    kind: str
    n_tokens: int = Field(description="Vocabulary size k: centroid ids, before the special ids.")
    max_frames: int = Field(description="Longest sequence, in frames (BERT's position table).")
    embed_dim: int
    hidden_size: int
    num_layers: int
    num_heads: int
    dropout: float
