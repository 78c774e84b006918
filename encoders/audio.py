"""Audio files to mono float32 samples at a model's rate, and those samples to windows.

libsndfile (through soundfile) reads WAV, FLAC, AIFF, Ogg Vorbis, Opus and MP3 quickly and
exactly; what it rejects (M4A/AAC, odd containers) goes through FFmpeg (through PyAV).
Library files in Ogg Vorbis and FLAC are decoded by miniaudio's stb_vorbis and dr_flac
instead: the same samples (within 4e-7; FLAC bit for bit) for 1.3 to 1.9 times less CPU,
and decoding is most of what indexing costs (docs/benchmarks.md). Those decoders are fuzzed
less than libsndfile, so only named files take that path (the indexer's decoders run in
worker processes that survive a crash); uploads, as open binary files, go to libsndfile.

Files are read block by block (``AudioStream``, ``stream_windows``), so a multi-hour
recording costs a few blocks and one window of memory, not the whole file. Resampling is
libswresample's (through PyAV): a polyphase filter whose cost does not grow with the rate
ratio, where a sinc kernel built from the reduced fraction (44101 -> 44100 Hz) would be huge.
PyAV is imported where it is needed: a library of WAV, FLAC or Ogg at the model's rate never
loads its FFmpeg.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

import miniaudio
import numpy as np
import soundfile

# Native frames read at a time: about 6 s at 44.1 kHz, so a short clip is one read (each
# read costs a copy); 16 MB at most, for 16 channels.
BLOCK_FRAMES = 1 << 18

# What clapdex reads as audio: a file extension -> its format family, as filters name it. The
# scan indexes these, a query names these, the page offers to upload these.
AUDIO_EXTENSIONS = {
    ".wav": "wav", ".wave": "wav", ".flac": "flac", ".aif": "aiff", ".aiff": "aiff", ".ogg": "ogg", ".oga": "ogg",
    ".opus": "opus", ".mp3": "mp3", ".m4a": "m4a", ".aac": "m4a",  # m4a: AAC, in MP4 or raw ADTS
}

# libsndfile's subtypes -> bits a sample, of integer PCM or float; lossy ones have none.
SUBTYPE_BITS = {
    "PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64,
    "ALAC_16": 16, "ALAC_20": 20, "ALAC_24": 24, "ALAC_32": 32,
}


class AudioDecodeError(Exception):
    """A file could not be read as audio: missing, unreadable, corrupt, empty or not audio."""

    def __init__(self, path: str | os.PathLike | BinaryIO, reason: str):
        self.path = _name_of(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # rebuilt from its fields when it crosses to another process
        return type(self), (self.path, self.reason)


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

    ``sample_rate``, ``channels``, ``codec`` and ``bit_depth`` describe the file, and
    ``decoder`` names the library decoding it; all are known once opened. ``info()`` (with
    the duration) is known once ``blocks()`` has been read to the end, since compressed
    streams only know their length by decoding it.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, sample_rate: int):
        self.source, self.target_rate = source, sample_rate
        self.frames = 0  # native frames decoded so far
        self._sound = self._container = self._decoder = None
        # libsndfile's open of an Ogg file costs a tenth of decoding it (it sets up its own
        # Vorbis decoder): a file that stb_vorbis takes is never opened by libsndfile.
        if _is_file_name(source) and (decoder := _MiniaudioDecoder.open(source, vorbis_only=True)):
            self._use(decoder, codec="ogg/vorbis", bit_depth=None)
            return
        self.decoder = "libsndfile"
        try:
            self._sound = soundfile.SoundFile(source)
        except soundfile.LibsndfileError:
            if not _is_file_name(source):
                source.seek(0)  # libsndfile read part of it before giving up
            self._open_ffmpeg()
        except OSError as exc:  # permissions, a directory, a vanished file
            raise AudioDecodeError(source, exc.strerror or str(exc)) from None
        else:
            self.sample_rate, self.channels = self._sound.samplerate, self._sound.channels
            self.codec = f"{self._sound.format}/{self._sound.subtype}".lower()
            self.bit_depth = SUBTYPE_BITS.get(self._sound.subtype)
            if (self._sound.format == "FLAC" and _is_file_name(source)
                    and (decoder := _MiniaudioDecoder.open(source, vorbis_only=False))):
                declared = self._sound.frames if self._sound.frames < 1 << 40 else 0  # huge: length unknown
                self._sound.close()
                self._sound = None
                self._use(decoder, self.codec, self.bit_depth, declared)

    def _use(self, decoder: _MiniaudioDecoder | _VorbisDecoder, codec: str, bit_depth: int | None, declared_frames: int = 0) -> None:
        # dr_flac skips a frame that fails its checksum, and stops where a file is cut short,
        # without a word; libsndfile called such files unreadable, and so do we, by their length.
        self._decoder, self._declared_frames = decoder, declared_frames
        self.decoder = decoder.name
        self.sample_rate, self.channels, self.codec, self.bit_depth = decoder.sample_rate, decoder.channels, codec, bit_depth

    def _open_ffmpeg(self) -> None:
        import av

        self.decoder = "ffmpeg"
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
        next(reader for reader in (self._decoder, self._sound, self._container) if reader is not None).close()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def info(self) -> AudioInfo:
        return AudioInfo(self.sample_rate, self.channels, self.codec, self.frames / self.sample_rate, self.bit_depth)

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the target rate, in order; raises AudioDecodeError midway on
        corrupt data, and at the end if there was no audio at all."""
        if self._decoder is not None:
            native = self._native_blocks_miniaudio()
        elif self._sound is not None:
            native = self._native_blocks_soundfile()
        else:
            native = self._native_blocks_ffmpeg()
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

    def _native_blocks_miniaudio(self) -> Iterator[np.ndarray]:
        # These decoders fill a block unless the stream ends in it, so a short block is the last:
        # a clip is one read, not a second that finds nothing.
        while len(block := self._decoder.read(BLOCK_FRAMES)):
            yield self._counted(block)
            if len(block) < BLOCK_FRAMES:
                break
        if self.frames < self._declared_frames:
            raise AudioDecodeError(self.source, f"not readable as audio: damaged or cut short ({self.frames} of the "
                                                f"{self._declared_frames} frames it declares decode)")

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


