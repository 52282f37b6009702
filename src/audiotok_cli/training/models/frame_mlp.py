"""`baseline`: the research's per-frame MLP (`RawSTFTFlatDataset`): each frame through the same
layers, mean-pooled over true frames, then a linear head."""

from __future__ import annotations

import torch
from torch import nn

from audiotok_cli.training.models.frames import front_end, masked_mean, time_mask
from audiotok_cli.training.models.spec import ModelSpec


class FrameMLP(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.front, width = front_end(spec)
        layers: list[nn.Module] = []
        for _ in range(spec.num_layers):
            layers += [nn.Linear(width, spec.hidden_size), nn.ReLU(), nn.Dropout(spec.dropout)]
            width = spec.hidden_size
        self.frames = nn.Sequential(*layers)
        self.head = nn.Linear(width, spec.n_classes)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.front is not None:
            frames = self.front(frames, lengths)
        return self.head(masked_mean(self.frames(frames), time_mask(lengths, frames.shape[1])))


def build(spec: ModelSpec) -> nn.Module:
    return FrameMLP(spec)
