"""MS-CLAP 2023 (Elizalde, Deshmukh, Wang; arXiv 2309.05767) for embedding text and audio.

Audio: log-mel (computed here, batched ``torch.stft``) -> HTSAT-tiny, hosted by transformers'
``ClapAudioModel`` (bn0, bicubic 965 -> 1024 frames, 256x256 "image", Swin stages, mean of the
final tokens) -> projection. Text: caption + " <|endoftext|>" -> GPT-2, hidden state at the
end-of-text token -> projection. Both projections: linear1, GELU, linear2, dropout, residual,
LayerNorm; outputs are L2-normalised so inner product is cosine similarity.

Deliberate differences from the official wrapper (msclap 1.3.4), which clapdex treats as bugs:
  * no random crop: clips longer than one window raise ValueError (callers cut windows);
  * mono only: 2-D input raises ValueError (average channels, don't concatenate them);
  * text is pooled at the last attended token, not at count(id != 0) - 1, so a literal "!"
    (GPT-2 id 0, the official pad id) no longer shifts the pooled position;
  * captions longer than 77 tokens are truncated to 77 with end-of-text kept last;
  * captions are padded to the longest in the batch, not to 77 (causal attention: same result).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import flex_attention
from transformers import ClapAudioConfig, ClapAudioModel, GPT2Config, GPT2Model, GPT2TokenizerFast

from .projection import Projection
from .runtime import AudioRuntime, Launched, autocast, autocast_dtype, resolve_devices
from .threads import threads_limited
from .weights import resolve_gpt2_tokenizer, resolve_msclap_2023, tensors_fingerprint

NAME = "msclap-2023"


@dataclass(frozen=True)
class MSClapConfig:
    # Fixed by the official code; the checkpoint's shapes cannot tell these.
    sample_rate: int = 44100
    window_seconds: float = 7.0
    n_fft: int = 1024
    hop_length: int = 320
    mel_bins: int = 64
    log_amin: float = 1e-10
    spec_size: int = 256
    patch_size: int = 4
    freq_ratio: int = 4  # transformers derives it as spec_size // mel_bins
    mlp_ratio: float = 4.0
    max_text_tokens: int = 77
    end_of_text: str = " <|endoftext|>"
    gpt2_head_dim: int = 64
    projection_dropout: float = 0.5
    # Read from the checkpoint (values shown are the released weights').
    htsat_embed_dim: int = 96
    htsat_depths: tuple[int, ...] = (2, 2, 6, 2)
    htsat_heads: tuple[int, ...] = (4, 8, 16, 32)
    htsat_window: int = 8
    gpt2_layers: int = 12
    gpt2_embed_dim: int = 768
    gpt2_inner_dim: int = 3072
    gpt2_positions: int = 1024
    gpt2_vocab: int = 50257
    projection_dim: int = 1024

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def audio_features(self) -> int:
        return self.htsat_embed_dim * 2 ** (len(self.htsat_depths) - 1)


HTSAT = "audio_encoder.base.htsat."
GPT2 = "caption_encoder.base."
STFT_REAL = HTSAT + "spectrogram_extractor.stft.conv_real.weight"
STFT_IMAG = HTSAT + "spectrogram_extractor.stft.conv_imag.weight"
MEL_FILTERS = HTSAT + "logmel_extractor.melW"
# Official keys with no counterpart here: ClapAudioModel builds its own shifted-window
# masks, and the AudioSet classifier is not part of the embedding.
UNUSED_KEY_MARKERS = (".attn_mask", HTSAT + "tscam_conv.", HTSAT + "head.")

# Official key prefix -> ours, and HTSAT (Swin) names -> transformers' ClapAudio names.
PREFIXES = (
    (HTSAT, "audio_tower.audio_encoder."),
    ("audio_encoder.projection.", "audio_projection."),
    (GPT2, "text_tower."),
    ("caption_encoder.projection.", "text_projection."),
)
HTSAT_RENAMES = (
    ("bn0.", "batch_norm."),
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
    (".attn.relative_position", ".attention.self.relative_position"),
    (".attn.proj.", ".attention.output.dense."),
    (".mlp.fc1.", ".intermediate.dense."),
    (".mlp.fc2.", ".output.dense."),
)
QKV = ".attn.qkv."
QUERY_KEY_VALUE = tuple(f".attention.self.{part}." for part in ("query", "key", "value"))


def _tensor(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"Not an MS-CLAP 2023 checkpoint: key {key!r} is missing")
    return state[key]


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many consecutive ``prefix{i}.`` sub-modules the state dict holds."""
    count = 0
    while any(key.startswith(f"{prefix}{count}.") for key in state):
        count += 1
    return count


