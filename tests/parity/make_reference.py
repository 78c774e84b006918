"""Embed the parity inputs with the official msclap 1.3.4 code and save them.

Runs in the reference environment (msclap pins numpy<2 and transformers<5), e.g.
    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install "torch==2.9.1" \
        "torchaudio==2.9.1" "torchcodec==0.8.1" "msclap==1.3.4" soundfile
    /tmp/refvenv/bin/python tests/parity/make_reference.py            # -> reference_tiny.npz
    /tmp/refvenv/bin/python tests/parity/make_reference.py --full --out /tmp/reference_full.npz

The weights are the random checkpoint of tests/checkpoints.py. msclap is patched only
where it would download or where its sizes are fixed: GPT-2 and its tokenizer are built
locally, and HTSAT / the projection get the checkpoint's sizes. Audio goes through the
wrapper's own tiling and collation; only file decoding is replaced by in-memory PCM.
Captions are embedded twice: by the wrapper as is (its pooling miscounts literal '!'),
and by its modules pooled at the attention mask's last token, which clapdex computes.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch

HERE = Path(__file__).resolve().parent


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


checkpoints = _import(HERE.parent / "checkpoints.py")
inputs = _import(HERE / "inputs.py")


def build_official(weights: Path, size):
    import transformers
    import msclap  # noqa: F401  (registers the submodules patched below)
    from msclap.models import clap as clap_module
    from msclap.models import htsat as htsat_module

    wrapper_module = sys.modules["msclap.CLAPWrapper"]

    class LocalGPT2:
        @staticmethod
        def from_pretrained(name):
            return transformers.GPT2Model(transformers.GPT2Config(
                n_layer=size.gpt2_layers, n_embd=size.gpt2_embed_dim,
                n_head=size.gpt2_embed_dim // 64, n_positions=size.gpt2_positions,
            ))

    class LocalTokenizer:
        @staticmethod
        def from_pretrained(name):
            return transformers.GPT2TokenizerFast.from_pretrained(checkpoints.gpt2_tokenizer_dir())

    def sized_htsat(self, *args, **kwargs):
        torch.nn.Module.__init__(self)
        self.htsat = htsat_module.HTSAT_Swin_Transformer(
            config=htsat_module.config, embed_dim=size.htsat_embed_dim,
            depths=list(size.htsat_depths), num_heads=list(size.htsat_heads),
        )

    read_config = wrapper_module.CLAPWrapper.read_config_as_args

    def sized_config(self, *args, **kwargs):
        config = read_config(self, *args, **kwargs)
        config.out_emb = size.htsat_embed_dim * 2 ** (len(size.htsat_depths) - 1)
        config.transformer_embed_dim = size.gpt2_embed_dim
        config.d_proj = size.projection_dim
        return config

    clap_module.AutoModel = LocalGPT2
    wrapper_module.AutoTokenizer = LocalTokenizer
    htsat_module.HTSATWrapper.__init__ = sized_htsat
    wrapper_module.CLAPWrapper.read_config_as_args = sized_config

    official = wrapper_module.CLAPWrapper(model_fp=str(weights), version="2023", use_cuda=False)
    # The wrapper loads with strict=False; make sure nothing was skipped.
    state = torch.load(weights, map_location="cpu", weights_only=True)["model"]
    missing, unexpected = official.clap.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"checkpoint layout differs from msclap's: missing {missing}, unexpected {unexpected}")
    return official


def embed_audio(official, clips: dict[str, np.ndarray]) -> np.ndarray:
    def read_pcm(self, name, resample=True):
        return torch.from_numpy(inputs.to_float(clips[name]))[None, :], inputs.SAMPLE_RATE

    type(official).read_audio = read_pcm
    return official.get_audio_embeddings(list(clips), resample=False).numpy()


def embed_text_pooled_by_mask(official, texts: list[str]) -> np.ndarray:
    tokens = official.preprocess_text(texts)
    with torch.no_grad():
        hidden = official.clap.caption_encoder.base(**tokens)[0]
        last = tokens["attention_mask"].sum(-1) - 1
        pooled = hidden[torch.arange(len(texts)), last]
        return official.clap.caption_encoder.projection(pooled).numpy()


def read_esc10_clips() -> dict[str, np.ndarray]:
    clips = {}
    for name, (relative, seconds) in inputs.ESC10_CLIPS.items():
        pcm, rate = soundfile.read(checkpoints.TEST_DATA / "esc10" / relative, dtype="int16", always_2d=True)
        assert rate == inputs.SAMPLE_RATE, (relative, rate)
        mono = np.round(pcm.mean(axis=1)).astype(np.int16)
        clips[name] = mono[: round(seconds * rate)]
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full-size random checkpoint (HTSAT-tiny + GPT-2 base)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "reference_tiny.npz")
    args = parser.parse_args()
    torch.manual_seed(0)

    esc10 = read_esc10_clips()
    clips = {**inputs.synthetic_clips(), **esc10}
    size = checkpoints.FULL if args.full else checkpoints.TINY
    with tempfile.TemporaryDirectory() as tmp:
        weights = checkpoints.write_tiny_msclap_checkpoint(tmp, seed=args.seed, full=args.full)
        official = build_official(weights, size)
        text_official = official.get_text_embeddings(inputs.TEXTS).numpy()
        text_pooled_by_mask = embed_text_pooled_by_mask(official, inputs.TEXTS)
        audio_official = embed_audio(official, clips)
        logit_scale = official.clap.logit_scale.exp().item()

    np.savez_compressed(
        args.out,
        seed=args.seed,
        full=args.full,
        texts=np.array(inputs.TEXTS),
        text_official=text_official,
        text_pooled_by_mask=text_pooled_by_mask,
        clip_names=np.array(list(clips)),
        clip_sha256=np.array([inputs.pcm_sha256(pcm) for pcm in clips.values()]),
        audio_official=audio_official,
        logit_scale=logit_scale,
        **{f"pcm_{name}": pcm for name, pcm in esc10.items()},
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
