"""Parity inputs shared by make_reference.py (reference venv) and the parity test.

Clips are 16-bit PCM at 44.1 kHz so both environments rebuild bit-identical float32
samples (pcm / 32768); synthetic ones are recomputed, recorded ones travel in the npz.
"""

from __future__ import annotations

import hashlib

import numpy as np

SAMPLE_RATE = 44100
WINDOW_SAMPLES = 7 * SAMPLE_RATE

# One caption with literal '!' tokens (id 0, the official pad id) and an empty caption.
TEXTS = [
    "a dog barking",
    "rain falling on a tin roof",
    "Wow! a loud explosion, then silence!",
    "",
    "a long field recording of a busy train station with announcements, footsteps, rolling "
    "suitcases and a departing diesel locomotive in the distance",
]

# (name in tests/data/esc10, first seconds kept)
ESC10_CLIPS = {
    "esc_dog": ("001 - Dog bark/1-100032-A.ogg", 5.0),
    "esc_rain": ("002 - Rain/1-17367-A.ogg", 3.2),
}


def _to_pcm(signal: np.ndarray) -> np.ndarray:
    return np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)


def synthetic_clips() -> dict[str, np.ndarray]:
    t5 = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    t_short = np.arange(round(1.3 * SAMPLE_RATE)) / SAMPLE_RATE
    chirp_phase = 2 * np.pi * (200 * t_short + (4000 - 200) / (2 * 1.3) * t_short**2)
    return {
        # exactly one window: no tiling
        "noise_7s": np.random.default_rng(1).integers(-8000, 8000, WINDOW_SAMPLES, dtype=np.int16),
        "tones_5s": _to_pcm(0.3 * np.sin(2 * np.pi * 440 * t5) + 0.15 * np.sin(2 * np.pi * 1320 * t5)),
        # tiled six times, the last copy cut
        "chirp_1.3s": _to_pcm(0.5 * np.sin(chirp_phase)),
    }


def pcm_sha256(pcm: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).hexdigest()


def to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768
