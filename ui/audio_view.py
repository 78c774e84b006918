"""Pictures and pieces of a hit's audio: a waveform and a spectrogram with the matched region
marked, and the region itself as a WAV file to drag into a DAW.

Pictures are drawn with numpy into PNGs through Pillow (no plotting library): a waveform is
one min/max bar per pixel column, a spectrogram a log-magnitude STFT on a perceptual colour
ramp. Callers pass paths they have already checked (``Searcher.library_file``).
"""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile
from PIL import Image, ImageDraw

from encoders.audio import load_audio

# Pictures need no more than this; an hour of it is 58 MB of float32.
DISPLAY_RATE = 16000
WIDTH = 900
BACKGROUND = (246, 247, 249)
REGION_BACKGROUND = (255, 228, 200)
WAVE = (120, 128, 140)
REGION_WAVE = (222, 92, 20)
REGION_EDGE = (222, 92, 20)
# Colour ramp from silence to loud (dark blue, purple, orange, pale yellow), like "magma".
_RAMP = np.array([(8, 8, 32), (72, 20, 110), (180, 54, 110), (246, 128, 60), (252, 236, 170)], dtype=np.float32)
_DYNAMIC_RANGE_DB = 80.0

Region = tuple[float, float]  # seconds


def display_samples(path: str | os.PathLike) -> np.ndarray:
    """The file as mono float32 at DISPLAY_RATE."""
    return load_audio(path, DISPLAY_RATE)


def waveform_png(samples: np.ndarray, region: Region | None = None, width: int = WIDTH, height: int = 90) -> bytes:
    """A waveform of ``samples`` (at DISPLAY_RATE), ``region`` shaded and drawn in the accent colour."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    region_columns = _columns_of(region, len(samples), width)
    if region_columns is not None:
        draw.rectangle((region_columns[0], 0, region_columns[1], height - 1), fill=REGION_BACKGROUND)
    low, high = _envelope(samples, width)
    middle = (height - 1) / 2
    # The loudest peak fills the height, so quiet files are readable too.
    scale = middle / max(float(np.abs(samples).max()) if len(samples) else 0.0, 1e-4)
    for column in range(width):
        inside = region_columns is not None and region_columns[0] <= column <= region_columns[1]
        top, bottom = middle - high[column] * scale, middle - low[column] * scale
        draw.line((column, top, column, max(bottom, top + 1)), fill=REGION_WAVE if inside else WAVE)
    return _png(image)


def spectrogram_png(samples: np.ndarray, region: Region | None = None, width: int = WIDTH, height: int = 160) -> bytes:
    """A spectrogram of ``samples`` (at DISPLAY_RATE, so 0-8 kHz, low at the bottom), ``region`` framed."""
    fft_size = 512
    padded = np.pad(samples, (0, max(0, fft_size - len(samples))))
    hop = max(1, (len(padded) - fft_size) // max(width - 1, 1))
    starts = np.arange(0, len(padded) - fft_size + 1, hop)
    frames = padded[starts[:, None] + np.arange(fft_size)] * np.hanning(fft_size).astype(np.float32)
    magnitude = np.abs(np.fft.rfft(frames, axis=1))
    decibels = 20 * np.log10(np.maximum(magnitude, 1e-10))
    level = np.clip((decibels - decibels.max() + _DYNAMIC_RANGE_DB) / _DYNAMIC_RANGE_DB, 0, 1)
    positions = level.T[::-1] * (len(_RAMP) - 1)  # frequency rows, high first
    lower = np.floor(positions).astype(int).clip(0, len(_RAMP) - 2)
    fraction = (positions - lower)[..., None]
    colours = _RAMP[lower] * (1 - fraction) + _RAMP[lower + 1] * fraction
    image = Image.fromarray(colours.astype(np.uint8), "RGB").resize((width, height), Image.Resampling.BILINEAR)
    region_columns = _columns_of(region, len(samples), width)
    if region_columns is not None:
        ImageDraw.Draw(image).rectangle((region_columns[0], 0, region_columns[1], height - 1), outline=REGION_EDGE, width=2)
    return _png(image)


def region_wav(path: str | os.PathLike, start: float, end: float, sample_rate: int | None = None) -> bytes:
    """``start``-``end`` seconds of the file as a WAV, in the file's own rate and channels where
    libsndfile reads it (else mono at ``sample_rate``), 24-bit so nothing audible is lost."""
    try:
        with soundfile.SoundFile(path) as sound:
            rate = sound.samplerate
            sound.seek(min(round(start * rate), sound.frames))
            frames = sound.read(max(0, round((end - start) * rate)), dtype="float32", always_2d=True)
    except soundfile.LibsndfileError:  # M4A/AAC and other containers only FFmpeg opens
        rate = sample_rate or DISPLAY_RATE
        frames = load_audio(path, rate)[round(start * rate) : round(end * rate)]
    out = io.BytesIO()
    soundfile.write(out, frames, rate, format="WAV", subtype="PCM_24")
    return out.getvalue()


def _envelope(samples: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel column, the lowest and highest sample in it."""
    if len(samples) == 0:
        return np.zeros(width), np.zeros(width)
    edges = np.linspace(0, len(samples), width + 1).astype(int)
    edges[1:] = np.maximum(edges[1:], edges[:-1] + 1).clip(max=len(samples))
    edges[:-1] = edges[:-1].clip(max=len(samples) - 1)
    return np.minimum.reduceat(samples, edges[:-1]), np.maximum.reduceat(samples, edges[:-1])


def _columns_of(region: Region | None, sample_count: int, width: int) -> tuple[int, int] | None:
    if region is None or sample_count == 0:
        return None
    seconds = sample_count / DISPLAY_RATE
    first = int(region[0] / seconds * width)
    last = int(np.ceil(region[1] / seconds * width)) - 1
    return max(0, min(first, width - 1)), max(0, min(max(last, first), width - 1))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
