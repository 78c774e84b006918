"""Decode, resample and window audio files in worker processes, a bounded amount ahead.

Decoding is most of the cost of indexing (7.3 ms a 5-s clip on one core, against a fraction
of a millisecond of GPU time a window), so it runs on every core while the caller feeds the
model. Each worker takes every n-th file and streams it (``AudioStream``, ``stream_windows``),
handing its windows over a few at a time, so a multi-hour file never sits whole in memory.
Samples travel as torch tensors, which ``torch.multiprocessing`` moves through shared memory
instead of pickling them through a pipe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .audio import AudioDecodeError, AudioInfo, AudioStream, stream_windows

# Windows handed over at once, and hand-overs in flight per worker: about 40 MB a worker at
# 7 s and 44.1 kHz, enough to keep decoding while the model works on a batch.
WINDOWS_PER_PIECE = 8
AHEAD_PER_WORKER = 4


class Piece(NamedTuple):
    """Consecutive windows of one file; a file's last piece says how its reading ended."""

    number: int  # the file's place in the paths given
    starts: list[float]  # seconds
    ends: list[float]
    samples: list[np.ndarray]  # mono float32 windows; one shorter than a window for a short file
    done: bool  # the file's last piece
    info: AudioInfo | None  # with done, when the file was read to its end
    error: str | None  # with done, why it could not be read


def default_workers() -> int:
    return len(os.sched_getaffinity(0))


def decode_windows(paths: Sequence[str | os.PathLike], sample_rate: int, window_seconds: float,
                   hop_seconds: float | None = None, workers: int | None = None) -> Iterator[Piece]:
    """The windows of every file in ``paths`` as ``Piece``s: a file's pieces in order, files
    interleaved across ``workers`` processes (default: one per core; 0 reads in this process)."""
    paths = [os.fspath(path) for path in paths]
    workers = min(default_workers() if workers is None else workers, len(paths))
    if workers <= 1:
        yield from _pieces(paths, range(len(paths)), sample_rate, window_seconds, hop_seconds)
        return
    files = _Files(paths, sample_rate, window_seconds, hop_seconds)
    loader = DataLoader(files, batch_size=None, num_workers=workers, collate_fn=_as_is,
                        prefetch_factor=AHEAD_PER_WORKER, worker_init_fn=_one_thread)
    for number, starts, ends, packed, lengths, done, info, error in loader:
        samples = np.split(packed.numpy(), np.cumsum(lengths)[:-1]) if lengths else []
        yield Piece(number, starts, ends, samples, done, info, error)


class _Files(IterableDataset):
    def __init__(self, paths: list[str], sample_rate: int, window_seconds: float, hop_seconds: float | None):
        self.paths, self.sample_rate, self.window_seconds, self.hop_seconds = paths, sample_rate, window_seconds, hop_seconds

    def __iter__(self):
        worker = get_worker_info()
        numbers = range(worker.id, len(self.paths), worker.num_workers)
        for piece in _pieces(self.paths, numbers, self.sample_rate, self.window_seconds, self.hop_seconds):
            # One tensor a piece: one shared-memory hand-over instead of one per window.
            packed = torch.from_numpy(np.concatenate(piece.samples)) if piece.samples else torch.empty(0)
            yield (piece.number, piece.starts, piece.ends, packed, [len(s) for s in piece.samples],
                   piece.done, piece.info, piece.error)


def _pieces(paths: list[str], numbers: Sequence[int], sample_rate: int, window_seconds: float,
            hop_seconds: float | None) -> Iterator[Piece]:
    for number in numbers:
        starts, ends, samples = [], [], []
        try:
            with AudioStream(paths[number], sample_rate) as audio:
                for window in stream_windows(audio.blocks(), sample_rate, window_seconds, hop_seconds):
                    starts.append(window.start)
                    ends.append(window.end)
                    samples.append(window.samples)
                    if len(samples) == WINDOWS_PER_PIECE:
                        yield Piece(number, starts, ends, samples, False, None, None)
                        starts, ends, samples = [], [], []
                info, error = audio.info(), None
        except AudioDecodeError as exc:
            info, error = None, exc.reason
        except Exception as exc:  # a decoder's surprise about one file must not end the run
            info, error = None, f"{type(exc).__name__}: {exc}"
        yield Piece(number, starts, ends, samples, True, info, error)


def _as_is(item):
    return item


def _one_thread(_worker: int) -> None:
    # Each worker is one core's worth of decoding; torch's own threads would oversubscribe.
    torch.set_num_threads(1)