class _MiniaudioDecoder:
    """An Ogg Vorbis or FLAC file decoded by miniaudio from a memory map of it, at its own
    rate and channels. Decoding from memory skips miniaudio's small buffered file reads,
    which cost a fifth of the decoding."""

    ENCODINGS = {b"OggS": "vorbis", b"fLaC": "flac"}  # the files' first four bytes
    NAMES = {"vorbis": "stb_vorbis", "flac": "dr_flac"}

    def __init__(self, path: str, mapped: mmap.mmap, encoding: str):
        self.path, self._mapped, self.name = path, mapped, self.NAMES[encoding]
        self._data = miniaudio.ffi.from_buffer(mapped)  # keeps the map alive while decoding
        self._decoder = miniaudio.ffi.new("ma_decoder *")
        config = miniaudio.lib.ma_decoder_config_init(miniaudio.lib.ma_format_f32, 0, 0)  # 0, 0: as the file holds them
        config.encodingFormat = getattr(miniaudio.lib, f"ma_encoding_format_{encoding}")
        self._opened = miniaudio.lib.ma_decoder_init_memory(
            self._data, len(mapped), miniaudio.ffi.addressof(config), self._decoder) == miniaudio.lib.MA_SUCCESS
        self.channels, self.sample_rate = self._decoder.outputChannels, self._decoder.outputSampleRate
        self._read = miniaudio.ffi.new("ma_uint64 *")

    @classmethod
    def open(cls, path: str | os.PathLike, vorbis_only: bool) -> _MiniaudioDecoder | _VorbisDecoder | None:
        """A decoder when ``path`` holds what miniaudio decodes here (with ``vorbis_only``,
        Ogg Vorbis alone); else None, and libsndfile or FFmpeg says what the file is."""
        try:
            with open(path, "rb") as file:
                encoding = cls.ENCODINGS.get(file.read(4))
                if encoding is None or (vorbis_only and encoding != "vorbis"):
                    return None
                mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # unreadable, or not mappable (a pipe): the others explain
            return None
        # stb_vorbis checks no page checksums: a damaged page would decode to loud garbage.
        # libogg skips such pages, so libsndfile reads what is left, as it always did.
        if encoding == "vorbis" and not _ogg_pages_intact(mapped):
            mapped.close()
            return None
        if encoding == "vorbis":
            vorbis = _VorbisDecoder(os.fspath(path), mapped)
            if vorbis.channels in (1, 2) and vorbis.sample_rate:
                return vorbis
            # More channels: miniaudio's decoder moves them into its own layout, mixing some, and
            # the mono mix of those is what such files have always been indexed as. (Or stb_vorbis
            # could not open it: miniaudio's decoder says so the same way.)
            vorbis.close_stream()
        decoder = cls(os.fspath(path), mapped, encoding)
        if decoder._opened and decoder.channels and decoder.sample_rate:
            return decoder
        decoder.close()  # Opus or FLAC inside Ogg, or a corrupt file
        return None

    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` (frames, channels) float32; empty at the end."""
        block = np.empty((frames, self.channels), np.float32)
        result = miniaudio.lib.ma_decoder_read_pcm_frames(
            self._decoder, miniaudio.ffi.from_buffer(block), frames, self._read)
        if result not in (miniaudio.lib.MA_SUCCESS, miniaudio.lib.MA_AT_END):
            raise AudioDecodeError(self.path, f"not readable as audio: the decoder stopped with miniaudio error {result}")
        return block[: self._read[0]]

    def close(self) -> None:
        if self._opened:
            miniaudio.lib.ma_decoder_uninit(self._decoder)
            self._opened = False
        self._data = None
        self._mapped.close()


class _VorbisDecoder:
    """An Ogg Vorbis file of one or two channels decoded by stb_vorbis (miniaudio's copy) from a
    memory map of it, called directly rather than through miniaudio's decoder: that asks for the
    channels interleaved, and stb_vorbis's sample by sample interleaving loop was 5% of a clip's
    decoding, where one channel at a time is a copy. The samples are the same, bit for bit
    (``bench/probes/decode_compare.py``, docs/benchmarks.md)."""

    name = "stb_vorbis"

    def __init__(self, path: str, mapped: mmap.mmap):
        self.path, self._mapped = path, mapped
        self._data = miniaudio.ffi.from_buffer(mapped)  # keeps the map alive while decoding
        error = miniaudio.ffi.new("int *")
        self._vorbis = miniaudio.lib.stb_vorbis_open_memory(self._data, len(mapped), error, miniaudio.ffi.NULL)
        self.channels = self.sample_rate = 0
        if self._vorbis != miniaudio.ffi.NULL:
            info = miniaudio.lib.stb_vorbis_get_info(self._vorbis)
            self.channels, self.sample_rate = info.channels, info.sample_rate

    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` (frames, channels) float32, a view of the channels laid one after the
        other; empty at the end. Like miniaudio's decoder, it ends where stb_vorbis stops decoding."""
        planes = np.empty((self.channels, frames), np.float32)
        pointers = miniaudio.ffi.new("float *[]", [miniaudio.ffi.cast("float *", miniaudio.ffi.from_buffer(plane))
                                                   for plane in planes])
        read = miniaudio.lib.stb_vorbis_get_samples_float(self._vorbis, self.channels, pointers, frames)
        return planes[:, :read].T

    def close_stream(self) -> None:
        """End the decoding, keeping the memory map."""
        if self._vorbis is not None and self._vorbis != miniaudio.ffi.NULL:
            miniaudio.lib.stb_vorbis_close(self._vorbis)
        self._vorbis = self._data = None

    def close(self) -> None:
        self.close_stream()
        self._mapped.close()


