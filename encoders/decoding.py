"""Decode, resample and window audio files in worker processes, a bounded amount ahead.

Decoding is most of the cost of indexing (about 5 ms a 5-s clip on one core, against a
fraction of a millisecond of GPU time a window), so it runs on every core while the caller
feeds the model. Files are handed to workers as they finish the ones before, a couple
ahead, so a worker that draws a long recording, or runs on a busy core, holds up no one:
with fixed shares, the last worker to finish kept the others idle (a tenth of a run of
2,000 clips on the H100 machine). Each worker streams its files (``AudioStream``,
``stream_windows``), so a multi-hour file never sits whole in memory.

The hand-over is what one receiving process pays for every file, so it is kept to almost
nothing: each worker owns a ring of slots in shared memory, writes a piece's windows into
the next free slot and sends only their lengths and times through its pipe. The caller reads
the samples in place; the slot goes back to the worker when the caller asks for the next
piece. (torch's shared-memory tensors, used before, cost the receiver 1.4 ms a hand-over:
docs/benchmarks.md.)

A worker that dies, say a decoder crashing on a corrupt file, is replaced: the file it was
reading comes back with the reason, and the files it held next go to the new worker.
"""

from __future__ import annotations

import collections
import dataclasses
import mmap
import multiprocessing
import os
import signal
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import NamedTuple

import numpy as np

from .audio import AudioDecodeError, AudioInfo, AudioStream, stream_windows, unpack

# Windows handed over at once (a piece), and slots per worker: a worker decodes up to
# SLOTS pieces ahead of the caller, about 40 MB of address space a worker at 7 s and
# 44.1 kHz, of which a library of short clips touches a few MB.
WINDOWS_PER_PIECE = 8
SLOTS = 4
# Files a worker holds: the one it reads and the next, so it never waits for the caller to
# hand it work.
FILES_AHEAD = 2
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


def _pieces(paths: list[str], numbers: Iterable[int], sample_rate: int, window_seconds: float,
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
    slots: np.ndarray  # (SLOTS, slot_samples) float32 over this worker's shared memory
    held: collections.deque[int] = dataclasses.field(default_factory=collections.deque)  # files sent, not done
    process: multiprocessing.Process | None = None
    connection: Connection | None = None  # pieces, from the worker
    files: Connection | None = None  # file numbers, to the worker; None after the last
    free_slots: object = None  # a semaphore counting the slots the worker may write
    told_to_stop: bool = False


class _WorkerPool:
    def __init__(self, paths: list[str], sample_rate: int, window_seconds: float, hop_seconds: float | None,
                 workers: int):
        # fork: the workers inherit the paths and the anonymous shared memory, and start in
        # milliseconds without importing anything again. They never touch CUDA.
        self.context = multiprocessing.get_context("fork")
        self.job = (paths, sample_rate, window_seconds, hop_seconds)
        self.next_file = 0
        slot_samples = WINDOWS_PER_PIECE * round(window_seconds * sample_rate)
        self.workers = [_Worker(np.frombuffer(mmap.mmap(-1, SLOTS * slot_samples * 4), np.float32)
                                .reshape(SLOTS, slot_samples))
                        for _ in range(workers)]
        for worker in self.workers:
            self._start(worker)
        for _ in range(FILES_AHEAD):  # round robin, so few files still spread over every worker
            for worker in self.workers:
                self._hand_out(worker)

    def _start(self, worker: _Worker) -> None:
        receiving, sending = self.context.Pipe(duplex=False)
        files_in, worker.files = self.context.Pipe(duplex=False)
        worker.free_slots = self.context.Semaphore(SLOTS)
        worker.process = self.context.Process(
            target=_work, args=(worker.slots, worker.free_slots, sending, files_in, *self.job, os.getpid()), daemon=True)
        worker.process.start()
        sending.close()  # the worker's ends: EOF here once the worker is gone
        files_in.close()
        worker.connection, worker.told_to_stop = receiving, False
        for number in worker.held:  # a replacement takes over what its predecessor held
            worker.files.send(number)

    def _hand_out(self, worker: _Worker) -> None:
        """The next file to ``worker``, or, once every file is handed out, word to stop after
        the ones it holds."""
        if self.next_file < len(self.job[0]):
            worker.files.send(self.next_file)
            worker.held.append(self.next_file)
            self.next_file += 1
        elif not worker.told_to_stop:
            worker.files.send(None)
            worker.told_to_stop = True

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
                if message is None:  # told to stop, and done
                    del live[connection]
                    worker.process.join()
                    continue
                slot, number, starts, ends, lengths, done, info, error = message
                if done:
                    worker.held.popleft()
                    self._hand_out(worker)
                samples = unpack(worker.slots[slot], lengths) if slot >= 0 else []
                yield Piece(number, starts, ends, samples, done, info, error)
                if slot >= 0:
                    worker.free_slots.release()  # the caller is done with the samples

    def _replace(self, worker: _Worker, live: dict) -> Iterator[Piece]:
        """The file a dead worker was reading fails with the reason; the files it held next
        go to a new worker."""
        worker.process.join()
        worker.connection.close()
        worker.files.close()
        if not worker.held:
            return
        code = worker.process.exitcode
        cause = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        yield Piece(worker.held.popleft(), [], [], [], True, None, f"the decoder crashed on this file ({cause})")
        if not worker.held and self.next_file == len(self.job[0]):
            return
        self._start(worker)
        live[worker.connection] = worker
        while len(worker.held) < FILES_AHEAD and not worker.told_to_stop:
            self._hand_out(worker)

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join()
            worker.connection.close()
            worker.files.close()
        # The shared memory is unmapped with the last view of it, which the caller may still hold.
        self.workers = []


def _work(slots: np.ndarray, free_slots, connection: Connection, files: Connection, paths: list[str],
          sample_rate: int, window_seconds: float, hop_seconds: float | None, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    turn = 0
    try:
        for piece in _pieces(paths, _handed_out(files, parent), sample_rate, window_seconds, hop_seconds):
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
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the parent is gone or closed us


def _handed_out(files: Connection, parent: int) -> Iterator[int]:
    """The file numbers the parent hands this worker, until it says stop or is gone."""
    while True:
        # Siblings forked later hold copies of the parent's end of this pipe, so the
        # parent's death shows here as silence, not as end of file.
        while not files.poll(PARENT_CHECK_SECONDS):
            if os.getppid() != parent:
                return
        if (number := files.recv()) is None:
            return
        yield number
