"""The parallel decoder: same samples as reading in this process, in order, errors as values."""

from __future__ import annotations

import numpy as np
import soundfile

from encoders.audio import read_audio
from encoders.decoding import decode_files


def write_tone(path, seconds, rate=22050, channels=2):
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(path, np.repeat(tone[:, None], channels, axis=1), rate)
    return path


def library(tmp_path):
    paths = [write_tone(tmp_path / f"tone{i}.flac", 0.5 + i / 4) for i in range(6)]
    (tmp_path / "notes.wav").write_text("not audio")
    return paths[:3] + [tmp_path / "notes.wav", tmp_path / "missing.wav"] + paths[3:]


def test_workers_decode_what_this_process_decodes_in_the_same_order(tmp_path):
    paths = library(tmp_path)
    here = list(decode_files(paths, 44100, workers=0))
    pooled = list(decode_files(paths, 44100, workers=2))
    assert [d.path for d in pooled] == [str(p) for p in paths] == [d.path for d in here]
    for mine, theirs, path in zip(pooled, here, paths):
        assert (mine.error is None) == (theirs.error is None)
        if mine.error is None:
            expected, info = read_audio(path, 44100)
            assert np.array_equal(mine.samples, expected) and np.array_equal(theirs.samples, expected)
            assert mine.info == info and mine.samples.dtype == np.float32


def test_unreadable_files_come_back_with_their_reason(tmp_path):
    decoded = {d.path: d for d in decode_files(library(tmp_path), 44100, workers=2)}
    for name in ("notes.wav", "missing.wav"):
        broken = decoded[str(tmp_path / name)]
        assert broken.samples is None and broken.info is None and broken.error
