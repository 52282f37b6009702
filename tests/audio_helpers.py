"""Real FLAC bytes for tests, written with soundfile."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def flac_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()
