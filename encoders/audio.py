"""Audio files to mono float32 samples at a model's rate, and those samples to windows.

libsndfile (through soundfile) reads WAV, FLAC, AIFF, Ogg Vorbis, Opus and MP3 quickly and
exactly; what it rejects (M4A/AAC, odd containers) goes through FFmpeg (through PyAV).

Files are read block by block (``AudioStream``, ``stream_windows``), so a multi-hour
recording costs a few blocks and one window of memory, not the whole file. Resampling is
libswresample's (through PyAV): a polyphase filter whose cost does not grow with the rate
ratio, where a sinc kernel built from the reduced fraction (44101 -> 44100 Hz) would be huge.
PyAV is imported where it is needed: a library of WAV, FLAC or Ogg at the model's rate never
loads its FFmpeg.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

import numpy as np
import soundfile

# Native frames read at a time: about 6 s at 44.1 kHz, so a short clip is one read (each
# read costs a copy); 16 MB at most, for 16 channels.
BLOCK_FRAMES = 1 << 18


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
    bit_depth: int | None = None  # of integer PCM or float samples; None for lossy codecs


class Window(NamedTuple):
    start: float  # seconds from the start of the file
    end: float
    samples: np.ndarray


class AudioStream:
    """An audio file opened for reading in blocks of mono float32 at ``sample_rate``.

    ``sample_rate``, ``channels``, ``codec`` and ``bit_depth`` describe the file and are
    known once opened; ``info()`` (with the duration) once ``blocks()`` has been read to the
    end, since compressed streams only know their length by decoding it.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, sample_rate: int):
        self.source, self.target_rate = source, sample_rate
        self.frames = 0  # native frames decoded so far
        try:
            self._sound = soundfile.SoundFile(source)
        except soundfile.LibsndfileError:
            if not _is_file_name(source):
                source.seek(0)  # libsndfile read part of it before giving up
            self._sound = None
            self._open_ffmpeg()
        except OSError as exc:  # permissions, a directory, a vanished file
            raise AudioDecodeError(source, exc.strerror or str(exc)) from None
        else:
            self.sample_rate, self.channels = self._sound.samplerate, self._sound.channels
            self.codec = f"{self._sound.format}/{self._sound.subtype}".lower()
            self.bit_depth = _SUBTYPE_BITS.get(self._sound.subtype)

    def _open_ffmpeg(self) -> None:
        import av

        try:
            self._container = av.open(os.fspath(self.source) if _is_file_name(self.source) else self.source)
        except av.FFmpegError as exc:
            # FFmpeg's own words: "Invalid data found when processing input", "No such file or directory".
            raise AudioDecodeError(self.source, f"not readable as audio: {exc.strerror or exc}") from None
        if not self._container.streams.audio:
            self._container.close()
            raise AudioDecodeError(self.source, "no audio stream")
        self._stream = self._container.streams.audio[0]
        context = self._stream.codec_context  # None when FFmpeg has no decoder for the codec
        if context is None or not context.sample_rate:
            tag = getattr(self._stream, "codec_tag", None) or "unknown"
            self._container.close()
            raise AudioDecodeError(self.source, f"unsupported audio codec ({tag})")
        self.sample_rate, self.channels = context.sample_rate, context.channels
        self.codec = f"{self._container.format.name.split(',')[0]}/{context.name}"
        self.bit_depth = context.bits_per_raw_sample or None if context.name.startswith(("pcm", "flac", "alac")) else None

    def close(self) -> None:
        (self._sound or self._container).close()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def info(self) -> AudioInfo:
        return AudioInfo(self.sample_rate, self.channels, self.codec, self.frames / self.sample_rate, self.bit_depth)

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the target rate, in order; raises AudioDecodeError midway on
        corrupt data, and at the end if there was no audio at all."""
        native = self._native_blocks_soundfile() if self._sound is not None else self._native_blocks_ffmpeg()
        yield from _resample_blocks((_clean(to_mono(block)) for block in native), self.sample_rate, self.target_rate)
        if self.frames == 0:
            raise AudioDecodeError(self.source, "no audio samples")

    def _native_blocks_soundfile(self) -> Iterator[np.ndarray]:
        try:
            # read(), not blocks(): blocks() copies every block it has read.
            while len(block := self._sound.read(BLOCK_FRAMES, dtype="float32", always_2d=True)):
                self.frames += len(block)
                yield block
        except soundfile.LibsndfileError as exc:
            raise AudioDecodeError(self.source, f"not readable as audio: {exc}") from None

    def _native_blocks_ffmpeg(self) -> Iterator[np.ndarray]:
        import av

        # Planar float keeps every channel apart and at full precision; we mix to mono ourselves.
        to_planar_float = av.AudioResampler(format="fltp")
        try:
            for frame in self._container.decode(self._stream):
                for planar in to_planar_float.resample(frame):
                    yield self._counted(planar.to_ndarray().T)
            for planar in to_planar_float.resample(None):
                yield self._counted(planar.to_ndarray().T)
        except av.FFmpegError as exc:
            raise AudioDecodeError(self.source, f"not readable as audio: {exc.strerror or exc}") from None

    def _counted(self, block: np.ndarray) -> np.ndarray:
        self.frames += len(block)
        return block


_SUBTYPE_BITS = {
    "PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64,
    "ALAC_16": 16, "ALAC_20": 20, "ALAC_24": 24, "ALAC_32": 32,
}


def read_audio(path: str | os.PathLike | BinaryIO, sample_rate: int) -> tuple[np.ndarray, AudioInfo]:
    """Decode ``path`` (a file name, or an open binary file such as an upload) to mono float32
    at ``sample_rate``, with what the file itself holds. The whole file is held: for long
    files, use ``stream_windows``."""
    with AudioStream(path, sample_rate) as stream:
        samples = np.concatenate(list(stream.blocks()))
        return samples, stream.info()


def load_audio(path: str | os.PathLike | BinaryIO, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a 1-D float32 array at ``sample_rate``; raises AudioDecodeError."""
    return read_audio(path, sample_rate)[0]


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average (frames, channels) to (frames,); 1-D input is already mono."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        return samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono ``samples`` from ``from_rate`` to ``to_rate`` (libswresample), as float32."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    pieces = list(_resample_blocks((samples[i : i + BLOCK_FRAMES] for i in range(0, len(samples), BLOCK_FRAMES)),
                                   from_rate, to_rate))
    return np.concatenate(pieces) if pieces else np.empty(0, np.float32)


