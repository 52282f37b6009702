"""`cnn`: a 2-D CNN over the log-mel image in the style of the PANNs CNN family (Kong et al. 2020):
blocks of two 3x3 conv + batch norm + ReLU layers and a 2x2 average pool, then the mean over
frequency, the max plus the mean over time, a hidden layer and the head. `cnn_channels` sets the
blocks (PANNs' CNN14 is 64,128,256,512,1024,2048; the default four blocks train on a CPU)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from audiotok_cli.training.models.frames import front_end, masked_max, masked_mean, time_mask
from audiotok_cli.training.models.spec import ModelSpec


class ConvBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(channels_out), nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`x` [batch, channels, time, freq]; `mask` [batch, time] re-zeroes the padding."""
        keep = mask[:, None, :, None].to(x.dtype)
        x = F.relu(self.bn1(self.conv1(x))) * keep
        x = F.relu(self.bn2(self.conv2(x))) * keep
        return F.avg_pool2d(x, kernel_size=2) if x.shape[-1] > 1 else F.avg_pool2d(x, kernel_size=(2, 1))


class LogMelCNN(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.front, _ = front_end(spec)
        channels = (1, *spec.cnn_channels)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in itertools.pairwise(channels))
        self.dropout = nn.Dropout(spec.dropout)
        self.hidden = nn.Linear(channels[-1], channels[-1])
        self.head = nn.Linear(channels[-1], spec.n_classes)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.front is not None:
            frames = self.front(frames, lengths)
        stride = 2 ** len(self.blocks)  # pad time to whole pools, so no valid frame is ever dropped
        x = F.pad(frames, (0, 0, 0, -frames.shape[1] % stride)).unsqueeze(1)
        for block in self.blocks:
            x = self.dropout(block(x, time_mask(lengths, x.shape[2])))
            lengths = (lengths + 1) // 2
        x = x.mean(dim=3).transpose(1, 2)  # [batch, time, channels]
        mask = time_mask(lengths, x.shape[1])
        pooled = masked_max(x, mask) + masked_mean(x, mask)
        return self.head(self.dropout(F.relu(self.hidden(pooled))))


def build(spec: ModelSpec) -> nn.Module:
    return LogMelCNN(spec)
