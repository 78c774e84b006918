"""Pictures and pieces of a hit's audio: a waveform and a spectrogram with the matched region
marked, and the region itself as a WAV file to drag into a DAW.

Pictures are drawn with numpy into PNGs through Pillow (no plotting library): a waveform is
one min/max bar per pixel column, a spectrogram a log-magnitude STFT on a perceptual colour
ramp. Callers pass paths they have already checked (``Searcher.library_file``).
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Overview:
    """A file's waveform at a fixed resolution, whatever its length: per column, the lowest and
    highest sample, scaled so the loudest peak is 1. Small enough to keep for many files."""

    low: np.ndarray
    high: np.ndarray
    seconds: float


OVERVIEW_COLUMNS = 4096


def overview(samples: np.ndarray, rate: int = DISPLAY_RATE) -> Overview:
    """The overview of mono ``samples`` at ``rate``."""
    per_column = max(1, -(-len(samples) // OVERVIEW_COLUMNS))
    low, high = _column_extremes(samples, per_column)
    return _scaled(low, high, len(samples) / rate)


def file_overview(path: str | os.PathLike) -> Overview:
    """The overview of a file, read block by block at its own rate where libsndfile reads it
    (no resampling: a thumbnail needs only extremes; an hour in memory is never held), else
    decoded at DISPLAY_RATE."""
    try:
        with soundfile.SoundFile(path) as sound:
            per_column = max(1, -(-sound.frames // OVERVIEW_COLUMNS))
            lows, highs = [], []
            for block in sound.blocks(blocksize=per_column * 256, dtype="float32", always_2d=True):
                low, high = _column_extremes(block.mean(axis=1), per_column)
                lows.append(low)
                highs.append(high)
            seconds = sound.frames / sound.samplerate
    except soundfile.LibsndfileError:  # MP3 on older libsndfile, M4A, Opus: FFmpeg's decoders
        return overview(display_samples(path))
    if not lows:
        return _scaled(np.zeros(0), np.zeros(0), 0.0)
    return _scaled(np.concatenate(lows), np.concatenate(highs), seconds)


def _column_extremes(samples: np.ndarray, per_column: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each run of ``per_column`` samples (the last run may be shorter)."""
    if len(samples) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    edges = np.arange(0, len(samples), per_column)
    return np.minimum.reduceat(samples, edges), np.maximum.reduceat(samples, edges)


def _scaled(low: np.ndarray, high: np.ndarray, seconds: float) -> Overview:
    # The loudest peak fills the height, so quiet files are readable too.
    peak = max(float(np.abs(low).max()) if len(low) else 0.0, float(np.abs(high).max()) if len(high) else 0.0, 1e-4)
    return Overview((low / peak).astype(np.float32), (high / peak).astype(np.float32), seconds)


def waveform_png(view: Overview, region: Region | None = None, width: int = WIDTH, height: int = 90) -> bytes:
    """The waveform of ``view`` as a filled envelope inside a ``width`` x ``height`` box,
    ``region`` (seconds) shaded and drawn in the accent colour.

    Files shorter than the box has columns (a 10-ms click) are stretched across it; longer
    ones (an hour) are reduced to one min/max bar per column, so both fill the box and stay in it.
    """
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    region_columns = _columns_of(region, view.seconds, width)
    if region_columns is not None:
        draw.rectangle((region_columns[0], 0, region_columns[1], height - 1), fill=REGION_BACKGROUND)
    low, high = _fit(view.low, view.high, width)
    # Each column reaches its neighbours, so a stretched click is one unbroken trace, not dots.
    padded_low, padded_high = np.pad(low, 1, mode="edge"), np.pad(high, 1, mode="edge")
    low, high = (np.minimum(low, np.minimum(padded_high[:-2], padded_high[2:])),
                 np.maximum(high, np.maximum(padded_low[:-2], padded_low[2:])))
    middle, reach = (height - 1) / 2, (height - 2) / 2
    tops = np.clip(middle - high * reach, 0, height - 1)
    bottoms = np.clip(middle - low * reach, 0, height - 1)
    bottoms = np.maximum(bottoms, tops + 1)  # silence is a line, not nothing
    for column in range(width):
        inside = region_columns is not None and region_columns[0] <= column <= region_columns[1]
        draw.line((column, tops[column], column, bottoms[column]), fill=REGION_WAVE if inside else WAVE)
    return _png(image)


def _fit(low: np.ndarray, high: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``low``/``high`` columns brought to ``width``: grouped (min of lows, max of highs) when
    there are more, interpolated when fewer."""
    count = len(low)
    if count == 0:
        return np.zeros(width), np.zeros(width)
    if count >= width:
        edges = np.linspace(0, count, width + 1).astype(int)[:-1]
        return np.minimum.reduceat(low, edges), np.maximum.reduceat(high, edges)
    positions = np.linspace(0, count - 1, width)
    columns = np.arange(count)
    return np.interp(positions, columns, low), np.interp(positions, columns, high)


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
    region_columns = _columns_of(region, len(samples) / DISPLAY_RATE, width)
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


def _columns_of(region: Region | None, seconds: float, width: int) -> tuple[int, int] | None:
    if region is None or seconds <= 0:
        return None
    first = int(region[0] / seconds * width)
    last = int(np.ceil(region[1] / seconds * width)) - 1
    return max(0, min(first, width - 1)), max(0, min(max(last, first), width - 1))


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
