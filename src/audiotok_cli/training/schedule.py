"""Learning-rate schedules as pure functions of the optimizer step: linear warmup, then cosine or
linear decay to zero, or constant. A resumed run needs no scheduler state, only its step count."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """The multiplier of the base learning rate at optimizer step `step` (0-based) of `total`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(total - warmup, 1)
    if kind == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def warmup_steps(total: int, steps: int, ratio: float) -> int:
    """Warmup length: `steps` when given, else `ratio` of all steps."""
    return steps if steps else round(ratio * total)
