"""Decode, resample and window audio files in worker processes, a bounded amount ahead.

Decoding is most of the cost of indexing (about 5 ms a 5-s clip on one core, against a
fraction of a millisecond of GPU time a window), so it runs on every core while the caller
feeds the model. Each worker takes every n-th file and streams it (``AudioStream``,
``stream_windows``), so a multi-hour file never sits whole in memory.

The hand-over is what one receiving process pays for every file, so it is kept to almost
nothing: each worker owns a ring of slots in shared memory, writes a piece's windows into
the next free slot and sends only their lengths and times through its pipe. The caller reads
the samples in place; the slot goes back to the worker when the caller asks for the next
piece. (torch's shared-memory tensors, used before, cost the receiver 1.4 ms a hand-over:
docs/benchmarks.md.)

A worker that dies, say a decoder crashing on a corrupt file, is replaced: the file it was
reading comes back with the reason, and the rest of its share goes on in a new worker.
"""

from __future__ import annotations

import dataclasses
import mmap
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import NamedTuple

import numpy as np

from .audio import AudioDecodeError, AudioInfo, AudioStream, stream_windows, unpack

# Windows handed over at once (a piece), and slots per worker: a worker decodes up to
# SLOTS pieces ahead of the caller, about 40 MB of address space a worker at 7 s and
# 44.1 kHz, of which a library of short clips touches a few MB.
WINDOWS_PER_PIECE = 8
SLOTS = 4
# How often a worker blocked on a full ring checks that its parent is still alive.
PARENT_CHECK_SECONDS = 1.0


class Piece(NamedTuple):
    """Consecutive windows of one file; a file's last piece says how its reading ended.

    From worker processes, ``samples`` are views into shared memory that the worker reuses
    once the next piece is asked for: copy what you keep.
    """

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
    pool = _WorkerPool(paths, sample_rate, window_seconds, hop_seconds, workers)
    try:
        yield from pool.pieces()
    finally:
        pool.close()


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


@dataclasses.dataclass(eq=False)
class _Worker:
    share: list[int]  # the file numbers this worker decodes, in order
    slots: np.ndarray  # (SLOTS, slot_samples) float32 over this worker's shared memory
    done: int = 0  # files of the share whose last piece has arrived
    process: multiprocessing.Process | None = None
    connection: Connection | None = None
    free_slots: object = None  # a semaphore counting the slots the worker may write


class _WorkerPool:
    def __init__(self, paths: list[str], sample_rate: int, window_seconds: float, hop_seconds: float | None,
                 workers: int):
        # fork: the workers inherit the paths and the anonymous shared memory, and start in
        # milliseconds without importing anything again. They never touch CUDA.
        self.context = multiprocessing.get_context("fork")
        self.job = (paths, sample_rate, window_seconds, hop_seconds)
        slot_samples = WINDOWS_PER_PIECE * round(window_seconds * sample_rate)
        self.workers = [_Worker(list(range(first, len(paths), workers)),
                                np.frombuffer(mmap.mmap(-1, SLOTS * slot_samples * 4), np.float32)
                                .reshape(SLOTS, slot_samples))
                        for first in range(workers)]
        for worker in self.workers:
            self._start(worker)

    def _start(self, worker: _Worker) -> None:
        receiving, sending = self.context.Pipe(duplex=False)
        worker.free_slots = self.context.Semaphore(SLOTS)
        worker.process = self.context.Process(
            target=_work, args=(worker.slots, worker.free_slots, sending, worker.share[worker.done:], *self.job,
                                os.getpid()), daemon=True)
        worker.process.start()
        sending.close()  # the worker's end: EOF here once the worker is gone
        worker.connection = receiving

    def pieces(self) -> Iterator[Piece]:
        live = {worker.connection: worker for worker in self.workers}
        while live:
            for connection in wait(list(live)):
                worker = live[connection]
                try:
                    message = connection.recv()
                except EOFError:  # died without saying it had finished
                    del live[connection]
                    yield from self._replace(worker, live)
                    continue
                if message is None:  # its share is done
                    del live[connection]
                    worker.process.join()
                    continue
                slot, number, starts, ends, lengths, done, info, error = message
                samples = unpack(worker.slots[slot], lengths) if slot >= 0 else []
                yield Piece(number, starts, ends, samples, done, info, error)
                if slot >= 0:
                    worker.free_slots.release()  # the caller is done with the samples
                worker.done += done

    def _replace(self, worker: _Worker, live: dict) -> Iterator[Piece]:
        """The file a dead worker was reading fails with the reason; the rest of its share
        goes to a new worker."""
        worker.process.join()
        worker.connection.close()
        if worker.done == len(worker.share):
            return
        code = worker.process.exitcode
        cause = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        yield Piece(worker.share[worker.done], [], [], [], True, None, f"the decoder crashed on this file ({cause})")
        worker.done += 1
        if worker.done < len(worker.share):
            self._start(worker)
            live[worker.connection] = worker

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join()
            worker.connection.close()
        # The shared memory is unmapped with the last view of it, which the caller may still hold.
        self.workers = []


def _work(slots: np.ndarray, free_slots, connection: Connection, numbers: list[int], paths: list[str],
          sample_rate: int, window_seconds: float, hop_seconds: float | None, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    turn = 0
    try:
        for piece in _pieces(paths, numbers, sample_rate, window_seconds, hop_seconds):
            slot = -1
            if piece.samples:
                while not free_slots.acquire(timeout=PARENT_CHECK_SECONDS):
                    if os.getppid() != parent:
                        return  # orphaned (the parent was killed): nobody will free a slot
                slot, turn = turn, (turn + 1) % SLOTS  # the parent frees slots in the order they were sent
                np.concatenate(piece.samples, out=slots[slot, : sum(len(s) for s in piece.samples)])
            connection.send((slot, piece.number, piece.starts, piece.ends, [len(s) for s in piece.samples],
                             piece.done, piece.info, piece.error))
        connection.send(None)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone or closed us