# Ogg's CRC-32 is zlib's polynomial unreflected, from zero and with no final inversion; zlib
# computes it over bit-reversed bytes, and the register read backwards is Ogg's.
_BIT_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def _ogg_crc(page: bytes) -> int:
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def _ogg_pages_intact(data: mmap.mmap) -> bool:
    """Whether ``data`` is whole Ogg pages end to end, each with its checksum right."""
    at, end = 0, len(data)
    while at < end:
        # A page: "OggS", version, flags, granule (8), serial (4), sequence (4), CRC (4),
        # segment count, segment sizes, then the segments.
        if end - at < 27 or data[at : at + 4] != b"OggS":
            return False
        header = 27 + data[at + 26]
        size = header + sum(data[at + 27 : at + header])
        if end - at < size:
            return False
        page = bytearray(data[at : at + size])
        stored, page[22:26] = int.from_bytes(page[22:26], "little"), bytes(4)  # summed with its CRC zeroed
        if _ogg_crc(page) != stored:
            return False
        at += size
    return True


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
    """The windows ``windows`` describes, cut from the concatenated ``blocks``, holding only
    about one window of samples at a time. Windows are views of the blocks (overlapping ones
    share samples): copy one before changing it."""
    size = round(window_seconds * sample_rate)
    hop = round((hop_seconds or window_seconds) * sample_rate)
    if size <= 0 or hop <= 0:
        raise ValueError(f"window ({window_seconds} s) and hop ({hop_seconds} s) must be positive")
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


def unpack(packed: np.ndarray, lengths: list[int], starts: list[int] | None = None) -> list[np.ndarray]:
    """Clips of ``lengths`` samples in ``packed``, as views: laid end to end from its start, or
    each at its ``starts`` (overlapping, as windows of one recording do)."""
    if starts is None:
        starts = np.cumsum([0, *lengths[:-1]]).tolist()
    return [packed[start : start + length] for start, length in zip(starts, lengths)]


def windows(
    samples: np.ndarray, sample_rate: int, window_seconds: float, hop_seconds: float | None = None
) -> list[Window]:
    """Cut ``samples`` into windows that cover all of it: ``stream_windows`` over one block.

    Windows start at 0, hop, 2*hop, ...; when the last of those stops short of the end, one
    more window is aligned to the end, so every window is full length and no sound is
    missed. Audio shorter than one window is one short window (the encoder tiles it); empty
    audio has none. Windows are views of ``samples`` (as float32).
    """
    return list(stream_windows([samples], sample_rate, window_seconds, hop_seconds))


def _is_file_name(source) -> bool:
    return isinstance(source, (str, os.PathLike))


def _name_of(source) -> str:
    return os.fspath(source) if _is_file_name(source) else getattr(source, "name", None) or "uploaded audio"
