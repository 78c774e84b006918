"""Small random MS-CLAP 2023 checkpoints in the official key layout, for tests and parity.

The layout is the one of ``CLAP_weights_2023.pth``: ``{'model': state_dict}`` with the
keys of msclap's ``CLAP`` module (HTSAT under ``audio_encoder.base.htsat``, GPT-2 under
``caption_encoder.base``). Random tensors come from ``numpy.random.default_rng(seed)``
drawn in sorted key order, so the same file can be rebuilt in any environment with
numpy and torch (the parity reference runs in a separate virtual environment).
Signal-processing tensors (STFT kernels, mel filterbank) and derived buffers (Swin
relative-position index and shifted-window mask) hold their true values, so the official
code, which uses them as stored, computes what a trained checkpoint would.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("vocab.json", "merges.txt")


# Files the tests read, committed with their licences (tests/data/README.md).
TEST_DATA = REPO_ROOT / "tests" / "data"


def gpt2_tokenizer_dir() -> Path:
    return TEST_DATA / "gpt2-tokenizer"


@dataclass(frozen=True)
class CheckpointSize:
    htsat_embed_dim: int
    htsat_depths: tuple[int, ...]
    htsat_heads: tuple[int, ...]
    gpt2_layers: int
    gpt2_embed_dim: int
    gpt2_positions: int
    projection_dim: int


TINY = CheckpointSize(
    htsat_embed_dim=16, htsat_depths=(2, 2, 2, 2), htsat_heads=(1, 2, 4, 8),
    gpt2_layers=2, gpt2_embed_dim=64, gpt2_positions=128, projection_dim=64,
)
# HTSAT-tiny + GPT-2 base + 1024-d projection: the architecture of the released weights.
FULL = CheckpointSize(
    htsat_embed_dim=96, htsat_depths=(2, 2, 6, 2), htsat_heads=(4, 8, 16, 32),
    gpt2_layers=12, gpt2_embed_dim=768, gpt2_positions=1024, projection_dim=1024,
)

# Fixed by the official code, whatever the size.
SPEC_SIZE = 256
PATCH_SIZE = 4
SWIN_WINDOW = 8
MLP_RATIO = 4
N_FFT = 1024
MEL_BINS = 64
NUM_CLASSES = 527
GPT2_VOCAB = 50257
# HTSAT's filterbank comes from msclap/models/config.py (32 kHz, 50-14000 Hz), not the
# 44.1 kHz yaml; the released weights carry that filterbank.
MEL_SAMPLE_RATE, MEL_FMIN, MEL_FMAX = 32000, 50.0, 14000.0


def _stft_kernels() -> tuple[np.ndarray, np.ndarray]:
    """torchlibrosa's Conv1d DFT kernels, (n_fft // 2 + 1, 1, n_fft), periodic Hann."""
    n = np.arange(N_FFT)
    k = np.arange(N_FFT // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)
    phase = 2 * np.pi * ((k * n) % N_FFT) / N_FFT
    real = (np.cos(phase) * window)[:, None, :]
    imag = (-np.sin(phase) * window)[:, None, :]
    return real.astype(np.float32), imag.astype(np.float32)


def _mel_filterbank() -> np.ndarray:
    """Slaney mel filters as torchlibrosa stores them: (n_fft // 2 + 1, mel_bins)."""
    return torchaudio.functional.melscale_fbanks(
        N_FFT // 2 + 1, MEL_FMIN, MEL_FMAX, MEL_BINS, MEL_SAMPLE_RATE,
        norm="slaney", mel_scale="slaney",
    ).numpy()


def _relative_position_index(window: int) -> np.ndarray:
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return (relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]).astype(np.int64)


