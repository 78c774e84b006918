"""What both models run on: devices, precision, and ``AudioRuntime``, which embeds audio
through a model's own function as fast as the device allows (thread limits: ``threads``).

A model hands ``AudioRuntime`` one ``embed(windows, lengths)`` a device: a (batch,
window_samples) float32 batch on that device and the length of the clip in each window
(int32, there) -> (batch, dim) float32 unit rows there. The runtime does the rest: checking
clips, laying each in its window as the model wants short clips filled, staging batches for
a GPU through pinned memory, torch.compile, CUDA-graph replay of full batches, and sharing
each call's clips among several devices.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence

import numpy as np
import torch

from . import DeviceError
from .audio import unpack, window_clip

Embed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# How a clip shorter than a window fills it: "tile" repeats it to the window's end (as msclap
# does), "silence" pads it with zeros (for a model that pools over the clip's own frames).
FILLS = ("tile", "silence")


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (resolved.index or 0) >= visible:
            here = f"only {visible} CUDA devices are visible here" if visible else "no CUDA device is visible here"
            raise DeviceError(f"device {device}: {here}; use --device cpu, or auto to take a GPU where there is one")
    return resolved


def resolve_devices(devices: str | torch.device) -> list[torch.device]:
    """"cuda:0,cuda:1" -> both; "all" -> every visible GPU (the CPU when there is none); a
    single name as ``resolve_device`` reads it."""
    if str(devices) == "all":
        return [torch.device("cuda", index) for index in range(torch.cuda.device_count())] or [torch.device("cpu")]
    return [resolve_device(name.strip()) for name in str(devices).split(",")]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The matmul dtype for ``precision``: "auto" is bfloat16 on CUDA (embeddings within cosine
    0.999 of float32, docs/benchmarks.md) and float32 elsewhere; "fp32" is always float32."""
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision not in choices:
        raise ValueError(f"precision must be one of auto, {', '.join(choices)}; got {precision!r}")
    return choices[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """torch.autocast to ``dtype`` (an ``autocast_dtype``) on ``device``; off for None (float32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


class AudioRuntime:
    """Clips of at most one window -> (n, dim) float32 unit rows, through a model's ``embed``
    on ``device``, and shared with ``replicas`` on further devices (see ``on_devices``).

    ``fill``: how a short clip fills its window (``FILLS``). ``compiled``: ``embed`` runs
    through torch.compile, True or a compile mode such as "max-autotune-no-cudagraphs".
    ``cuda_graphs``: full batches on a GPU replay a CUDA graph captured at the first.
    """

    def __init__(self, embed: Embed, device: torch.device, sample_rate: int, window_seconds: float, dim: int,
                 batch_size: int, fill: str = "tile", compiled: bool | str = False, cuda_graphs: bool = False):
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}; got {fill!r}")
        self.device = device
        self.sample_rate = sample_rate
        self.window_seconds = window_seconds
        self.window_samples = round(window_seconds * sample_rate)
        self.dim = dim
        self.batch_size = batch_size
        self.fill = fill
        self.compiled = bool(compiled)
        self.embed = embed  # the model's function, which _windows_to_vectors runs, compiled or not
        self._windows_to_vectors = embed
        if compiled:
            mode = compiled if isinstance(compiled, str) else None
            self._windows_to_vectors = torch.compile(embed, dynamic=False, mode=mode)
        # Full batches on a GPU replay one captured CUDA graph: launching HTSAT's thousand-odd
        # kernels from Python one by one costs nearly as much CPU time as the GPU spends on them
        # (65 against 75 ms a batch of 256 on an H100), CPU the indexer's main process needs.
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self.graph: _CapturedBatch | None = None
        self._staging: torch.Tensor | None = None  # pinned host buffer for batches bound for the GPU
        self._copies: torch.cuda.Stream | None = None  # where packed batches cross to the GPU
        self.replicas: list[AudioRuntime] = []  # the same model on further devices

    @classmethod
    def on_devices(cls, embeds: Sequence[tuple[torch.device, Embed]], sample_rate: int, window_seconds: float,
                   dim: int, batch_size: int, fill: str = "tile", compiled: bool | str = False,
                   cuda_graphs: bool = False) -> AudioRuntime:
        """A runtime on the first (device, embed) pair, with the others as its replicas: each
        call's clips are then shared among the devices, with the rows one device gives.
        Each ``embed`` must run a model of its own."""
        (device, embed), *more = embeds
        # Several GPUs embed their shares on threads of their own, and capturing a graph on one
        # while another works fails (cudaErrorStreamCaptureUnsupported, on two H100s): their
        # kernels are launched one by one.
        cuda_graphs = cuda_graphs and not more
        options = (sample_rate, window_seconds, dim, batch_size, fill, compiled, cuda_graphs)
        runtime = cls(embed, device, *options)
        runtime.replicas = [cls(embed, device, *options) for device, embed in more]
        return runtime

    @property
    def devices(self) -> list[torch.device]:
        return [self.device, *(replica.device for replica in self.replicas)]

    def check_clip(self, waveform) -> np.ndarray:
        return window_clip(waveform, self.sample_rate, self.window_seconds)

    def fill_window(self, waveform) -> np.ndarray:
        """A mono clip of at most one window, as the model sees it: exactly one window, the clip
        repeated ceil(window / length) times and cut to the window ("tile"), or followed by
        silence ("silence")."""
        samples = self.check_clip(waveform)
        window = self.window_samples
        if self.fill == "tile":
            return np.tile(samples, -(-window // samples.shape[0]))[:window]
        return np.pad(samples, (0, window - samples.shape[0]))

    def embed_audio(self, waveforms: list, batch_size: int | None = None) -> np.ndarray:
        """Mono float32 clips at ``sample_rate``, each at most one window -> (n, dim) float32, unit rows."""
        if self.replicas:
            return self._embed_audio_on_every_device(list(waveforms), batch_size)
        return self.embed_audio_here(waveforms, batch_size)

    @torch.inference_mode()
    def embed_audio_here(self, waveforms: list, batch_size: int | None = None) -> np.ndarray:
        """``embed_audio`` on this runtime's own device only."""
        size = batch_size or self.batch_size
        clips = [self.check_clip(waveform) for waveform in waveforms]
        parts = (clips[start : start + size] for start in range(0, len(clips), size))
        if self.device.type == "cpu":
            batches = (self._windows_here(part) for part in parts)
        else:
            batches = (self.windows_on_device(part) for part in parts)
        embedded = [self.embed_windows(*batch) for batch in batches]
        return np.concatenate(embedded) if embedded else np.zeros((0, self.dim), np.float32)

    def embed_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> np.ndarray:
        """Clips in ``samples`` (1-D float32 on the host, pinned for a GPU), of ``lengths``
        samples each, at most one window, laid end to end or each at its ``starts`` (in order;
        overlapping, as windows of one recording do) -> (len(lengths), dim) unit rows.

        ``encoders.batches.BatchEmbedder`` packs windows this way, so they cross to the
        device in one copy, each sample once, and are cut and filled there.
        """
        return self.launch_packed(samples, lengths, starts).vectors()

    def launch_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> Launched:
        """``embed_packed`` without waiting, for ``samples`` on the host or already on the GPU: on
        one GPU, a copy to the device runs on a stream of its own, so it overlaps the batch
        before, which the model is still computing, and the vectors come back to pinned memory
        as soon as they are computed. Elsewhere the batch is embedded before this returns."""
        if self.replicas:
            return Launched.done(self._embed_packed_on_every_device(samples, lengths, starts))
        if self.device.type != "cuda":
            return Launched.done(self.embed_packed_here(samples, lengths, starts))
        return self._launch_on_gpu(samples, lengths, starts)

    def embed_packed_here(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> np.ndarray:
        """``embed_packed`` on this runtime's own device only."""
        if self.device.type == "cpu":
            return self.embed_audio_here(unpack(samples.numpy(), lengths, starts), len(lengths))
        return self.embed_windows(*self.fill_on_device(samples.to(self.device, non_blocking=True), lengths, starts))

    @torch.inference_mode()
    def _launch_on_gpu(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None) -> Launched:
        computing = torch.cuda.current_stream(self.device)
        if samples.is_cuda:
            on_device = samples
        else:
            if self._copies is None:
                self._copies = torch.cuda.Stream(self.device)
            with torch.cuda.stream(self._copies):
                on_device = samples.to(self.device, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record(self._copies)
            computing.wait_event(copied)
            # Allocated for the copy stream and read on this one: the allocator must not hand the
            # memory to the next copy before this stream is done with it.
            on_device.record_stream(computing)
        windows, sizes = self.fill_on_device(on_device, lengths, starts)
        # Each event on this device's stream by name: a bare record() is on the current device's,
        # which is another GPU's for a runtime on cuda:1.
        taken = torch.cuda.Event()  # the windows are cut: ``samples`` may be refilled
        taken.record(computing)
        rows = self._rows(windows, sizes)
        on_host = rows.to("cpu", non_blocking=True)  # into pinned memory, in this stream's order
        computed = torch.cuda.Event()
        computed.record(computing)

        def vectors() -> np.ndarray:
            computed.synchronize()
            return on_host.numpy()
        return Launched(taken.synchronize, vectors)

    def _embed_audio_on_every_device(self, waveforms: list, batch_size: int | None) -> np.ndarray:
        # Contiguous shares, one per device, each embedded there on its own thread (the GIL is
        # released inside CUDA work); rows come back in the callers' order, as one device gives.
        return self._on_every_device(len(waveforms), lambda runtime, start, end:
                                     runtime.embed_audio_here(waveforms[start:end], batch_size))

    def _embed_packed_on_every_device(self, samples: torch.Tensor, lengths: list[int],
                                      starts: list[int] | None) -> np.ndarray:
        starts = np.cumsum([0, *lengths[:-1]]) if starts is None else np.asarray(starts)
        ends = np.maximum.accumulate(starts + np.asarray(lengths))  # windows start and end in order

        def share(runtime, first, last):  # the windows first..last-1 and the samples they lie in
            if first == last:
                return np.zeros((0, self.dim), np.float32)
            return runtime.embed_packed_here(samples[starts[first] : ends[last - 1]], lengths[first:last],
                                             (starts[first:last] - starts[first]).tolist())
        return self._on_every_device(len(lengths), share)

    def _on_every_device(self, count: int, embed_share) -> np.ndarray:
        runtimes = [self, *self.replicas]
        bounds = np.linspace(0, count, len(runtimes) + 1).round().astype(int)
        with concurrent.futures.ThreadPoolExecutor(len(runtimes)) as pool:
            parts = list(pool.map(embed_share, runtimes, bounds[:-1], bounds[1:]))
        return np.concatenate(parts)

    @torch.inference_mode()
    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> np.ndarray:
        """(batch, window_samples) float32 windows, on any device, and the length of the clip in
        each (default: whole windows) -> (batch, dim) unit rows."""
        return self._rows(windows, lengths).cpu().numpy()

    def _rows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``embed_windows``, its rows left on the device."""
        windows = windows.to(self.device)
        count = windows.shape[0]
        if lengths is None:
            lengths = torch.full((count,), self.window_samples, dtype=torch.int32, device=self.device)
        lengths = lengths.to(self.device)
        if self.compiled and count < self.batch_size:
            # Compiled for one batch shape: a smaller batch is padded to it (with silent whole
            # windows) rather than compiled again (half a minute) for its own shape.
            windows = torch.cat([windows, windows.new_zeros(self.batch_size - count, windows.shape[1])])
            lengths = torch.cat([lengths, lengths.new_full((self.batch_size - count,), self.window_samples)])
        if self.cuda_graphs and windows.shape[0] == self.batch_size:
            # The graph's output is overwritten by the next replay: copy it before replaying again.
            return self._replayed(windows, lengths)[:count]
        return self._windows_to_vectors(windows, lengths)[:count]

    def _replayed(self, windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            self.graph = _CapturedBatch(self._windows_to_vectors, windows, lengths)
        return self.graph.replay(windows, lengths)

    def _windows_here(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips of at most one window -> (batch, window_samples) windows and their lengths,
        filled on the host: for the CPU."""
        windows = np.stack([self.fill_window(clip) for clip in clips])
        return torch.from_numpy(windows), torch.tensor([len(clip) for clip in clips], dtype=torch.int32)

    def windows_on_device(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips of at most one window -> (batch, window_samples) windows and their lengths on
        the GPU, filled there.

        Only the clips' own samples cross the bus (a 5-s clip is 5/7 of its window), through
        one pinned buffer; filling on the GPU spares the host a pass over every window.
        """
        lengths = [len(clip) for clip in clips]
        total = sum(lengths)
        if self._staging is None or self._staging.numel() < total:
            self._staging = torch.empty(max(total, 1 << 24), dtype=torch.float32).pin_memory()
        staged = self._staging[:total]
        np.concatenate(clips, out=staged.numpy())
        # The copy must end before the buffer is refilled: the caller's .cpu() of the results
        # waits for the stream that also runs this copy.
        return self.fill_on_device(staged.to(self.device, non_blocking=True), lengths)

    def fill_on_device(self, samples: torch.Tensor, lengths: list[int],
                       starts: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips in ``samples`` (on the device), end to end or each at its ``starts`` ->
        (batch, window_samples) windows, each clip filling its window as ``fill`` says, and the
        lengths (int32) there; one gather for the batch."""
        window = self.window_samples
        if len(lengths) * window >= 2**31 or len(samples) >= 2**31:
            raise ValueError(f"{len(lengths)} windows are too many for one batch")
        starts = np.cumsum([0, *lengths[:-1]]) if starts is None else starts
        starts = torch.tensor(starts, dtype=torch.int32).to(self.device, non_blocking=True)
        sizes = torch.tensor(lengths, dtype=torch.int32).to(self.device, non_blocking=True)
        positions = torch.arange(window, dtype=torch.int32, device=self.device)
        # (batch, window): where each sample of each window comes from; with "silence", a
        # clip's last sample stands for what follows it, and is zeroed there below
        if self.fill == "tile":
            sources = starts[:, None] + positions[None, :] % sizes[:, None]
        else:
            sources = starts[:, None] + torch.minimum(positions[None, :], sizes[:, None] - 1)
        windows = samples.index_select(0, sources.flatten()).view(len(lengths), window)
        if self.fill == "silence":
            windows = windows.masked_fill(positions[None, :] >= sizes[:, None], 0.0)
        return windows, sizes


class Launched:
    """A batch on its way through the model: ``copied()`` returns once its samples may be
    refilled (the model has taken them), ``vectors()`` with its (n, dim) unit rows."""

    def __init__(self, copied: Callable[[], None], vectors: Callable[[], np.ndarray]):
        self.copied, self.vectors = copied, vectors

    @classmethod
    def done(cls, vectors: np.ndarray) -> Launched:
        return cls(lambda: None, lambda: vectors)


class _CapturedBatch:
    """``embed`` on a batch of one shape, captured once as a CUDA graph and replayed."""

    def __init__(self, embed: Embed, windows: torch.Tensor, lengths: torch.Tensor):
        with torch.cuda.device(windows.device):
            # The graph reads its inputs here and writes its output below.
            self.windows, self.lengths = windows.clone(), lengths.clone()
            # Warm-up on a side stream, as capture needs: cuFFT plans, cuBLAS workspaces and
            # any compilation happen here, not inside the graph.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    embed(self.windows, self.lengths)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: the indexer's main thread may touch CUDA while this thread captures.
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.vectors = embed(self.windows, self.lengths)

    def replay(self, windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.windows.copy_(windows)
        self.lengths.copy_(lengths)
        self.graph.replay()
        return self.vectors
