"""clapdex's msclap-2023 against embeddings from the official msclap 1.3.4 code.

The reference (tests/parity/reference_tiny.npz) comes from tests/parity/make_reference.py,
run in a separate environment with msclap, on the tiny random checkpoint. Point
CLAPDEX_PARITY_REFERENCE at another reference (e.g. one made with --full) to check that.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from checkpoints import write_tiny_msclap_checkpoint

sys.path.insert(0, str(Path(__file__).parent / "parity"))
import inputs  # noqa: E402

TOLERANCE = 1e-4
DEFAULT_REFERENCE = Path(__file__).parent / "parity" / "reference_tiny.npz"


@pytest.fixture(scope="module")
def reference():
    return np.load(os.environ.get("CLAPDEX_PARITY_REFERENCE", DEFAULT_REFERENCE))


@pytest.fixture(scope="module")
def encoder(reference, tiny_encoder, tmp_path_factory):
    if int(reference["seed"]) == 0 and not bool(reference["full"]):
        return tiny_encoder
    from encoders import load_encoder

    directory = tmp_path_factory.mktemp("parity-weights")
    weights = write_tiny_msclap_checkpoint(directory, seed=int(reference["seed"]), full=bool(reference["full"]))
    return load_encoder("msclap-2023", weights=weights, device="cpu")


def unit_rows(matrix):
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def max_abs_diff(ours, theirs):
    return np.abs(ours - unit_rows(theirs)).max(axis=1)


def test_logit_scale(encoder, reference):
    assert encoder.logit_scale == pytest.approx(float(reference["logit_scale"]), rel=1e-6)


def test_texts_match_official_modules(encoder, reference):
    diff = max_abs_diff(encoder.embed_text(list(reference["texts"])), reference["text_pooled_by_mask"])
    print("text max abs diff per caption:", diff)
    assert diff.max() <= TOLERANCE


def test_texts_without_bang_match_official_wrapper(encoder, reference):
    texts = list(reference["texts"])
    input_ids, attention_mask = encoder.tokenize(texts)
    has_bang = ((input_ids == 0) & (attention_mask == 1)).any(dim=1).numpy()
    assert has_bang.any() and not has_bang.all()
    diff = max_abs_diff(encoder.embed_text(texts), reference["text_official"])
    assert diff[~has_bang].max() <= TOLERANCE
    # The wrapper pools '!' captions at the wrong token; clapdex deliberately does not.
    assert diff[has_bang].min() > 100 * TOLERANCE


def test_clips_match_official(encoder, reference):
    clips = inputs.synthetic_clips()
    names = list(reference["clip_names"])
    clips.update({name: reference[f"pcm_{name}"] for name in names if f"pcm_{name}" in reference})
    assert [inputs.pcm_sha256(clips[name]) for name in names] == list(reference["clip_sha256"])
    diff = max_abs_diff(encoder.embed_audio([inputs.to_float(clips[name]) for name in names]), reference["audio_official"])
    print("audio max abs diff per clip:", dict(zip(names, diff)))
    assert diff.max() <= TOLERANCE
