"""Decode, resample and window audio files in worker processes, a bounded amount ahead.

Decoding is most of the cost of indexing (about 5 ms a 5-s clip on one core, against a
fraction of a millisecond of GPU time a window), so it runs on every core while the caller
feeds the model. Files are handed to workers as they finish the ones before, a couple
ahead, so a worker that draws a long recording, or runs on a busy core, holds up no one;
with fixed shares the first to finish waited for the last (workers were busy 77% of a run
of 2,000 clips on the H100 machine, their start included). Each worker streams its files
(``AudioStream``, ``stream_windows``), so a multi-hour file never sits whole in memory.

The workers outlive a call and serve the next one: forking a process that holds CUDA and a
model costs about 47 ms a worker on the H100 machine, so starting sixteen took 0.4 s, a
quarter of a run of 2,000 clips (docs/benchmarks.md). An index run therefore starts them
(``start_workers``) before it loads the model.

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

import atexit
import collections
import dataclasses
import logging
import mmap
import multiprocessing
import os
import selectors
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import NamedTuple

import numpy as np

from .audio import AudioDecodeError, AudioInfo, AudioStream, stream_windows, unpack
from .processes import exit_with_parent

log = logging.getLogger(__name__)

# Windows handed over at once (a piece), and slots per worker: a worker decodes up to
# SLOTS pieces ahead of the caller, in about 43 MB of address space, of which a library of
# short clips touches a few MB.
WINDOWS_PER_PIECE = 8
SLOTS = 4
# A slot's room: a piece of 7-s windows (MS-CLAP's, our longest) at up to 48 kHz, so that
# workers started before the model is known serve any of our models.
SLOT_SAMPLES = WINDOWS_PER_PIECE * 7 * 48000
# Files a worker holds: the one it reads and the next ones, so it never waits for the caller to
# hand it work. Two were not enough once the main thread had time to spare (an index run on an
# H200, 16 cores: decoders waited for a file 44% of their time; 4 ran 1,239 and 1,159 files/s
# against 1,190 and 1,132, docs/benchmarks.md section 1).
FILES_AHEAD = 4


class Piece(NamedTuple):
    """Consecutive windows of one file; a file's last piece says how its reading ended.

    The windows overlap as they do in the file (at half-window hops every sample is in two), so
    a piece holds its stretch of audio once, ``span``, and each window is a view of it:
    ``samples[i]`` is ``span[offsets[i] : offsets[i] + len(samples[i])]``.

    From worker processes, ``span`` is a view into shared memory that the worker reuses once
    the next piece is asked for: copy what you keep.
    """

    number: int  # the file's place in the paths given
    starts: list[float]  # seconds
    ends: list[float]
    samples: list[np.ndarray]  # mono float32 windows; one shorter than a window for a short file
    done: bool  # the file's last piece
    info: AudioInfo | None  # with done, when the file was read to its end
    error: str | None  # with done, why it could not be read
    span: np.ndarray = np.empty(0, np.float32)  # the windows' audio, each sample once
    offsets: list[int] = []  # where each window starts in span


def default_workers() -> int:
    return len(os.sched_getaffinity(0))


def decode_windows(paths: Iterable[str | os.PathLike], sample_rate: int, window_seconds: float,
                   hop_seconds: float | None = None, workers: int | None = None,
                   idle: Callable[[], bool] | None = None) -> Iterator[Piece]:
    """The windows of every file in ``paths`` as ``Piece``s: a file's pieces in order, files
    interleaved across ``workers`` processes (default: one per core; 0 reads in this process).

    ``paths`` may be an iterator that is still growing (an index run's scan): a path is taken
    from it when a worker has room for another file, and a file's number is the order taken.
    ``idle`` is called whenever no piece is waiting, to do some other work (the scan, ahead
    of the decoders) until it returns False, for nothing is left to do."""
    if isinstance(paths, Sequence):
        paths = [os.fspath(path) for path in paths]
    workers = default_workers() if workers is None else workers
    job = (sample_rate, window_seconds, hop_seconds)
    if workers <= 1 or (isinstance(paths, list) and len(paths) <= 1):
        for number, path in enumerate(paths):
            yield from decode_file(path, *job, number=number)
        return
    slot_samples = WINDOWS_PER_PIECE * round(window_seconds * sample_rate)
    kept = _kept_pool(workers, slot_samples)
    pool = _WorkerPool(workers, slot_samples) if kept.busy else kept  # a call inside another gets workers of its own
    try:
        yield from pool.pieces(iter(paths), job, idle)
    finally:
        if pool is not kept:
            pool.close()


def decode_file(path: str | os.PathLike, sample_rate: int, window_seconds: float, hop_seconds: float | None = None,
                number: int = 0) -> Iterator[Piece]:
    """The pieces of one file, decoded in this process (as ``decode_windows`` does with no workers,
    and a Ray decoding task does, ``indexer.cluster``); each piece's audio is its own."""
    for piece in _file_pieces(number, os.fspath(path), sample_rate, window_seconds, hop_seconds):
        yield _joined(piece, sample_rate)


def start_workers(workers: int | None = None) -> None:
    """Start the decoder processes now, so that they fork from a small process: after a model is
    on a GPU, each costs about 47 ms to fork (docs/benchmarks.md). ``decode_windows`` then uses
    them, for any model."""
    _kept_pool(default_workers() if workers is None else workers, SLOT_SAMPLES)


def _kept_pool(workers: int, slot_samples: int) -> _WorkerPool:
    """The kept pool of ``workers`` processes, with slots of at least ``slot_samples``."""
    kept = _POOLS.get(workers)
    if kept is None or kept.closed or kept.slot_samples < slot_samples:
        if kept is not None and not kept.closed and not kept.busy:
            kept.close()
        kept = _POOLS[workers] = _WorkerPool(workers, max(slot_samples, SLOT_SAMPLES))
    return kept


def _file_pieces(number: int, path: str, sample_rate: int, window_seconds: float,
                 hop_seconds: float | None) -> Iterator[Piece]:
    """The pieces of one file, not yet ``_joined``; their windows are views of the decoder's
    buffers, so each piece is to be used before the next is asked for."""
    starts, ends, samples = [], [], []
    try:
        with AudioStream(path, sample_rate) as audio:
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
        log.warning("%s: unexpected error decoding it; the file is skipped", path, exc_info=True)
        info, error = None, f"{type(exc).__name__}: {exc}"
    yield Piece(number, starts, ends, samples, True, info, error)


def _joined(piece: Piece, sample_rate: int, out: np.ndarray | None = None) -> Piece:
    """``piece`` with its windows laid into one stretch of audio (in ``out``, when given), each
    sample once, and its windows as views of it."""
    if not piece.samples:
        return piece
    firsts = [round(start * sample_rate) for start in piece.starts]
    offsets = [first - firsts[0] for first in firsts]
    length = max(offset + len(window) for offset, window in zip(offsets, piece.samples))
    span = np.empty(length, np.float32) if out is None else out[:length]
    written = 0  # windows start and end in order: what lies before this is in span already
    for offset, window in zip(offsets, piece.samples):
        new = max(written - offset, 0)
        if new < len(window):
            span[offset + new : offset + len(window)] = window[new:]
            written = offset + len(window)
    windows = [span[offset : offset + len(window)] for offset, window in zip(offsets, piece.samples)]
    return piece._replace(samples=windows, span=span, offsets=offsets)


@dataclasses.dataclass(eq=False)
class _Worker:
    slots: np.ndarray  # (SLOTS, slot_samples) float32 over this worker's shared memory
    held: collections.deque[int] = dataclasses.field(default_factory=collections.deque)  # files sent, not done
    process: multiprocessing.Process | None = None
    connection: Connection | None = None  # pieces, from the worker
    files: Connection | None = None  # files to read, to the worker
    free_slots: object = None  # a semaphore counting the slots the worker may write


class _WorkerPool:
    """``workers`` decoder processes and their slots, serving one call at a time."""

    def __init__(self, workers: int, slot_samples: int):
        # fork: the workers start in milliseconds without importing anything again, and
        # inherit the anonymous shared memory. They never touch CUDA.
        self.context = multiprocessing.get_context("fork")
        self.owner = os.getpid()  # a forked child holds a copy of this object, not the workers
        self.busy = self.closed = False
        self.slot_samples = slot_samples
        self.source: Iterator[str] = iter(())  # the call's paths not yet handed out
        self.paths: list[str] = []  # those handed out, by number
        self.job: tuple[int, float, float | None] | None = None  # the call's rate, window and hop
        self.workers = [_Worker(np.frombuffer(mmap.mmap(-1, SLOTS * slot_samples * 4), np.float32)
                                .reshape(SLOTS, slot_samples))
                        for _ in range(workers)]
        for worker in self.workers:
            self._start(worker)

    def _start(self, worker: _Worker) -> None:
        receiving, sending = self.context.Pipe(duplex=False)
        files_in, worker.files = self.context.Pipe(duplex=False)
        worker.free_slots = self.context.Semaphore(SLOTS)
        worker.process = self.context.Process(
            target=_work, args=(worker.slots, worker.free_slots, sending, files_in, os.getpid()), daemon=True)
        worker.process.start()
        sending.close()  # the worker's ends: EOF here once the worker is gone
        files_in.close()
        worker.connection = receiving
        for number in worker.held:  # a replacement takes over what its predecessor held
            worker.files.send((number, self.paths[number], *self.job))

    def _hand_out(self, worker: _Worker) -> bool:
        """Give ``worker`` the call's next file; False when there is none left."""
        path = next(self.source, None)
        if path is None:
            return False
        number = len(self.paths)
        self.paths.append(os.fspath(path))
        worker.files.send((number, self.paths[number], *self.job))
        worker.held.append(number)
        return True

    def pieces(self, paths: Iterator[str], job: tuple[int, float, float | None],
               idle: Callable[[], bool] | None = None) -> Iterator[Piece]:
        self.busy, self.source, self.paths, self.job = True, paths, [], job
        finished = False
        selector = None
        try:
            for _ in range(FILES_AHEAD):  # round robin, so few files still spread over every worker
                for worker in self.workers:
                    self._hand_out(worker)
            # One selector for the call: multiprocessing's wait() builds one and registers every
            # worker's pipe each time it is asked (80 us against 4 on the development machine), and
            # it is asked at least once a file, more while the scan runs in ``idle``.
            selector = selectors.DefaultSelector()
            for worker in self.workers:
                selector.register(worker.connection, selectors.EVENT_READ, worker)
            while any(worker.held for worker in self.workers):  # files whose last piece has not come
                ready = selector.select(timeout=0)
                if not ready and idle is not None:
                    if not idle():
                        idle = None
                    continue
                for key, _ in ready or selector.select():
                    worker, connection = key.data, key.fileobj
                    try:
                        slot, number, starts, ends, offsets, lengths, span_length, done, info, error = connection.recv()
                    except EOFError:  # died
                        selector.unregister(connection)
                        yield from self._replace(worker)
                        selector.register(worker.connection, selectors.EVENT_READ, worker)
                        continue
                    if done:
                        worker.held.popleft()
                        self._hand_out(worker)
                    span = worker.slots[slot, :span_length] if slot >= 0 else np.empty(0, np.float32)
                    samples = unpack(span, lengths, offsets)
                    yield Piece(number, starts, ends, samples, done, info, error, span, offsets)
                    if slot >= 0:
                        worker.free_slots.release()  # the caller is done with the samples
            finished = True
        finally:
            self.busy = False
            if selector is not None:
                selector.close()
            if not finished:  # left midway: workers still hold files and pieces of this call
                self.close()

    def _replace(self, worker: _Worker) -> Iterator[Piece]:
        """A new worker for a dead one; the file it was reading fails with the reason, and
        the files it held next go to the new worker."""
        worker.process.join()
        worker.connection.close()
        worker.files.close()
        if worker.held:
            code = worker.process.exitcode
            cause = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            yield Piece(worker.held.popleft(), [], [], [], True, None, f"the decoder crashed on this file ({cause})")
        self._start(worker)
        while len(worker.held) < FILES_AHEAD and self._hand_out(worker):
            pass

    def close(self) -> None:
        self.closed = True
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join()
            worker.connection.close()
            worker.files.close()
        # The shared memory is unmapped with the last view of it, which the caller may still hold.
        self.workers = []


# Pools kept for the next call, by worker count.
_POOLS: dict[int, _WorkerPool] = {}


@atexit.register
def close_pools() -> None:
    """End the kept decoder processes (at exit; or sooner, for a caller done with decoding)."""
    while _POOLS:
        _, pool = _POOLS.popitem()
        if not pool.closed and pool.owner == os.getpid():
            pool.close()


def _work(slots: np.ndarray, free_slots, connection: Connection, files: Connection, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    # Siblings forked later hold copies of the parent's end of ``files``, so the parent's death
    # shows as silence, not as end of file: waiting for a file or a free slot, an orphan would
    # wait forever.
    exit_with_parent(parent)
    turn = 0
    try:
        while True:
            number, path, *job = files.recv()
            for piece in _file_pieces(number, path, *job):
                slot = -1
                if piece.samples:
                    free_slots.acquire()
                    slot, turn = turn, (turn + 1) % SLOTS  # the parent frees slots in the order they were sent
                    piece = _joined(piece, job[0], out=slots[slot])
                connection.send((slot, piece.number, piece.starts, piece.ends, piece.offsets,
                                 [len(s) for s in piece.samples], len(piece.span), piece.done, piece.info, piece.error))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the parent is gone or closed us
