"""Waveform and spectrogram pictures with the region marked, and regions cut out as WAV."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
import soundfile
from PIL import Image
from sounds import concatenate, ffmpeg_tone, sox_tone

from server.audio_view import (
    BACKGROUND, DISPLAY_RATE, REGION_EDGE, REGION_WAVE, WAVE, display_samples, file_overview, overview, region_wav, spectrogram_png,
    waveform_png,
)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("view")
    quiet = sox_tone(folder / "quiet.wav", 2, tone="sine 300 vol 0.1", channels=2, rate=48000)
    loud = sox_tone(folder / "loud.wav", 2, tone="square 300", channels=2, rate=48000)
    return concatenate(folder / "long.wav", quiet, loud, quiet)


def picture(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_waveform_shades_the_region_and_scales_to_the_loudest_peak(long_file):
    samples = display_samples(long_file)
    assert len(samples) == 6 * DISPLAY_RATE

    pixels = picture(waveform_png(overview(samples), region=(2.0, 4.0), width=600, height=80))

    assert pixels.shape == (80, 600, 3)
    # The loud square wave (2-4 s) fills its columns top to bottom in the accent colour.
    assert (pixels[4, 250] == REGION_WAVE).all() and (pixels[75, 250] == REGION_WAVE).all()
    # The quiet tone outside stays near the middle, on the plain background.
    assert (pixels[40, 100] == WAVE).all() and (pixels[5, 100] == BACKGROUND).all()
    assert (pixels[5, 199] == BACKGROUND).all() and (pixels[5, 200] == REGION_WAVE).all()


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_a_file_overview_read_at_its_own_rate_draws_the_same_picture(long_file, tmp_path, suffix):
    source = long_file
    if suffix == ".mp3":
        source = tmp_path / "long.mp3"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(long_file), str(source)], check=True)
    read = file_overview(source)
    decoded = overview(display_samples(source))

    assert read.seconds == pytest.approx(decoded.seconds, abs=0.06)
    ours, theirs = (picture(waveform_png(view, (2.0, 4.0), 600, 80)) for view in (read, decoded))
    assert ((ours != theirs).any(axis=2)).mean() < 0.03  # the same picture, to a few edge pixels


def test_spectrogram_frames_the_region(long_file):
    pixels = picture(spectrogram_png(display_samples(long_file), region=(2.0, 4.0), width=600, height=120))

    assert pixels.shape == (120, 600, 3)
    assert (pixels[60, 200] == REGION_EDGE).all() and (pixels[60, 399] == REGION_EDGE).all()


def test_empty_and_tiny_inputs_still_draw():
    assert picture(waveform_png(overview(np.zeros(0, np.float32)))).shape[1] > 0
    assert picture(spectrogram_png(np.zeros(10, np.float32), region=(0.0, 0.001))).shape[1] > 0


def test_a_region_keeps_the_file_rate_and_channels(long_file):
    frames, rate = soundfile.read(io.BytesIO(region_wav(long_file, 2.0, 4.0)), always_2d=True)
    original, _ = soundfile.read(long_file, always_2d=True)

    assert rate == 48000 and frames.shape == (96000, 2)
    np.testing.assert_allclose(frames, original[96000:192000], atol=1e-4)


def test_a_region_of_a_file_only_ffmpeg_reads_is_mono_at_its_rate(tmp_path):
    chirp = ffmpeg_tone(tmp_path / "chirp.m4a", 3, rate=22050)

    frames, rate = soundfile.read(io.BytesIO(region_wav(chirp, 1.0, 2.0, sample_rate=22050)))

    assert rate == 22050 and frames.ndim == 1 and len(frames) == 22050


@pytest.mark.parametrize("seconds", [0.01, 0.044, 3600.0])
def test_waveforms_from_10_ms_to_an_hour_are_unbroken_envelopes_inside_their_box(seconds):
    rng = np.random.default_rng(0)
    count = round(seconds * DISPLAY_RATE)
    # A decaying noise burst, the shape of a one-shot, however long.
    samples = (rng.standard_normal(count) * np.exp(-np.linspace(0, 5, count))).astype(np.float32)

    pixels = picture(waveform_png(overview(samples), width=200, height=36))

    assert pixels.shape == (36, 200, 3)
    drawn = (pixels == WAVE).all(axis=2)
    # Every column has ink (no dots with gaps between them), and the peak reaches the box's edge
    # without leaving it.
    assert drawn.any(axis=0).all()
    assert drawn[:2].any() or drawn[-2:].any()
    # Each column's ink is one run that touches its neighbours' runs: a continuous trace.
    spans = [np.flatnonzero(column) for column in drawn.T]
    assert all(span[-1] - span[0] + 1 == len(span) for span in spans)
    assert all(a[0] <= b[-1] + 1 and b[0] <= a[-1] + 1 for a, b in zip(spans, spans[1:]))
