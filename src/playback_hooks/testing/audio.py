"""Real PCM for the offline models: a recognisable tone of any length."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SAMPLE_RATE", "pcm_tone"]

SAMPLE_RATE = 24000


def pcm_tone(seconds: float, *, frequency: float = 440.0, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Return ``seconds`` of a mono PCM16 sine tone (real audio, easy to recognise)."""
    n = max(0, round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    samples = (0.3 * 32767 * np.sin(2 * math.pi * frequency * t)).astype(np.int16)
    return samples.tobytes()
