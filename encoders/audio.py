"""Audio files to mono float32 samples at a model's rate, and those samples to windows.

libsndfile (through soundfile) reads WAV, FLAC, AIFF, Ogg Vorbis, Opus and MP3 quickly and
exactly; what it rejects (M4A/AAC, odd containers) goes through FFmpeg (through PyAV).
"""

from __future__ import annotations

import dataclasses
import os
from typing import BinaryIO, NamedTuple

import av
import numpy as np
import soundfile
import torch
import torchaudio.functional


class AudioDecodeError(Exception):
    """A file could not be read as audio: missing, unreadable, corrupt, empty or not audio."""

    def __init__(self, path: str | os.PathLike | BinaryIO, reason: str):
        self.path = _name_of(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What the file itself holds, before mixing and resampling."""

    sample_rate: int
    channels: int
    codec: str
    duration: float


class Window(NamedTuple):
    start: float  # seconds from the start of the file
    end: float
    samples: np.ndarray


def read_audio(path: str | os.PathLike | BinaryIO, sample_rate: int) -> tuple[np.ndarray, AudioInfo]:
    """Decode ``path`` (a file name, or an open binary file such as an upload) to mono float32
    at ``sample_rate``, with what the file itself holds."""
    try:
        samples, info = _read_soundfile(path)
    except soundfile.LibsndfileError:
        if not _is_file_name(path):
            path.seek(0)  # libsndfile read part of it before giving up
        samples, info = _read_ffmpeg(path)
    if samples.shape[0] == 0:
        raise AudioDecodeError(path, "no audio samples")
    # A corrupt float file can hold NaN or inf, which would poison every similarity score.
    mono = np.nan_to_num(to_mono(samples), nan=0.0, posinf=0.0, neginf=0.0)
    return resample(mono, info.sample_rate, sample_rate), info


def load_audio(path: str | os.PathLike | BinaryIO, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 array at ``sample_rate``; raises AudioDecodeError."""
    return read_audio(path, sample_rate)[0]


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average (frames, channels) to (frames,); 1-D input is already mono."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    resampled = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(samples)), from_rate, to_rate)
    return resampled.numpy().astype(np.float32, copy=False)


def windows(
    samples: np.ndarray, sample_rate: int, window_seconds: float, hop_seconds: float | None = None
) -> list[Window]:
    """Cut ``samples`` into windows that cover all of it.

    Windows start at 0, hop, 2*hop, ...; when the last of those stops short of the end, one
    more window is aligned to the end, so every window is full length and no sound is
    missed. Audio shorter than one window is one short window (the encoder tiles it).
    """
    size = round(window_seconds * sample_rate)
    hop = round((hop_seconds or window_seconds) * sample_rate)
    if size <= 0 or hop <= 0:
        raise ValueError(f"window ({window_seconds} s) and hop ({hop_seconds} s) must be positive")
    total = len(samples)
    if total <= size:
        return [Window(0.0, total / sample_rate, samples)]
    starts = list(range(0, total - size + 1, hop))
    if starts[-1] + size < total:
        starts.append(total - size)
    return [
        Window(start / sample_rate, (start + size) / sample_rate, samples[start : start + size]) for start in starts
    ]


def _is_file_name(source) -> bool:
    return isinstance(source, (str, os.PathLike))


def _name_of(source) -> str:
    return os.fspath(source) if _is_file_name(source) else getattr(source, "name", None) or "uploaded audio"


def _read_soundfile(path: str | os.PathLike | BinaryIO) -> tuple[np.ndarray, AudioInfo]:
    with soundfile.SoundFile(path) as sound:
        samples = sound.read(dtype="float32", always_2d=True)
        info = AudioInfo(
            sample_rate=sound.samplerate,
            channels=sound.channels,
            codec=f"{sound.format}/{sound.subtype}".lower(),
            duration=samples.shape[0] / sound.samplerate,
        )
    return samples, info


def _read_ffmpeg(path: str | os.PathLike | BinaryIO) -> tuple[np.ndarray, AudioInfo]:
    try:
        with av.open(os.fspath(path) if _is_file_name(path) else path) as container:
            if not container.streams.audio:
                raise AudioDecodeError(path, "no audio stream")
            stream = container.streams.audio[0]
            # Planar float keeps every channel apart and at full precision; we mix to mono ourselves.
            to_planar_float = av.AudioResampler(format="fltp")
            chunks = []
            for frame in container.decode(stream):
                chunks.extend(planar.to_ndarray() for planar in to_planar_float.resample(frame))
            chunks.extend(planar.to_ndarray() for planar in to_planar_float.resample(None))
            if not chunks:
                raise AudioDecodeError(path, "no audio samples")
            samples = np.concatenate(chunks, axis=1).T
            rate = stream.codec_context.sample_rate
            info = AudioInfo(
                sample_rate=rate,
                channels=samples.shape[1],
                codec=f"{container.format.name.split(',')[0]}/{stream.codec_context.name}",
                duration=samples.shape[0] / rate,
            )
    except av.FFmpegError as exc:
        # FFmpeg's own words: "Invalid data found when processing input", "No such file or directory".
        raise AudioDecodeError(path, f"not readable as audio: {exc.strerror or exc}") from None
    return samples, info

