"""Fit clapdex-compact's text framing map and write the checkpoint that carries it.

    python -m training.frame_text --weights RUN/clapdex-compact.safetensors --out framed.safetensors

A query embedded under every framing of ``encoders.compact.TEXT_TEMPLATES`` ("rain", "the sound
of rain", ...) and averaged finds sounds better than its bare words, but costs a search four
texts through MiniLM instead of one. The map (``CompactConfig.text_framing``) gives that mean
from the bare words' vector at the cost of one 512 x 512 product: a ridge regression between
the two over WordNet's lemmas (Debian's wordnet-base), which hold no evaluation wording. It is
fitted after training and never trained; the rest of the checkpoint is copied unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random

import numpy as np
import torch

from encoders.compact import (TEXT_TEMPLATES, CompactClap, CompactEncoder, MiniLMSentenceEncoder, query_text_dtype,
                              read_compact, save_compact)
from encoders.runtime import resolve_devices
from training.wordnet import WORDNET

PARTS = ("noun", "verb", "adj")


def lemmas(folder=WORDNET, count: int = 12000, seed: int = 0) -> list[str]:
    """``count`` of WordNet's nouns, verbs and adjectives, drawn at random, spaces for underscores."""
    words = [line.split(" ", 1)[0].replace("_", " ")
             for part in PARTS for line in (folder / f"index.{part}").read_text(encoding="latin-1").splitlines()
             if not line.startswith(" ")]  # the licence header
    random.Random(seed).shuffle(words)
    return words[:count]


def fit_framing(bare: np.ndarray, framed: np.ndarray, ridge: float) -> torch.Tensor:
    """W (dim, dim) minimising |bare @ W - framed|^2 + ridge |W|^2, both (texts, dim) unit rows."""
    x, y = torch.as_tensor(bare, dtype=torch.float64), torch.as_tensor(framed, dtype=torch.float64)
    return torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=torch.float64), x.T @ y).float()


def with_framing(model: CompactClap, mapping: torch.Tensor) -> CompactClap:
    """A copy of ``model`` whose texts go through ``mapping`` (rows @ mapping)."""
    framed = CompactClap(dataclasses.replace(model.config, text_framing=True))
    state = {**model.state_dict(), "text_framing.weight": mapping.T.contiguous()}
    framed.load_state_dict(state, strict=True)
    return framed.eval()


def frame(model: CompactClap, words: list[str], ridge: float, batch_size: int = 512) -> tuple[CompactClap, dict]:
    if model.text_framing is not None:
        raise ValueError("these weights already carry a text framing map")

    devices = resolve_devices("cpu")
    # One load for both ways, in the precision search embeds queries in.
    text_encoder = MiniLMSentenceEncoder(devices[0], model.config.text_max_tokens, query_text_dtype(devices[0]))

    def embed(templates):
        encoder = CompactEncoder(model, "", devices, text_encoder=text_encoder, text_templates=templates)
        return np.concatenate([encoder.embed_text(words[at:at + batch_size]) for at in range(0, len(words), batch_size)])

    bare, framed = embed(("{}",)), embed(TEXT_TEMPLATES)
    mapping = fit_framing(bare, framed, ridge)
    mapped = torch.nn.functional.normalize(torch.as_tensor(bare) @ mapping, dim=-1).numpy()
    fit = {"words": len(words), "ridge": ridge, "cosine_bare_to_framed": float((bare * framed).sum(1).mean()),
           "cosine_mapped_to_framed": float((mapped * framed).sum(1).mean())}
    return with_framing(model, mapping), fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="a clapdex-compact checkpoint without a framing map")
    parser.add_argument("--out", required=True, help="the checkpoint to write (float16, as shipped)")
    parser.add_argument("--words", type=int, default=12000, help="WordNet lemmas to fit on (default 12000)")
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge penalty (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="which lemmas are drawn")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    model, weights_id = read_compact(args.weights)
    framed, fit = frame(model, lemmas(count=args.words, seed=args.seed), args.ridge)
    save_compact(framed, args.out, dtype=torch.float16)
    _, framed_id = read_compact(args.out)
    print(json.dumps({"from": weights_id, "weights_id": framed_id, **fit}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
