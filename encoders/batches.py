"""Windows -> embeddings with the model kept busy: the caller packs windows into batch buffers
while a thread hands each full buffer to the encoder.

Embedding a batch on the GPU takes tens of milliseconds, during which the caller (the
indexer's main loop) keeps taking windows from the decoders and packing the next batch, so
decoding never waits for the model. Windows that overlap in a recording (half-window hops)
share their samples in a buffer, copied once, and are cut apart on the device.

On one GPU the buffers are on the GPU: each piece of audio crosses straight from where the
decoder wrote it, on a stream of its own, while the model computes the batch before. The
decoders' shared memory is page-locked for that (``_PageLocked``), so the copy is the GPU's
DMA and costs the caller little more than a launch: copying every piece through a pinned host
buffer instead had made a plain memory copy most of the caller's time for long recordings
(1.45 s of a 4-s run of 10,200 windows, docs/benchmarks.md). On the CPU, and for several GPUs,
the buffers are host memory (pinned for GPUs).
"""

from __future__ import annotations

import logging
import mmap
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from . import Encoder
from .audio import window_clip
from .runtime import Launched

log = logging.getLogger(__name__)

# One buffer filling, one waiting, one being computed, one whose vectors are on their way back.
BUFFERS = 4


class _Buffer:
    """Stretches of audio end to end, on ``device`` (host memory for "cpu", pinned if asked)."""

    def __init__(self, capacity: int, device: torch.device, pinned: bool):
        self.tensor = torch.empty(capacity, dtype=torch.float32, device=device, pin_memory=pinned)
        self.array = self.tensor.numpy() if device.type == "cpu" else None
        self.starts: list[int] = []  # each clip's first sample
        self.lengths: list[int] = []
        self.used = 0

    def append(self, span: np.ndarray, offsets: list[int], lengths: list[int], copies: torch.cuda.Stream | None) -> None:
        """Clips that lie in ``span`` at ``offsets``: the part of ``span`` they cover is copied once
        (to a GPU buffer on ``copies``, which the caller waits for before reusing ``span``)."""
        begin, end = offsets[0], max(offset + length for offset, length in zip(offsets, lengths))
        if self.array is not None:
            self.array[self.used : self.used + end - begin] = span[begin:end]
        else:
            with torch.cuda.stream(copies):
                self.tensor[self.used : self.used + end - begin].copy_(torch.from_numpy(span[begin:end]),
                                                                       non_blocking=True)
        self.starts += [self.used + offset - begin for offset in offsets]
        self.lengths += lengths
        self.used += end - begin

    def clear(self) -> None:
        self.starts, self.lengths, self.used = [], [], 0


class _PageLocked:
    """Page-locks (cudaHostRegister) the shared memory that decoder processes write their pieces
    into, once each, so copies from it to the GPU run asynchronously, as DMA; undone on close.
    Other memory (a piece decoded in this process, a test's array) is copied as it is."""

    def __init__(self):
        self._registered: dict[int, np.ndarray] = {}  # address -> the array kept alive while locked

    def lock(self, span: np.ndarray) -> None:
        owner = span
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        address = owner.ctypes.data
        shared = owner.base.obj if isinstance(owner.base, memoryview) else owner.base  # numpy 2 wraps the map
        if not isinstance(shared, mmap.mmap) or address in self._registered:
            return
        # On a thread of its own: a failure would stay behind as the thread's last CUDA error,
        # which torch's next kernel launch in that thread would report as its own.
        outcome: list[int] = []
        register = threading.Thread(target=lambda: outcome.extend(_register(address, owner.nbytes)),
                                    name="clapdex-page-lock")
        register.start()
        register.join()
        if 0 not in outcome:  # pageable memory still works, by a slower copy
            log.debug("cudaHostRegister of %d bytes failed (%s); copying from pageable memory", owner.nbytes, outcome)
        self._registered[address] = owner if 0 in outcome else None

    def close(self) -> None:
        for address, owner in self._registered.items():
            if owner is not None:
                torch.cuda.cudart().cudaHostUnregister(address)
        self._registered.clear()


def _register(address: int, size: int) -> list[int]:
    """cudaHostRegister's answers, default flags first, then as mapped memory (as NCCL registers
    its shared memory), until one succeeds (0)."""
    outcome = []
    for flags in REGISTER_FLAGS:
        outcome.append(int(torch.cuda.cudart().cudaHostRegister(address, size, flags)))
        if outcome[-1] == 0:
            break
    return outcome


# cudaHostRegisterDefault, cudaHostRegisterPortable | cudaHostRegisterMapped
REGISTER_FLAGS = (0, 3)


