"""Training-time augmentation, off by default: mixup of clips and their label vectors (on the
frames of frame models, on the token embeddings of token models), SpecAugment-style time and
frequency masks for frame models, and [MASK] spans for token models.

Every draw comes from torch's generator, which the loop seeds per epoch, so a resumed run
augments exactly as an uninterrupted one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from audiotok_cli.errors import SettingsError
from audiotok_cli.settings import TrainSettings
from audiotok_cli.training.models.ids import MASK_ID, PAD_ID, step_ids


@dataclass
class Augment:
    mixup: float  # Beta(alpha, alpha) mixing weights; 0: off
    time_mask: int  # widest time mask, frames
    freq_mask: int  # widest frequency mask, mel bands
    token_mask: float  # share of tokens replaced by [MASK]
    mask_span: int  # tokens per masked span

    @classmethod
    def of(cls, settings: TrainSettings, input_kind: str) -> Augment:
        """The run's augmentation; options for the other input kind are refused, not ignored."""
        wrong = (
            ["--token-mask"] * bool(settings.token_mask)
            if input_kind == "frames"
            else ["--time-mask"] * bool(settings.time_mask) + ["--freq-mask"] * bool(settings.freq_mask)
        )
        if wrong:
            other = "tokens" if input_kind == "frames" else "frames"
            raise SettingsError(f"{', '.join(wrong)} applies to models that read {other}, not {input_kind}")
        return cls(
            settings.mixup, settings.time_mask, settings.freq_mask, settings.token_mask, settings.mask_span
        )

    def batch(
        self, inputs: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _Mix | None]:
        """The augmented batch, and the mix to apply to token embeddings (None for frames or no mixup)."""
        if inputs.dtype.is_floating_point:
            inputs = self._masked_frames(inputs, lengths)
        elif self.token_mask:
            inputs = self._masked_tokens(inputs)
        if not self.mixup or len(labels) < 2:
            return inputs, lengths, labels, None
        mix = _Mix.draw(self.mixup, len(labels), labels.device)
        labels = mix(labels)
        if inputs.dtype.is_floating_point:  # frames: mix the inputs themselves
            return mix(inputs), torch.maximum(lengths, lengths[mix.partner]), labels, None
        return inputs, lengths, labels, mix

    def _masked_frames(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One time and one frequency mask per clip, each up to its width (0 is the mean after
        standardising); the time mask stays within the clip's true frames."""
        if not (self.time_mask or self.freq_mask):
            return frames
        frames = frames.clone()
        n, bands = frames.shape[0], frames.shape[2]
        for clip in range(n):
            if self.time_mask:
                start, width = _span(self.time_mask, int(lengths[clip]))
                frames[clip, start : start + width] = 0
            if self.freq_mask:
                start, width = _span(self.freq_mask, bands)
                frames[clip, :, start : start + width] = 0
        return frames

    def _masked_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Spans of `mask_span` tokens, started with probability token_mask / mask_span, become
        [MASK]; padding never does."""
        steps = step_ids(ids)  # several codebooks a step: the whole step is masked
        starts = torch.rand(steps.shape, device=ids.device) < self.token_mask / self.mask_span
        window = torch.ones(1, 1, self.mask_span, device=ids.device)  # position t: a start in t-span+1..t
        covered = nn.functional.conv1d(starts[:, None].float(), window, padding=self.mask_span - 1)
        masked = covered[:, 0, : ids.shape[1]] > 0
        if ids.dim() == 3:
            masked = masked[..., None]
        return torch.where(masked & (ids != PAD_ID), MASK_ID, ids)


def _span(widest: int, within: int) -> tuple[int, int]:
    width = int(torch.randint(0, min(widest, within) + 1, ()))
    return int(torch.randint(0, within - width + 1, ())), width


@dataclass
class _Mix:
    """Each clip mixed with a partner clip of the batch: weight * own + (1 - weight) * partner's."""

    weight: torch.Tensor  # [batch]
    partner: torch.Tensor  # [batch] indices

    @classmethod
    def draw(cls, alpha: float, n: int, device: torch.device) -> _Mix:
        beta = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
        return cls(beta.sample((n,)).to(device), torch.randperm(n).to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
        return weight * x + (1 - weight) * x[self.partner]


@contextmanager
def mixing_embeddings(model: nn.Module, mix: _Mix | None) -> Iterator[None]:
    """Token mixup: the model's token embeddings are mixed for one forward pass (its mask stays
    the clip's own; AudioSet clips are all ~10 s, so the partners' lengths nearly always agree)."""
    if mix is None:
        yield
        return
    unwrapped = getattr(model, "module", model)  # DDP keeps the model as `.module`
    handle = unwrapped.token_embeddings.register_forward_hook(lambda _module, _args, out: mix(out))
    try:
        yield
    finally:
        handle.remove()