def _shifted_window_mask(resolution: int, window: int) -> np.ndarray:
    """-100 between tokens that a cyclic shift by window // 2 brought from different regions."""
    shift = window // 2
    region = np.zeros((resolution, resolution))
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            region[rows, cols] = label
            label += 1
    n = resolution // window
    windows = region.reshape(n, window, n, window).transpose(0, 2, 1, 3).reshape(n * n, window * window)
    differs = windows[:, None, :] != windows[:, :, None]
    return np.where(differs, -100.0, 0.0).astype(np.float32)


def checkpoint_shapes(size: CheckpointSize) -> dict[str, tuple]:
    """Every key of the official state dict with its shape."""
    shapes: dict[str, tuple] = {"logit_scale": ()}
    htsat = "audio_encoder.base.htsat."
    n_freq = N_FFT // 2 + 1
    shapes[htsat + "spectrogram_extractor.stft.conv_real.weight"] = (n_freq, 1, N_FFT)
    shapes[htsat + "spectrogram_extractor.stft.conv_imag.weight"] = (n_freq, 1, N_FFT)
    shapes[htsat + "logmel_extractor.melW"] = (n_freq, MEL_BINS)
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[htsat + f"bn0.{name}"] = (MEL_BINS,)
    shapes[htsat + "bn0.num_batches_tracked"] = ()
    dim = size.htsat_embed_dim
    shapes[htsat + "patch_embed.proj.weight"] = (dim, 1, PATCH_SIZE, PATCH_SIZE)
    for name in ("proj.bias", "norm.weight", "norm.bias"):
        shapes[htsat + f"patch_embed.{name}"] = (dim,)
    resolution = SPEC_SIZE // PATCH_SIZE
    for i, (depth, heads) in enumerate(zip(size.htsat_depths, size.htsat_heads)):
        window = min(SWIN_WINDOW, resolution)
        for j in range(depth):
            block = htsat + f"layers.{i}.blocks.{j}."
            for name in ("norm1", "norm2"):
                shapes[block + f"{name}.weight"] = (dim,)
                shapes[block + f"{name}.bias"] = (dim,)
            shapes[block + "attn.relative_position_bias_table"] = ((2 * window - 1) ** 2, heads)
            shapes[block + "attn.relative_position_index"] = (window**2, window**2)
            shapes[block + "attn.qkv.weight"] = (3 * dim, dim)
            shapes[block + "attn.qkv.bias"] = (3 * dim,)
            shapes[block + "attn.proj.weight"] = (dim, dim)
            shapes[block + "attn.proj.bias"] = (dim,)
            shapes[block + "mlp.fc1.weight"] = (MLP_RATIO * dim, dim)
            shapes[block + "mlp.fc1.bias"] = (MLP_RATIO * dim,)
            shapes[block + "mlp.fc2.weight"] = (dim, MLP_RATIO * dim)
            shapes[block + "mlp.fc2.bias"] = (dim,)
            if j % 2 == 1 and resolution > window:
                shapes[block + "attn_mask"] = ((resolution // window) ** 2, window**2, window**2)
        if i < len(size.htsat_depths) - 1:
            shapes[htsat + f"layers.{i}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            shapes[htsat + f"layers.{i}.downsample.norm.weight"] = (4 * dim,)
            shapes[htsat + f"layers.{i}.downsample.norm.bias"] = (4 * dim,)
            dim, resolution = 2 * dim, resolution // 2
    shapes[htsat + "norm.weight"] = (dim,)
    shapes[htsat + "norm.bias"] = (dim,)
    freq_ratio = SPEC_SIZE // MEL_BINS
    tscam_height = SPEC_SIZE // 2 ** (len(size.htsat_depths) - 1) // PATCH_SIZE // freq_ratio
    shapes[htsat + "tscam_conv.weight"] = (NUM_CLASSES, dim, tscam_height, 3)
    shapes[htsat + "tscam_conv.bias"] = (NUM_CLASSES,)
    shapes[htsat + "head.weight"] = (NUM_CLASSES, NUM_CLASSES)
    shapes[htsat + "head.bias"] = (NUM_CLASSES,)

    text_dim = size.gpt2_embed_dim
    gpt2 = "caption_encoder.base."
    shapes[gpt2 + "wte.weight"] = (GPT2_VOCAB, text_dim)
    shapes[gpt2 + "wpe.weight"] = (size.gpt2_positions, text_dim)
    for i in range(size.gpt2_layers):
        block = gpt2 + f"h.{i}."
        for name in ("ln_1", "ln_2"):
            shapes[block + f"{name}.weight"] = (text_dim,)
            shapes[block + f"{name}.bias"] = (text_dim,)
        # GPT-2 Conv1D weights are (in, out).
        shapes[block + "attn.c_attn.weight"] = (text_dim, 3 * text_dim)
        shapes[block + "attn.c_attn.bias"] = (3 * text_dim,)
        shapes[block + "attn.c_proj.weight"] = (text_dim, text_dim)
        shapes[block + "attn.c_proj.bias"] = (text_dim,)
        shapes[block + "mlp.c_fc.weight"] = (text_dim, 4 * text_dim)
        shapes[block + "mlp.c_fc.bias"] = (4 * text_dim,)
        shapes[block + "mlp.c_proj.weight"] = (4 * text_dim, text_dim)
        shapes[block + "mlp.c_proj.bias"] = (text_dim,)
    shapes[gpt2 + "ln_f.weight"] = (text_dim,)
    shapes[gpt2 + "ln_f.bias"] = (text_dim,)

    proj = size.projection_dim
    for tower, in_dim in (("audio_encoder", dim), ("caption_encoder", text_dim)):
        shapes[f"{tower}.projection.linear1.weight"] = (proj, in_dim)
        shapes[f"{tower}.projection.linear2.weight"] = (proj, proj)
        shapes[f"{tower}.projection.layer_norm.weight"] = (proj,)
        shapes[f"{tower}.projection.layer_norm.bias"] = (proj,)
    return shapes


def _is_norm_weight(key: str) -> bool:
    return key.endswith(".weight") and any(
        part in key for part in ("norm", "ln_", "layer_norm", "bn0")
    )


def _tensor(key: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if key.endswith("conv_real.weight"):
        return _stft_kernels()[0]
    if key.endswith("conv_imag.weight"):
        return _stft_kernels()[1]
    if key.endswith("melW"):
        return _mel_filterbank()
    if key.endswith("relative_position_index"):
        return _relative_position_index(math.isqrt(shape[0]))
    if key.endswith("attn_mask"):
        window = math.isqrt(shape[1])
        return _shifted_window_mask(math.isqrt(shape[0]) * window, window)
    if key.endswith("num_batches_tracked"):
        return np.array(0, dtype=np.int64)
    if key == "logit_scale":
        return np.array(math.log(1 / 0.07), dtype=np.float32)
    # bn0 sees log-mel power in dB (roughly -100..+20): centre and scale it like training would.
    if key.endswith("bn0.running_mean"):
        return rng.uniform(-50.0, -20.0, shape).astype(np.float32)
    if key.endswith("bn0.running_var"):
        return rng.uniform(100.0, 400.0, shape).astype(np.float32)
    if _is_norm_weight(key):
        return (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    return (0.02 * rng.standard_normal(shape)).astype(np.float32)


def make_state_dict(seed: int = 0, full: bool = False) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    shapes = checkpoint_shapes(FULL if full else TINY)
    return {key: torch.from_numpy(_tensor(key, shapes[key], rng)) for key in sorted(shapes)}


def write_tiny_msclap_checkpoint(directory, seed: int = 0, full: bool = False) -> Path:
    """Write ``CLAP_weights_2023.pth`` (random, official layout) plus the GPT-2 tokenizer
    files into ``directory``; ``full=True`` gives the real architecture's sizes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "CLAP_weights_2023.pth"
    torch.save({"model": make_state_dict(seed, full)}, path)
    for name in TOKENIZER_FILES:
        shutil.copyfile(gpt2_tokenizer_dir() / name, directory / name)
    return path