def config_from_state_dict(state: dict[str, torch.Tensor]) -> MSClapConfig:
    stages = _count(state, HTSAT + "layers.")
    depths = tuple(_count(state, HTSAT + f"layers.{i}.blocks.") for i in range(stages))
    # relative_position_bias_table: ((2 * window - 1) ** 2, heads)
    tables = [_tensor(state, HTSAT + f"layers.{i}.blocks.0.attn.relative_position_bias_table") for i in range(stages)]
    gpt2_embed_dim = _tensor(state, GPT2 + "wte.weight").shape[1]
    config = MSClapConfig(
        htsat_embed_dim=_tensor(state, HTSAT + "patch_embed.proj.weight").shape[0],
        htsat_depths=depths,
        htsat_heads=tuple(table.shape[1] for table in tables),
        htsat_window=(math.isqrt(tables[0].shape[0]) + 1) // 2 if tables else 0,
        gpt2_layers=_count(state, GPT2 + "h."),
        gpt2_embed_dim=gpt2_embed_dim,
        # GPT-2 Conv1D weights are (in, out)
        gpt2_inner_dim=_tensor(state, GPT2 + "h.0.mlp.c_fc.weight").shape[1],
        gpt2_positions=_tensor(state, GPT2 + "wpe.weight").shape[0],
        gpt2_vocab=_tensor(state, GPT2 + "wte.weight").shape[0],
        projection_dim=_tensor(state, "audio_encoder.projection.linear1.weight").shape[0],
    )
    if stages == 0 or 0 in depths:
        raise ValueError(f"Not an MS-CLAP 2023 checkpoint: HTSAT stages with blocks {depths}")
    if config.spec_size // config.mel_bins != config.freq_ratio:
        raise ValueError("spec_size // mel_bins must equal freq_ratio")
    if _tensor(state, MEL_FILTERS).shape != (config.n_fft // 2 + 1, config.mel_bins):
        raise ValueError(f"{MEL_FILTERS} has shape {tuple(state[MEL_FILTERS].shape)}, "
                         f"expected ({config.n_fft // 2 + 1}, {config.mel_bins})")
    return config


def stft_window(conv_real: torch.Tensor, conv_imag: torch.Tensor) -> torch.Tensor:
    """The analysis window behind torchlibrosa's Conv1d DFT kernels (n_fft // 2 + 1, 1, n_fft).

    Row k is window * cos(2 pi k n / n_fft) (real) and -window * sin(...) (imag), so row 0 of
    the real kernel is the window itself; the other rows are checked, since torch.stft can
    only apply a windowed DFT.
    """
    n_freq, _, n_fft = conv_real.shape
    window = conv_real[0, 0].double()
    phase = 2 * math.pi * torch.outer(torch.arange(n_freq), torch.arange(n_fft)).remainder(n_fft).double() / n_fft
    error = max((conv_real[:, 0].double() - window * phase.cos()).abs().max().item(),
                (conv_imag[:, 0].double() + window * phase.sin()).abs().max().item())
    if conv_real.shape != conv_imag.shape or n_freq != n_fft // 2 + 1 or error > 1e-4:
        raise ValueError(f"STFT kernels in {STFT_REAL} / {STFT_IMAG} are not a windowed DFT (error {error:.2g})")
    return window.float()


def to_our_key(key: str) -> str | None:
    """Our name for an official key (None for keys we do not use); q/k/v split aside."""
    if key == "logit_scale":
        return key
    for official, ours in PREFIXES:
        if key.startswith(official):
            key = ours + key[len(official):]
            if official == HTSAT:
                for old, new in HTSAT_RENAMES:
                    key = key.replace(old, new)
            return key
    return None


def to_official_key(key: str) -> str:
    """Inverse of ``to_our_key`` (query, key and value all name the stacked qkv)."""
    for part in QUERY_KEY_VALUE:
        key = key.replace(part, QKV)
    for official, ours in PREFIXES:
        if key.startswith(ours):
            key = official + key[len(ours):]
            if official == HTSAT:
                # Longest first: ".attention.output.dense." must become ".attn.proj.", not ".attention.mlp.fc2.".
                for old, new in sorted(HTSAT_RENAMES, key=lambda rename: -len(rename[1])):
                    key = key.replace(new, old)
    return key


class LogMelSpectrogram(nn.Module):
    """torchlibrosa's Spectrogram + LogmelFilterBank (power 2, ref 1, no top_db) in one torch.stft."""

    def __init__(self, window: torch.Tensor, mel_filters: torch.Tensor, hop_length: int, amin: float):
        super().__init__()
        self.register_buffer("window", window)  # (n_fft,)
        self.register_buffer("mel_filters", mel_filters)  # (n_fft // 2 + 1, mel_bins)
        self.hop_length = hop_length
        self.amin = amin

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        # waveforms: (batch, samples) -> (batch, frames, mel_bins); 7 s at 44.1 kHz -> 965 frames
        spectrum = torch.stft(waveforms, n_fft=self.window.shape[0], hop_length=self.hop_length,
                              window=self.window, center=True, pad_mode="reflect", return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()  # (batch, freq, frames)
        mel = power.transpose(1, 2) @ self.mel_filters
        return 10.0 * torch.log10(mel.clamp(min=self.amin))


class FlexWindowAttention(nn.Module):
    """transformers' ``ClapAudioSelfAttention`` (Swin window attention) as one ``flex_attention``
    call, for compiled encoders only.

    Compiled, the transformers form is a chain of memory-bound kernels over (batch * windows,
    heads, 64, 64) score tensors: scores written, relative-position bias and shift mask added,
    softmax, scores read again for the product with V. flex_attention fuses that chain into one
    kernel that never writes scores; the bias and the mask are read in its score_mod (every
    window is a dense 64 x 64 block, so no block mask). Outside torch.compile it runs an unfused
    reference implementation, so eager encoders keep transformers' module.

    Takes over the query/key/value layers, the bias table and the index of the module it
    replaces under the same names, so state-dict keys do not change. The score_mod reads only
    module tensors: inductor's CPU flex_attention (torch 2.9) cannot read a tensor computed in
    the compiled graph, so the block's shift mask, a constant of its geometry that transformers
    rebuilds every call, is kept here (not saved) and the bias is looked up in the table.
    """

    GRID_ROWS = 65535  # CUDA's limit on a grid's y dimension

    def __init__(self, attention: nn.Module, shift_mask: torch.Tensor | None):
        super().__init__()
        if attention.dropout.p:
            raise ValueError("flex window attention has no attention dropout")
        self.num_attention_heads = attention.num_attention_heads
        self.attention_head_size = attention.attention_head_size
        self.query, self.key, self.value = attention.query, attention.key, attention.value
        self.relative_position_bias_table = attention.relative_position_bias_table  # ((2 * window - 1) ** 2, heads)
        self.register_buffer("relative_position_index", attention.relative_position_index)  # (tokens, tokens)
        # (windows, tokens, tokens), 0 within a region of the rolled image, -100 across; None unshifted
        self.register_buffer("shift_mask", shift_mask, persistent=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool | None = False) -> tuple[torch.Tensor]:
        # hidden_states: (batch * windows, tokens, dim), tokens = window ** 2, the windows of one
        # item consecutive; attention_mask: transformers' shift mask, which must be ours
        if output_attentions:
            raise ValueError("flex window attention does not return attention probabilities")
        mask = self.shift_mask
        if (attention_mask is None) != (mask is None) or (mask is not None and attention_mask.shape != mask.shape):
            raise ValueError("the block's shift mask does not match the one it was built with")
        table, index = self.relative_position_bias_table, self.relative_position_index

        def score_mod(score, window, head, q_index, kv_index):
            score = score + table[index[q_index, kv_index], head]
            if mask is not None:
                score = score + mask[window % mask.shape[0], q_index, kv_index]
            return score

        # flex_attention launches a grid of (batch * windows) * heads blocks in y, which CUDA caps
        # at 65,535: the first stage at batch 256 is 16,384 windows of 4 heads. Larger batches go
        # in chunks of whole items, so each chunk's windows meet the right rows of the mask. Each
        # chunk is projected on its own: flex_attention (inductor, torch 2.9 on the CPU) misread
        # query/key/value views that start inside a larger tensor.
        rows = self.GRID_ROWS // self.num_attention_heads
        rows -= rows % (mask.shape[0] if mask is not None else 1)
        contexts = [self._attend(chunk, score_mod) for chunk in hidden_states.split(rows)]
        return (torch.cat(contexts) if len(contexts) > 1 else contexts[0],)

    def _attend(self, hidden_states: torch.Tensor, score_mod) -> torch.Tensor:
        # hidden_states: (windows, tokens, dim) -> (windows, tokens, dim)
        windows, tokens, dim = hidden_states.shape
        split = (windows, tokens, self.num_attention_heads, self.attention_head_size)
        # each (windows, heads, tokens, head_size)
        query, key, value = (layer(hidden_states).view(split).transpose(1, 2)
                             for layer in (self.query, self.key, self.value))
        context = flex_attention(query, key, value, score_mod=score_mod)  # (windows, heads, tokens, head_size)
        return context.transpose(1, 2).reshape(windows, tokens, dim)


class MSClapModel(nn.Module):
    def __init__(self, config: MSClapConfig, stft_window: torch.Tensor, mel_filters: torch.Tensor):
        super().__init__()
        self.config = config
        self.log_mel = LogMelSpectrogram(stft_window, mel_filters, config.hop_length, config.log_amin)
        self.audio_tower = ClapAudioModel(ClapAudioConfig(
            spec_size=config.spec_size,
            patch_size=config.patch_size,
            patch_stride=[config.patch_size, config.patch_size],
            num_mel_bins=config.mel_bins,
            window_size=config.htsat_window,
            patch_embeds_hidden_size=config.htsat_embed_dim,
            depths=list(config.htsat_depths),
            num_attention_heads=list(config.htsat_heads),
            mlp_ratio=config.mlp_ratio,
            hidden_size=config.audio_features,
            hidden_act="gelu",
            qkv_bias=True,
            enable_fusion=False,
            drop_path_rate=0.0,
        ))
        self.audio_projection = Projection(config.audio_features, config.projection_dim, config.projection_dropout)
        self.text_tower = GPT2Model(GPT2Config(
            vocab_size=config.gpt2_vocab,
            n_positions=config.gpt2_positions,
            n_embd=config.gpt2_embed_dim,
            n_layer=config.gpt2_layers,
            n_head=config.gpt2_embed_dim // config.gpt2_head_dim,
            n_inner=config.gpt2_inner_dim,
        ))
        self.text_projection = Projection(config.gpt2_embed_dim, config.projection_dim, config.projection_dropout)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def use_flex_window_attention(self) -> None:
        """Every Swin block's window attention becomes a ``FlexWindowAttention`` over the same
        parameters: for a model that only ever runs under torch.compile."""
        for stage in self.audio_tower.audio_encoder.layers:
            for block in stage.blocks:
                if isinstance(block.attention.self, FlexWindowAttention):
                    continue
                # As ClapAudioLayer.forward starts: a stage no larger than a window is one
                # unshifted window.
                block.set_shift_and_window_size(block.input_resolution)
                height, width = (-(-size // block.window_size) * block.window_size for size in block.input_resolution)
                mask = block.get_attn_mask(height, width, torch.float32, block.layernorm_before.weight.device)
                block.attention.self = FlexWindowAttention(block.attention.self, mask)

    def embed_audio(self, waveforms: torch.Tensor) -> torch.Tensor:
        # waveforms: (batch, window_samples) -> (batch, projection_dim), not normalised
        return self.audio_features(self.log_mel(waveforms))

    def audio_features(self, log_mel: torch.Tensor) -> torch.Tensor:
        # log_mel: (batch, frames, mel_bins) -> (batch, projection_dim), not normalised
        features = self.audio_tower(input_features=log_mel[:, None]).pooler_output  # (batch, audio_features)
        return self.audio_projection(features)

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: (batch, tokens), right-padded -> (batch, projection_dim)
        hidden = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        end_of_text = attention_mask.sum(dim=-1) - 1
        return self.text_projection(hidden[torch.arange(hidden.shape[0], device=hidden.device), end_of_text])

    # Training hooks, as ``CompactClap`` has them (``training.train`` fine-tunes through
    # these): unnormalised embeddings; text inputs are (input_ids, attention_mask) from
    # ``tokenize_captions``, because GPT-2 trains too.
    def encode_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Crops padded to a common width (at most one window) and their lengths -> (batch, projection_dim).

        Each crop is tiled to one window, as the encoder tiles short clips, so training sees
        what indexing sees; the log-mel stays float32 under autocast (its log needs the range).
        """
        positions = torch.arange(self.config.window_samples, device=waveforms.device)[None]
        tiled = waveforms.float().gather(1, positions % lengths.clamp(min=1)[:, None])
        with torch.autocast(waveforms.device.type, enabled=False):
            log_mel = self.log_mel(tiled)
        return self.audio_features(log_mel)

    def encode_text(self, text_inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.embed_text(*text_inputs)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor,
                text_inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers in one call, as DistributedDataParallel needs: (audio, text) embeddings."""
        return self.encode_audio(waveforms, lengths), self.encode_text(text_inputs)

    def to_official_state_dict(self, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This model's weights under the official key names, in the layout of ``template`` (the
        official state dict it was loaded from), so msclap itself loads the result. ``template``
        supplies, unchanged, what this module does not hold: the STFT kernels and mel filters
        (folded into ``log_mel``), the shifted-window masks and the AudioSet head."""
        ours = {name: value for name, value in self.state_dict().items() if not name.startswith("log_mel.")}
        state = dict(template)
        for name, value in ours.items():
            if QUERY_KEY_VALUE[1] in name or QUERY_KEY_VALUE[2] in name:
                continue  # written with the query, as one stacked qkv tensor
            if QUERY_KEY_VALUE[0] in name:
                value = torch.cat([ours[name.replace(QUERY_KEY_VALUE[0], part)] for part in QUERY_KEY_VALUE])
            key = to_official_key(name)
            if key not in template or template[key].shape != value.shape:
                raise ValueError(f"{name} has no counterpart of shape {tuple(value.shape)} in the official layout ({key})")
            state[key] = value.detach().to("cpu", template[key].dtype).clone()
        return state

    @classmethod
    def from_official_state_dict(cls, state: dict[str, torch.Tensor]) -> "MSClapModel":
        config = config_from_state_dict(state)
        model = cls(config, stft_window(_tensor(state, STFT_REAL), _tensor(state, STFT_IMAG)), state[MEL_FILTERS].float())
        ours: dict[str, torch.Tensor] = {}
        unexpected = []
        for key, value in state.items():
            if key in (STFT_REAL, STFT_IMAG, MEL_FILTERS) or any(marker in key for marker in UNUSED_KEY_MARKERS):
                continue
            name = to_our_key(key)
            if name is None:
                unexpected.append(key)
            elif QKV in name:
                # qkv: (3 * dim, ...) stacked query, key, value
                for part, chunk in zip(QUERY_KEY_VALUE, value.chunk(3, dim=0)):
                    ours[name.replace(QKV, part)] = chunk
            else:
                ours[name] = value
        own_buffers = {"log_mel.window", "log_mel.mel_filters"}
        expected = set(model.state_dict()) - own_buffers
        missing = sorted({to_official_key(name) for name in expected - set(ours)})
        unexpected += sorted(to_official_key(name) for name in set(ours) - expected)
        if missing or unexpected:
            raise ValueError(f"Not an MS-CLAP 2023 checkpoint with this layout: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        try:
            model.load_state_dict(ours, strict=False)
        except RuntimeError as error:  # shape mismatches: the architecture is inconsistent
            raise ValueError(f"MS-CLAP 2023 checkpoint tensors have inconsistent shapes: {error}") from error
        return model.eval()


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Short stable id of the weights, over a few tensors that any fine-tune changes (hashing all
    159 M parameters would cost every load a second)."""
    return tensors_fingerprint(state, ("logit_scale", "audio_encoder.projection.linear1.weight",
                                       "caption_encoder.projection.linear1.weight", HTSAT + "patch_embed.proj.weight",
                                       GPT2 + "wpe.weight"))


def load_gpt2_tokenizer(folder: Path) -> GPT2TokenizerFast:
    # from_pretrained, not GPT2TokenizerFast(vocab_file=...): the latter silently builds an
    # empty vocabulary in transformers 5.x.
    tokenizer = GPT2TokenizerFast.from_pretrained(str(folder))
    ids = tokenizer("a dog barking")["input_ids"]
    if ids != [64, 3290, 48961]:
        raise RuntimeError(f"GPT-2 tokenizer from {folder} is broken: 'a dog barking' -> {ids}, expected [64, 3290, 48961]")
    return tokenizer


def tokenize_captions(tokenizer: GPT2TokenizerFast, config: MSClapConfig,
                      texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (batch, longest <= 77), right-padded; a module-level
    function so the trainer's data loader workers can tokenize captions too."""
    limit = config.max_text_tokens
    end_of_text_id = tokenizer.convert_tokens_to_ids(config.end_of_text.strip())
    rows = tokenizer([text + config.end_of_text for text in texts])["input_ids"]
    rows = [row if len(row) <= limit else row[: limit - 1] + [end_of_text_id] for row in rows]
    longest = max(len(row) for row in rows)
    input_ids = torch.zeros(len(rows), longest, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def window_attention_kind(choice: str | None, compiled: bool, device: torch.device) -> str:
    """The window attention an encoder runs, "flex" or "eager": ``choice``, or by default flex
    when compiled on CUDA and eager elsewhere: on this project's 2-core CPU, inductor's CPU flex
    kernel made compiled bf16 batches of 4 about 20 times slower (one rough bench/indexing.py run)."""
    if choice is None:
        return "flex" if compiled and device.type == "cuda" else "eager"
    if choice not in ("flex", "eager"):
        raise ValueError(f"window_attention must be 'flex' or 'eager'; got {choice!r}")
    if choice == "flex" and not compiled:
        raise ValueError("window_attention='flex' needs compiled=True: uncompiled, flex_attention runs unfused")
    return choice


class _ModelOnDevice:
    """One copy of the model on one device, its audio tower made ready to run there: ``embed``
    is the function ``AudioRuntime`` runs (compiled, and captured in a CUDA graph) on it."""

    def __init__(self, model: MSClapModel, device: torch.device, precision: str, compiled: bool,
                 window_attention: str | None):
        self.model = model.to(device)
        self.device = device
        self.autocast_dtype = autocast_dtype(precision, device)
        # In bfloat16 (float32's range) the audio tower runs wholly in it, weights and activations,
        # the residual stream included. Under autocast its layer norms, softmaxes and residual adds
        # stayed float32, and moving those activations cost compiled batches a tenth of their time
        # on an H100 (9,003 against 8,199 windows/s at 512; cosine to float32 0.99997 against
        # 0.99998, docs/benchmarks.md). float16 keeps autocast: its range could overflow there.
        self.audio_dtype = torch.bfloat16 if self.autocast_dtype == torch.bfloat16 else None
        self.window_attention = window_attention_kind(window_attention, compiled, device)
        if self.window_attention == "flex":
            self.model.use_flex_window_attention()
        if self.audio_dtype is not None:
            self.model.audio_tower.to(self.audio_dtype)
            self.model.audio_projection.to(self.audio_dtype)
        if device.type == "cuda":
            # cuDNN convolves channels-last: with the patch embedding's weight so, its output needs
            # no layout conversion and flattens into tokens as a view (compiled, batch 512 on an
            # H100: 9,447 against 9,043 windows/s, docs/benchmarks.md).
            self.model.audio_tower.audio_encoder.patch_embed.proj.to(memory_format=torch.channels_last)

    def embed(self, windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # windows: (batch, window_samples), short clips tiled to fill them, so their lengths
        # change nothing -> (batch, projection_dim) unit rows.
        # The log-mel front end stays float32 (its log needs the range).
        log_mel = self.model.log_mel(windows)
        if self.audio_dtype is not None:
            embedded = self.model.audio_features(log_mel.to(self.audio_dtype))
        else:
            with autocast(self.device, self.autocast_dtype):
                embedded = self.model.audio_features(log_mel)
        return F.normalize(embedded.float(), dim=-1)


class MSClap2023Encoder:
    """The ``encoders.Encoder`` interface over ``MSClapModel``: numpy in, unit-norm float32 numpy out.

    Audio goes through ``runtime`` (``encoders.runtime.AudioRuntime``), shared among
    ``devices`` when there are several, each with a copy of the model; text runs on the first.
    """

    name = NAME
    weights_path = ""  # set by the loader: the file the weights came from

    def __init__(self, model: MSClapModel, tokenizer: GPT2TokenizerFast, weights_id: str,
                 devices: list[torch.device], batch_size: int = 32, precision: str = "auto",
                 compiled: bool | str = False, cuda_graphs: bool = True, window_attention: str | None = None):
        # The copies for further devices are made before the first is moved or cast.
        models = [model, *(copy.deepcopy(model) for _ in devices[1:])]
        on_devices = [_ModelOnDevice(copied, device, precision, bool(compiled), window_attention)
                      for copied, device in zip(models, devices)]
        first = on_devices[0]
        self.model = first.model
        self.tokenizer = tokenizer
        self.config = model.config
        self.weights_id = weights_id
        self.device, self.devices = first.device, list(devices)
        self.batch_size = batch_size
        self.sample_rate = self.config.sample_rate
        self.window_seconds = self.config.window_seconds
        self.dim = self.config.projection_dim
        # The multiplier for cosine similarities (exp of the stored log-scale), as CLIP uses it.
        self.logit_scale = model.logit_scale.detach().exp().item()
        self.autocast_dtype = first.autocast_dtype  # the text tower's; the audio tower's is first.audio_dtype
        self.compiled = bool(compiled)
        self.window_attention = first.window_attention
        self.runtime = AudioRuntime.on_devices([(on.device, on.embed) for on in on_devices], self.sample_rate,
                                               self.window_seconds, self.dim, batch_size, "tile", compiled,
                                               cuda_graphs)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), each (batch, longest <= 77), right-padded."""
        return tokenize_captions(self.tokenizer, self.config, texts)

    def prepare_for_queries(self) -> None:
        """Nothing: its text tower runs as loaded (no frozen graph was measured for it)."""

    @torch.inference_mode()
    def embed_text(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        texts = list(texts)
        if self.device.type == "cpu" and len(texts) == 1:
            with threads_limited(1):  # a lone query: threads_limited says why
                return self._embed_text(texts, batch_size)
        return self._embed_text(texts, batch_size)

    def _embed_text(self, texts: list[str], batch_size: int | None) -> np.ndarray:
        batches = []
        for start in range(0, len(texts), batch_size or self.batch_size):
            input_ids, attention_mask = self.tokenize(texts[start : start + (batch_size or self.batch_size)])
            with autocast(self.device, self.autocast_dtype):
                embedded = self.model.embed_text(input_ids.to(self.device), attention_mask.to(self.device))
            batches.append(F.normalize(embedded.float(), dim=-1).cpu().numpy())
        return np.concatenate(batches) if batches else np.zeros((0, self.dim), np.float32)

    def embed_audio(self, waveforms: list, batch_size: int | None = None) -> np.ndarray:
        return self.runtime.embed_audio(waveforms, batch_size)

    def embed_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> np.ndarray:
        return self.runtime.embed_packed(samples, lengths, starts)

    def launch_packed(self, samples: torch.Tensor, lengths: list[int], starts: list[int] | None = None) -> Launched:
        return self.runtime.launch_packed(samples, lengths, starts)


def load_msclap_2023(weights: str | Path | None = None, device: str | torch.device = "cpu",
                     cache_dir: str | Path | None = None, batch_size: int | None = None, precision: str = "auto",
                     compiled: bool | str = False, cuda_graphs: bool = True,
                     window_attention: str | None = None) -> MSClap2023Encoder:
    """Load ``CLAP_weights_2023.pth`` (path, ``$CLAPDEX_WEIGHTS`` or the Hugging Face cache/hub).

    ``device`` may name several, "cuda:0,cuda:1": audio batches are then shared among them
    (text runs on the first), with the rows one device would give.

    ``precision``: "auto" (bfloat16 on CUDA, float32 on the CPU), "fp32", "bf16" or "fp16"; in
    bfloat16 the audio tower itself is cast (the text tower autocasts), fp16 autocasts both;
    ``compiled`` runs the audio tower through ``torch.compile`` (pays on a GPU for
    large libraries: compiling takes a while), True or a compile mode such as
    "max-autotune-no-cudagraphs". ``cuda_graphs``: full audio batches on a GPU replay a
    captured CUDA graph (captured at the first full batch). ``window_attention``: "flex"
    (``FlexWindowAttention``; compiled only, the default compiled on CUDA) or "eager"
    (transformers' attention, the default otherwise).
    """
    path = resolve_msclap_2023(weights, cache_dir)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"{path} is not an MS-CLAP checkpoint: expected a dict with a 'model' state dict")
    state = checkpoint["model"]
    model = MSClapModel.from_official_state_dict(state)
    tokenizer = load_gpt2_tokenizer(resolve_gpt2_tokenizer(path, cache_dir))
    devices = resolve_devices(device)
    # A GPU needs large batches to be kept busy (measured in bench/indexing.py); a CPU doesn't.
    batch_size = batch_size or (256 if devices[0].type == "cuda" else 32)
    encoder = MSClap2023Encoder(model, tokenizer, weights_fingerprint(state), devices, batch_size, precision, compiled,
                                cuda_graphs, window_attention)
    encoder.weights_path = str(path.absolute())
    return encoder
