"""Decoding every library format to mono at the model's rate, and cutting windows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile
from sounds import esc10_clips, ffmpeg_tone, sox_tone

from encoders.audio import AudioDecodeError, AudioStream, load_audio, read_audio, resample, stream_windows, windows

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


def vorbis_and_flac_files(folder):
    recording = esc10_clips(1)[0]  # a real Ogg Vorbis recording, mono
    lossless = folder / "recording.flac"
    soundfile.write(lossless, soundfile.read(recording)[0], RATE, subtype="PCM_24")
    return {"stb_vorbis": [recording, sox_tone(folder / "stereo-48k.ogg", 2, rate=48000, channels=2)],
            "dr_flac": [lossless, sox_tone(folder / "stereo-22k.flac", 2, rate=22050, channels=2)]}


def test_named_vorbis_and_flac_files_decode_to_what_libsndfile_gives(tmp_path):
    """Named files go to miniaudio's faster decoders; open files (uploads) to libsndfile."""
    for decoder, paths in vorbis_and_flac_files(tmp_path).items():
        for path in paths:
            with AudioStream(path, RATE) as stream:
                assert stream.decoder == decoder
            named, named_info = read_audio(path, RATE)
            with open(path, "rb") as file:
                opened, opened_info = read_audio(file, RATE)

            assert named_info == opened_info
            assert named.shape == opened.shape
            assert np.abs(named - opened).max() < (1e-6 if decoder == "stb_vorbis" else 1e-7), path


def flip_bytes(path, into, count=40):
    data = bytearray(path.read_bytes())
    for at in np.random.default_rng(0).integers(len(data) // 3, len(data), count):
        data[at] ^= 0xFF
    into.write_bytes(bytes(data))
    return into


def test_a_damaged_ogg_file_is_left_to_libsndfile_not_decoded_to_garbage(tmp_path):
    # stb_vorbis checks no page checksums; decoding this file it returns samples near 80.
    damaged = flip_bytes(esc10_clips(1)[0], tmp_path / "damaged.ogg")
    with AudioStream(damaged, RATE) as stream:
        assert stream.decoder != "stb_vorbis"
    cut_short = tmp_path / "cut.ogg"
    whole = esc10_clips(1)[0].read_bytes()
    cut_short.write_bytes(whole[: len(whole) * 2 // 3])

    with AudioStream(cut_short, RATE) as stream:
        assert stream.decoder == "libsndfile"
        samples = np.concatenate(list(stream.blocks()))
    assert 0 < len(samples) < 5 * RATE and np.abs(samples).max() <= 1.0


def test_a_damaged_or_cut_short_flac_file_is_unreadable_not_silently_shorter(tmp_path):
    whole = sox_tone(tmp_path / "whole.flac", 4, tone="pinknoise")
    cut_short = tmp_path / "cut.flac"
    cut_short.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    for path in (flip_bytes(whole, tmp_path / "damaged.flac", count=5), cut_short):
        with pytest.raises(AudioDecodeError, match="not readable as audio: damaged or cut short"):
            load_audio(path, RATE)


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


def test_empty_audio_has_no_windows():
    assert spans(0) == []
    assert list(stream_windows([], 100, 7.0)) == []


def test_long_audio_is_covered_with_the_last_window_aligned_to_the_end():
    assert spans(2000) == [(0.0, 7.0), (7.0, 14.0), (13.0, 20.0)]
    assert spans(1400) == [(0.0, 7.0), (7.0, 14.0)]  # already covered: no extra window
    assert spans(2000, hop=3.5) == [(0.0, 7.0), (3.5, 10.5), (7.0, 14.0), (10.5, 17.5), (13.0, 20.0)]


def test_windows_are_full_length_slices_of_the_samples():
    samples = np.arange(2000, dtype=np.float32)
    cut = windows(samples, 100, 7.0)
    assert all(len(w.samples) == 700 for w in cut)
    assert [w.samples[0] for w in cut] == [0, 700, 1300]


@pytest.mark.parametrize("native_rate", [8000, 39063, 44101, 192000])
def test_odd_and_extreme_rates_resample_accurately_and_quickly(native_rate):
    seconds = 2
    time = np.arange(native_rate * seconds) / native_rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)

    resampled = resample(tone, native_rate, RATE)

    assert len(resampled) == RATE * seconds
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(resampled)) / RATE)
    middle = slice(1000, -1000)  # the filter's edges
    assert np.abs(resampled[middle] - expected[middle]).max() < 1e-3


@pytest.mark.parametrize(
    "rate, channels, bits, encoding, expected_bits",
    [(8000, 1, 16, "signed-integer", 16), (192000, 2, 24, "signed-integer", 24),
     (48000, 16, 32, "floating-point", 32), (22050, 6, 8, "unsigned-integer", 8)],
)
def test_channels_rates_and_bit_depths_as_the_file_holds_them(tmp_path, rate, channels, bits, encoding, expected_bits):
    path = sox_tone(tmp_path / "x.wav", 1, rate=rate, channels=channels, bits=bits, encoding=encoding)

    samples, info = read_audio(path, RATE)

    assert (info.sample_rate, info.channels, info.bit_depth) == (rate, channels, expected_bits)
    assert len(samples) == RATE and info.duration == 1.0


def test_a_10_ms_clip_is_one_short_window(tmp_path):
    samples, info = read_audio(sox_tone(tmp_path / "click.wav", 0.01, rate=8000), RATE)
    assert info.duration == pytest.approx(0.01) and len(samples) == 441
    assert [(w.start, w.end) for w in windows(samples, RATE, 7.0, 3.5)] == [(0.0, 0.01)]


@pytest.mark.parametrize("frames", [1, 699, 700, 701, 1049, 1050, 2000, 2345])
@pytest.mark.parametrize("block", [1, 7, 333, 5000])
def test_streamed_windows_equal_windows_cut_from_the_whole(frames, block):
    samples = np.arange(frames, dtype=np.float32)
    blocks = (samples[i : i + block] for i in range(0, frames, block))

    streamed = list(stream_windows(blocks, 100, 7.0, 3.5))
    whole = windows(samples, 100, 7.0, 3.5)

    assert [(w.start, w.end) for w in streamed] == [(w.start, w.end) for w in whole]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(streamed, whole))


def test_an_hour_long_file_streams_in_bounded_memory(tmp_path):
    """An hour at 8 kHz is 2.6 GB of float32 mono at 44.1 kHz; streaming it must not hold it."""
    path = tmp_path / "hour.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-b", "16", "-c", "1", str(path), "synth", "3600", "brownnoise"],
                   check=True)
    probe = f"""
import resource
from encoders.audio import AudioStream, stream_windows
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = 0
with AudioStream({str(path)!r}, 44100) as stream:
    for window in stream_windows(stream.blocks(), 44100, 7.0, 3.5):
        count += 1
    info = stream.info()
print(count, info.duration, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    count, duration, growth_kib = result.stdout.split()

    assert float(duration) == 3600.0 and int(count) == 1028
    assert int(growth_kib) < 100 * 1024, f"peak memory grew by {int(growth_kib) // 1024} MiB"
