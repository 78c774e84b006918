"""Windows -> embeddings with the model kept busy: the caller packs windows into host buffers
(pinned, for a GPU) while a thread hands each full buffer to the encoder.

Embedding a batch on the GPU takes tens of milliseconds, during which the caller (the
indexer's main loop) keeps taking windows from the decoders and packing the next batch, so
decoding never waits for the model. Packing copies audio once, straight into the memory the
device reads from: windows that overlap in a recording (half-window hops) share their samples
there, and are cut apart on the device. Copying every window whole had made this loop the limit
for long recordings (docs/benchmarks.md). Three buffers of a batch each: at 256 windows of 7 s,
about 1 GB of pinned memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from . import Encoder
from .audio import window_clip

# One buffer filling, one waiting, one on the device.
BUFFERS = 3


class _Buffer:
    def __init__(self, capacity: int, pinned: bool):
        self.tensor = torch.empty(capacity, dtype=torch.float32, pin_memory=pinned)  # stretches of audio end to end
        self.array = self.tensor.numpy()
        self.starts: list[int] = []  # each clip's first sample
        self.lengths: list[int] = []
        self.used = 0

    def append(self, span: np.ndarray, offsets: list[int], lengths: list[int]) -> None:
        """Clips that lie in ``span`` at ``offsets``: the part of ``span`` they cover is copied once."""
        begin, end = offsets[0], max(offset + length for offset, length in zip(offsets, lengths))
        self.array[self.used : self.used + end - begin] = span[begin:end]
        self.starts += [self.used + offset - begin for offset in offsets]
        self.lengths += lengths
        self.used += end - begin

    def clear(self) -> None:
        self.starts, self.lengths, self.used = [], [], 0


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
        pinned = torch.device(encoder.device).type == "cuda"
        self._free: queue.Queue[_Buffer | BaseException] = queue.Queue()
        # Page-locking a buffer takes about a quarter of a second (316 MB for MS-CLAP's batch):
        # done on a thread, while the caller starts decoding and cataloguing.
        self._allocating = threading.Thread(target=self._allocate, args=(self.batch_size * window, pinned),
                                            name="clapdex-buffers", daemon=True)
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
        audio is copied once, not once a window, and cut into windows on the device."""
        if any(not 0 < length <= self._window for length in lengths):
            raise ValueError(f"clips must hold 1 to {self._window} samples; got lengths {lengths}")
        first = 0
        while first < len(offsets):
            if self._filling is None:
                self._filling = self._free.get()
                if isinstance(self._filling, BaseException):
                    raise self._filling
            last = min(len(offsets), first + self.batch_size - len(self._filling.lengths))
            self._filling.append(span, offsets[first:last], lengths[first:last])
            if len(self._filling.lengths) == self.batch_size:
                self._submit()
            first = last

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

    def _allocate(self, capacity: int, pinned: bool) -> None:
        try:
            for _ in range(BUFFERS):
                self._free.put(_Buffer(capacity, pinned))
        except BaseException as error:  # raised again in the caller's thread, which waits for a buffer
            self._free.put(error)

    def _submit(self) -> None:
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
        while (buffer := self._to_embed.get()) is not None:
            try:
                vectors = self.encoder.embed_packed(buffer.tensor[: buffer.used], buffer.lengths, buffer.starts)
            except BaseException as error:  # raised again in the caller's thread
                self._embedded.put(error)
            else:
                self._embedded.put(vectors)
            finally:
                buffer.clear()
                self._free.put(buffer)