def _resample_blocks(blocks: Iterable[np.ndarray], from_rate: int, to_rate: int) -> Iterator[np.ndarray]:
    if from_rate == to_rate:
        yield from (block for block in blocks if len(block))
        return
    import av

    # One resampler for the whole stream keeps the filter's state across block boundaries.
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    for block in blocks:
        if not len(block):
            continue
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block)[np.newaxis], format="flt", layout="mono")
        frame.sample_rate = from_rate
        for out in resampler.resample(frame):
            yield out.to_ndarray()[0]
    for out in resampler.resample(None):
        yield out.to_ndarray()[0]


def _clean(samples: np.ndarray) -> np.ndarray:
    # A corrupt float file can hold NaN or inf, which would poison every similarity score.
    # Checking first is a third of the cost of replacing, and almost every block is clean.
    if np.isfinite(samples).all():
        return samples
    return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)


def stream_windows(
    blocks: Iterable[np.ndarray], sample_rate: int, window_seconds: float, hop_seconds: float | None = None
) -> Iterator[Window]:
    """The windows ``windows`` would cut from the concatenated ``blocks``, holding only about
    one window of samples at a time. Windows are views of the blocks (overlapping ones share
    samples): copy one before changing it."""
    size, hop = _window_sizes(sample_rate, window_seconds, hop_seconds)
    held = np.empty(0, np.float32)
    held_from = 0  # sample index of held[0]
    total = next_start = covered = 0
    for block in blocks:
        held = np.concatenate([held, block]) if len(held) else np.asarray(block, np.float32)
        total += len(block)
        while next_start + size <= total:
            at = next_start - held_from
            yield Window(next_start / sample_rate, (next_start + size) / sample_rate, held[at : at + size])
            covered, next_start = next_start + size, next_start + hop
        # Keep what a later window may need: from the next start, and the last full window for the end.
        keep_from = max(held_from, min(next_start, total - size))
        held, held_from = held[keep_from - held_from :], keep_from
    if 0 < total <= size and covered == 0:
        yield Window(0.0, total / sample_rate, held)
    elif total > size and covered < total:
        yield Window((total - size) / sample_rate, total / sample_rate, held[len(held) - size :])


def window_clip(waveform, sample_rate: int, window_seconds: float) -> np.ndarray:
    """``waveform`` as float32 if it is what a model's ``embed_audio`` takes: a mono, non-empty
    clip of one window at most; else ValueError saying what to do instead."""
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"embed_audio takes mono 1-D arrays; got shape {samples.shape}. "
                         "Average the channels first, e.g. audio.mean(axis=0).")
    if samples.shape[0] == 0:
        raise ValueError("embed_audio got an empty clip")
    window = round(window_seconds * sample_rate)
    if samples.shape[0] > window:
        raise ValueError(f"embed_audio takes at most {window} samples ({window_seconds} s at "
                         f"{sample_rate} Hz); got {samples.shape[0]}. Cut longer audio into windows first.")
    return samples


def unpack(packed: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """Clips laid end to end at the start of ``packed``, of ``lengths`` samples each, as views."""
    bounds = np.cumsum([0, *lengths])
    return [packed[start:end] for start, end in zip(bounds, bounds[1:])]


def windows(
    samples: np.ndarray, sample_rate: int, window_seconds: float, hop_seconds: float | None = None
) -> list[Window]:
    """Cut ``samples`` into windows that cover all of it.

    Windows start at 0, hop, 2*hop, ...; when the last of those stops short of the end, one
    more window is aligned to the end, so every window is full length and no sound is
    missed. Audio shorter than one window is one short window (the encoder tiles it).
    """
    size, hop = _window_sizes(sample_rate, window_seconds, hop_seconds)
    total = len(samples)
    if total <= size:
        return [Window(0.0, total / sample_rate, samples)]
    starts = list(range(0, total - size + 1, hop))
    if starts[-1] + size < total:
        starts.append(total - size)
    return [
        Window(start / sample_rate, (start + size) / sample_rate, samples[start : start + size]) for start in starts
    ]


def _window_sizes(sample_rate: int, window_seconds: float, hop_seconds: float | None) -> tuple[int, int]:
    size = round(window_seconds * sample_rate)
    hop = round((hop_seconds or window_seconds) * sample_rate)
    if size <= 0 or hop <= 0:
        raise ValueError(f"window ({window_seconds} s) and hop ({hop_seconds} s) must be positive")
    return size, hop


def _is_file_name(source) -> bool:
    return isinstance(source, (str, os.PathLike))


def _name_of(source) -> str:
    return os.fspath(source) if _is_file_name(source) else getattr(source, "name", None) or "uploaded audio"
