"""Decoding every library format to mono at the model's rate, and cutting windows."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from sounds import ffmpeg_tone, sox_tone

from encoders.audio import AudioDecodeError, load_audio, read_audio, windows

RATE = 44100

FORMATS = {
    # file name: (maker, channels, native rate, seconds, duration tolerance)
    "pcm16-stereo-22k.wav": (lambda p: sox_tone(p, 3, rate=22050, channels=2, bits=16), 2, 22050, 3.0, 1e-6),
    "pcm24-mono.wav": (lambda p: sox_tone(p, 2, bits=24), 1, 44100, 2.0, 1e-6),
    "float32-stereo-48k.wav": (
        lambda p: sox_tone(p, 2, rate=48000, channels=2, bits=32, encoding="floating-point"), 2, 48000, 2.0, 1e-6
    ),
    "stereo.flac": (lambda p: sox_tone(p, 2, channels=2), 2, 44100, 2.0, 1e-6),
    "mono-16k.aiff": (lambda p: sox_tone(p, 2, rate=16000), 1, 16000, 2.0, 1e-6),
    "stereo.ogg": (lambda p: sox_tone(p, 2, channels=2), 2, 44100, 2.0, 1e-6),
    "stereo.opus": (lambda p: ffmpeg_tone(p, 2), 2, 48000, 2.0, 1e-6),
    "mono-32k.mp3": (lambda p: ffmpeg_tone(p, 2, rate=32000, channels=1), 1, 32000, 2.0, 0.06),
    # AAC adds encoder priming and padding that the container may or may not trim.
    "stereo.m4a": (lambda p: ffmpeg_tone(p, 2), 2, 44100, 2.0, 0.06),
    "stereo.aac": (lambda p: ffmpeg_tone(p, 2), 2, 44100, 2.0, 0.06),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_to_mono_at_the_model_rate(tmp_path, name):
    make, channels, native_rate, seconds, tolerance = FORMATS[name]
    path = make(tmp_path / name)

    samples, info = read_audio(path, RATE)

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert (info.channels, info.sample_rate) == (channels, native_rate)
    assert info.duration == pytest.approx(seconds, abs=tolerance)
    assert len(samples) / RATE == pytest.approx(seconds, abs=tolerance + 1 / native_rate)
    # Still a 440 Hz tone after resampling: the spectrum peaks there.
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.fft.rfftfreq(len(samples), 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_channels_are_averaged(tmp_path):
    path = tmp_path / "two-channels.wav"
    left = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    soundfile.write(path, np.stack([left, np.full_like(left, 0.25)], axis=1), RATE, subtype="FLOAT")

    assert np.allclose(load_audio(path, RATE), (left + 0.25) / 2)


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.wav", b""),
        ("text.wav", b"these are not the samples you are looking for\n" * 20),
        ("noise.flac", np.random.default_rng(0).bytes(5000)),
    ],
)
def test_unreadable_files_raise_a_decode_error_naming_path_and_reason(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(AudioDecodeError) as caught:
        load_audio(path, RATE)

    assert caught.value.path == str(path) and caught.value.reason
    assert str(path) in str(caught.value)


def test_missing_file_raises_a_decode_error(tmp_path):
    with pytest.raises(AudioDecodeError, match="No such file"):
        load_audio(tmp_path / "gone.wav", RATE)


def spans(samples_count, window=7.0, hop=None, rate=100):
    return [(w.start, w.end) for w in windows(np.zeros(samples_count, np.float32), rate, window, hop)]


def test_short_audio_is_one_short_window():
    assert spans(300) == [(0.0, 3.0)]
    assert spans(700) == [(0.0, 7.0)]


def test_long_audio_is_covered_with_the_last_window_aligned_to_the_end():
    assert spans(2000) == [(0.0, 7.0), (7.0, 14.0), (13.0, 20.0)]
    assert spans(1400) == [(0.0, 7.0), (7.0, 14.0)]  # already covered: no extra window
    assert spans(2000, hop=3.5) == [(0.0, 7.0), (3.5, 10.5), (7.0, 14.0), (10.5, 17.5), (13.0, 20.0)]


def test_windows_are_full_length_slices_of_the_samples():
    samples = np.arange(2000, dtype=np.float32)
    cut = windows(samples, 100, 7.0)
    assert all(len(w.samples) == 700 for w in cut)
    assert [w.samples[0] for w in cut] == [0, 700, 1300]