class BatchEmbedder:
    """``add`` clips of at most one window; ``ready`` and ``finish`` give back their vectors,
    one (dim,) float32 unit row each, in the order they were added.

    Use as a context manager (or call ``close``), so the thread ends with an error too.
    """

    def __init__(self, encoder: Encoder, batch_size: int | None = None):
        self.encoder = encoder
        # By default a full batch for each device the encoder spreads batches over.
        self.batch_size = batch_size or encoder.batch_size * len(encoder.devices)
        window = self._window = round(encoder.sample_rate * encoder.window_seconds)
        devices = [torch.device(device) for device in encoder.devices]
        on_gpu = len(devices) == 1 and devices[0].type == "cuda"
        # Where pieces cross to the GPU, beside the model's computing.
        self._copies = torch.cuda.Stream(devices[0]) if on_gpu else None
        self._page_locked = _PageLocked() if on_gpu else None
        self._free: queue.Queue[_Buffer | BaseException] = queue.Queue()
        # Page-locking host buffers takes about a quarter of a second (316 MB for MS-CLAP's batch):
        # done on a thread, while the caller starts decoding and cataloguing.
        self._allocating = threading.Thread(
            target=self._allocate, name="clapdex-buffers", daemon=True,
            args=(self.batch_size * window, devices[0] if on_gpu else torch.device("cpu"),
                  devices[0].type == "cuda" and not on_gpu))
        self._allocating.start()
        self._filling: _Buffer | None = None
        self._to_embed: queue.Queue[_Buffer | None] = queue.Queue()
        self._embedded: queue.Queue[np.ndarray | BaseException] = queue.Queue()
        self._in_flight = 0  # batches handed to the thread and not yet taken back
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BatchEmbedder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add(self, samples: np.ndarray) -> None:
        """Copies ``samples`` (mono float32, at most one window); blocks while every buffer
        is in use."""
        samples = window_clip(samples, self.encoder.sample_rate, self.encoder.window_seconds)
        self.add_windows(samples, [0], [len(samples)])

    def add_windows(self, span: np.ndarray, offsets: list[int], lengths: list[int]) -> None:
        """Clips of at most one window that lie in ``span`` (mono float32) at ``offsets``, in
        order, overlapping as windows of one recording do (``encoders.decoding.Piece``): the
        audio is copied once, not once a window, and cut into windows on the device. ``span``
        may be reused once this returns."""
        if any(not 0 < length <= self._window for length in lengths):
            raise ValueError(f"clips must hold 1 to {self._window} samples; got lengths {lengths}")
        if self._page_locked is not None:
            self._page_locked.lock(span)
        first = 0
        while first < len(offsets):
            if self._filling is None:
                self._filling = self._free.get()
                if isinstance(self._filling, BaseException):
                    raise self._filling
            last = min(len(offsets), first + self.batch_size - len(self._filling.lengths))
            self._filling.append(span, offsets[first:last], lengths[first:last], self._copies)
            if len(self._filling.lengths) == self.batch_size:
                self._submit()
            first = last
        if self._copies is not None:
            self._copies.synchronize()  # a tenth of a millisecond for a piece of 8 windows of 7 s

    def ready(self) -> Iterator[np.ndarray]:
        """Vectors of the batches embedded so far, without waiting for the others."""
        while self._in_flight:
            try:
                result = self._embedded.get_nowait()
            except queue.Empty:
                return
            yield from self._taken(result)

    def finish(self) -> Iterator[np.ndarray]:
        """Every vector not yet given back, the last partial batch included."""
        if self._filling is not None and self._filling.lengths:
            self._submit()
        while self._in_flight:
            yield from self._taken(self._embedded.get())

    def close(self) -> None:
        self._allocating.join()
        if self._thread is not None:
            self._to_embed.put(None)
            self._thread.join()
            self._thread = None
        if self._page_locked is not None:
            self._copies.synchronize()
            self._page_locked.close()

    def _allocate(self, capacity: int, device: torch.device, pinned: bool) -> None:
        try:
            for _ in range(BUFFERS):
                self._free.put(_Buffer(capacity, device, pinned))
        except BaseException as error:  # raised again in the caller's thread, which waits for a buffer
            self._free.put(error)

    def _submit(self) -> None:
        if self._copies is not None:
            self._copies.synchronize()  # the model reads what the copies write
        if self._thread is None:
            self._thread = threading.Thread(target=self._embed_batches, name="clapdex-embed", daemon=True)
            self._thread.start()
        self._to_embed.put(self._filling)
        self._filling = None
        self._in_flight += 1

    def _taken(self, result: np.ndarray | BaseException) -> Iterator[np.ndarray]:
        self._in_flight -= 1
        if isinstance(result, BaseException):
            raise result
        yield from result

    def _embed_batches(self) -> None:
        # One batch is launched while the one before is still being computed, so a host buffer's
        # copy to the device overlaps that computing; a buffer is free again as soon as the
        # model has taken its audio.
        before: Launched | BaseException | None = None
        while True:
            if before is not None and self._to_embed.empty():
                self._give_back(before)  # nothing to overlap it with: its vectors are wanted now
                before = None
            buffer = self._to_embed.get()
            if buffer is None:
                break
            try:
                launched = self.encoder.launch_packed(buffer.tensor[: buffer.used], buffer.lengths, buffer.starts)
                launched.copied()
            except BaseException as error:  # raised again in the caller's thread
                launched = error
            finally:
                buffer.clear()
                self._free.put(buffer)
            if before is not None:
                self._give_back(before)
            before = launched
        if before is not None:
            self._give_back(before)

    def _give_back(self, launched: Launched | BaseException) -> None:
        try:
            self._embedded.put(launched if isinstance(launched, BaseException) else launched.vectors())
        except BaseException as error:
            self._embedded.put(error)
