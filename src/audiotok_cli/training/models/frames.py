"""Pieces every frame model shares: masks from true lengths, masked pooling, and the optional 1-D
convolution front end of the research code (`use_convolution`, `num_kernels`, `kernel_size`).

Frames arrive standardised, padded with zeros past each clip's true length. Every layer that mixes
neighbouring frames re-zeroes the padding after itself, so a clip's logits never depend on how much
padding its batch carries.
"""

from __future__ import annotations

import torch
from torch import nn

from audiotok_cli.training.models.spec import ModelSpec


def time_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[batch, steps] True on each clip's valid steps."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` [batch, steps, dim] over the valid steps of `mask` [batch, steps]."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)


class ConvFrontEnd(nn.Module):
    """`conv_kernels` 1-D kernels of `conv_size` frames over time, ReLU, padding re-zeroed."""

    def __init__(self, n_mels: int, kernels: int, size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_mels, kernels, size, padding=size // 2)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv(frames.transpose(1, 2))).transpose(1, 2)
        return out * time_mask(lengths, out.shape[1]).unsqueeze(-1)


def front_end(spec: ModelSpec) -> tuple[nn.Module | None, int]:
    """The front end the spec asks for (or None), and the values per frame after it."""
    if spec.conv_kernels:
        return ConvFrontEnd(spec.n_mels, spec.conv_kernels, spec.conv_size), spec.conv_kernels
    return None, spec.n_mels
