"""Text and audio encoders behind one interface: ``load_encoder(name, weights=..., device=...)``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from .weights import MissingWeightsError

if TYPE_CHECKING:
    import torch

__all__ = ["DeviceError", "Encoder", "MissingWeightsError", "list_models", "load_encoder"]


class DeviceError(ValueError):
    """The device asked for is not on this machine."""


@runtime_checkable
class Encoder(Protocol):
    name: str
    sample_rate: int  # Hz of the audio embed_audio expects
    window_seconds: float  # longest clip embed_audio takes
    dim: int
    weights_id: str  # short fingerprint of the loaded weights
    weights_path: str  # the file they were read from, absolute; "" for weights shipped inside clapdex
    logit_scale: float  # multiplier for cosine similarities
    batch_size: int  # clips or texts per model call unless a call says otherwise
    device: object  # where text is embedded, and the first of devices
    devices: list  # the devices each call's audio is shared among

    def embed_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised."""

    def prepare_for_queries(self) -> None:
        """Ready the text side for a process that embeds many queries (a server), where that
        costs a moment once and saves time on each; any model may do nothing."""

    def embed_audio(self, waveforms: list[np.ndarray], batch_size: int | None = None) -> np.ndarray:
        """Mono float32 clips at ``sample_rate``, each at most one window -> (n, dim) float32, unit rows."""

    def embed_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> np.ndarray:
        """``embed_audio`` of clips in ``samples`` (1-D float32 on the host, in pinned memory
        when ``device`` is a GPU), of ``lengths`` samples each, laid end to end or each at its
        ``starts`` (in order, overlapping as windows of one recording do) -> (len(lengths), dim)
        float32, unit rows. ``encoders.batches.BatchEmbedder`` packs clips so: a batch crosses
        to the device in one copy, and is cut into its windows there."""

    def launch_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None):
        """``embed_packed`` as an ``encoders.runtime.Launched``: on a GPU it returns once the batch
        is queued; ``copied()`` waits until ``samples`` (on the host or on that GPU) may be
        refilled, ``vectors()`` for the rows."""


# name -> "module:loader"; imported on use so `import encoders` stays light.
_MODELS = {
    "msclap-2023": "encoders.msclap:load_msclap_2023",
    "clapdex-compact": "encoders.compact:load_compact",
}


def list_models() -> list[str]:
    return sorted(_MODELS)


def load_encoder(name: str, weights=None, device: str = "cpu", **kwargs) -> Encoder:
    """Load model ``name``; ``weights`` is a file path or None (environment, then Hugging Face cache).

    ``device``: "cpu", "cuda", "cuda:1" or "auto". Other keyword arguments go to the model's loader
    (msclap-2023: ``cache_dir``, ``batch_size``; clapdex-compact: ``batch_size``).
    """
    if name not in _MODELS:
        raise ValueError(f"Unknown encoder {name!r}; available: {', '.join(list_models())}")
    module_name, loader = _MODELS[name].split(":")
    return getattr(importlib.import_module(module_name), loader)(weights=weights, device=device, **kwargs)
