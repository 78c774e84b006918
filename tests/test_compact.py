import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from encoders import Encoder, MissingWeightsError, list_models, load_encoder
from encoders.compact import (CONFIGS, TEXT_TEMPLATES, CompactClap, CompactEncoder, MiniLMSentenceEncoder,
                              query_text_dtype, read_compact, save_compact)
from training import frame_text
from training.evaluate import WORDINGS

TINY = CONFIGS["tiny"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random model whose batch norms have non-trivial running statistics."""
    torch.manual_seed(0)
    model = CompactClap(TINY).train()
    with torch.no_grad():
        for _ in range(3):
            model.encode_audio(torch.randn(4, TINY.window_samples) * 0.3, torch.full((4,), TINY.window_samples))
    return save_compact(model.eval(), tmp_path_factory.mktemp("compact") / "tiny.safetensors")


@pytest.fixture(scope="module")
def tiny_compact(tiny_checkpoint):
    return load_encoder("clapdex-compact", weights=tiny_checkpoint)


def test_registered():
    assert "clapdex-compact" in list_models()


def test_encoder_contract(tiny_compact, tiny_checkpoint):
    assert isinstance(tiny_compact, Encoder)
    assert tiny_compact.name == "clapdex-compact"
    assert (tiny_compact.sample_rate, tiny_compact.window_seconds, tiny_compact.dim) == (32000, 2.0, 32)
    assert tiny_compact.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)
    assert tiny_compact.weights_id == read_compact(tiny_checkpoint)[1]


def test_embeddings_are_unit_vectors(tiny_compact):
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.2 for n in (TINY.window_samples, 3000, 17)]
    audio = tiny_compact.embed_audio(clips)
    text = tiny_compact.embed_text(["a dog barking", "rain on a tin roof"])
    for embedded, rows in ((audio, 3), (text, 2)):
        assert embedded.shape == (rows, 32) and embedded.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(text[0], text[1])
    assert tiny_compact.embed_audio([]).shape == tiny_compact.embed_text([]).shape == (0, 32)


def test_a_text_is_the_mean_of_its_framings(tiny_compact):
    """Under several templates a text is the normalised mean of its framings' unit vectors,
    whatever else is in the batch; by default, its words alone."""
    framing = CompactEncoder(tiny_compact.model, tiny_compact.weights_id, [torch.device("cpu")],
                             text_encoder=tiny_compact.text_encoder, text_templates=TEXT_TEMPLATES)
    assert tiny_compact.text_templates == ("{}",) and tiny_compact.model.text_framing is None
    for text in ("a dog barking", "glass {shatter}"):  # braces in the words are words
        framed = tiny_compact.embed_text([template.format(text) for template in TEXT_TEMPLATES])
        assert framed[1:].tolist() != framed[:1].tolist() * (len(framed) - 1)
        mean = framed.mean(axis=0)
        np.testing.assert_allclose(framing.embed_text(["rain on a tin roof", text])[1],
                                   mean / np.linalg.norm(mean), atol=2e-3)


def test_a_fitted_framing_map_brings_the_words_towards_their_framings(tiny_compact, tmp_path):
    """training.frame_text: the checkpoint it writes embeds a text's words, through its map, nearer
    to the mean of the text's framings than the words alone are, and keeps everything else."""
    words = ["dog", "rain", "door slam", "thunder", "glass", "engine", "bird song", "footsteps",
             "wind", "bell", "crowd", "water drip", "siren", "keyboard", "applause", "fire"] * 3
    framed_model, fit = frame_text.frame(tiny_compact.model, words, ridge=0.1)
    assert fit["cosine_mapped_to_framed"] > fit["cosine_bare_to_framed"]
    save_compact(framed_model, tmp_path / "framed.safetensors")
    framed = load_encoder("clapdex-compact", weights=tmp_path / "framed.safetensors")
    assert framed.weights_id != tiny_compact.weights_id and framed.model.text_framing is not None

    framings = CompactEncoder(tiny_compact.model, tiny_compact.weights_id, [torch.device("cpu")],
                              text_encoder=tiny_compact.text_encoder, text_templates=TEXT_TEMPLATES)
    target, bare, mapped = (encoder.embed_text(words[:16]) for encoder in (framings, tiny_compact, framed))
    assert np.allclose(np.linalg.norm(mapped, axis=1), 1, atol=1e-5)
    assert (mapped * target).sum(1).mean() > (bare * target).sum(1).mean()
    noise = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    np.testing.assert_allclose(framed.embed_audio([noise]), tiny_compact.embed_audio([noise]), atol=2e-3)
    with pytest.raises(ValueError, match="already carry"):
        frame_text.frame(framed.model, words, ridge=0.1)


def test_short_clip_does_not_depend_on_its_batch(tiny_compact):
    """Padding with silence and pooling over the clip's own frames: batch companions change nothing."""
    rng = np.random.default_rng(1)
    short = rng.standard_normal(5000).astype(np.float32) * 0.3
    alone = tiny_compact.embed_audio([short])
    together = tiny_compact.embed_audio([rng.standard_normal(TINY.window_samples).astype(np.float32), short])
    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)


def test_rejects_what_is_not_one_mono_window(tiny_compact):
    with pytest.raises(ValueError, match="at most"):
        tiny_compact.embed_audio([np.zeros(TINY.window_samples + 1, np.float32)])
    with pytest.raises(ValueError, match="mono"):
        tiny_compact.embed_audio([np.zeros((2, 100), np.float32)])


def test_float16_checkpoint_embeds_alike(tiny_compact, tiny_checkpoint, tmp_path):
    model, _ = read_compact(tiny_checkpoint)
    half = load_encoder("clapdex-compact", weights=save_compact(model, tmp_path / "half.safetensors", torch.float16))
    assert (tmp_path / "half.safetensors").stat().st_size < tiny_checkpoint.stat().st_size * 0.6
    clip = [np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.2]
    assert (half.embed_audio(clip) @ tiny_compact.embed_audio(clip).T).item() > 0.999


def test_missing_or_foreign_weights(tmp_path):
    with pytest.raises(MissingWeightsError):
        load_encoder("clapdex-compact", weights=tmp_path / "absent.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a clapdex-compact checkpoint"):
        load_encoder("clapdex-compact", weights=tmp_path / "other.safetensors")


@pytest.mark.gpu
def test_cuda_matches_cpu(tiny_checkpoint, tiny_compact):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    on_gpu = load_encoder("clapdex-compact", weights=tiny_checkpoint, device="cuda")
    clip = [np.random.default_rng(3).standard_normal(20000).astype(np.float32) * 0.2]
    np.testing.assert_allclose(on_gpu.embed_audio(clip), tiny_compact.embed_audio(clip), atol=1e-3)
    # Against float32 words: a CPU with native bfloat16 embeds queries' words in it (query_text_dtype).
    exact_text = CompactEncoder(tiny_compact.model, tiny_compact.weights_id, [torch.device("cpu")],
                                text_encoder=MiniLMSentenceEncoder(torch.device("cpu"), dtype=torch.float32))
    np.testing.assert_allclose(on_gpu.embed_text(["a bell"]), exact_text.embed_text(["a bell"]), atol=1e-3)


def test_query_words_in_bfloat16_stay_where_float32_puts_them():
    """Queries' words run through MiniLM in bfloat16 on a CPU that computes it natively: the
    shipped model's text vectors must stay within cosine 0.999 of float32's (ESC-10's held-out
    wordings, a long caption, the load test's words)."""
    shipped = load_encoder("clapdex-compact")
    sets = json.loads(WORDINGS.read_text())["sets"]
    texts = [text for wording in sets.values() for text in wording.values()]
    texts += ["heavy rain on a tin roof with distant thunder rolling", "glass shatter 318270415", "kick snare"]
    vectors = {}
    for dtype in (torch.float32, torch.bfloat16):
        features = MiniLMSentenceEncoder(torch.device("cpu"), dtype=dtype)(texts)
        with torch.inference_mode():
            vectors[dtype] = torch.nn.functional.normalize(shipped.model.encode_text(features), dim=-1).numpy()
    cosines = (vectors[torch.float32] * vectors[torch.bfloat16]).sum(axis=1)
    assert cosines.min() > 0.999, f"{texts[cosines.argmin()]!r}: cosine {cosines.min():.5f}"
    assert query_text_dtype(torch.device("cuda")) == torch.float32  # GPUs: as before


def test_freezing_the_graph_logs_nothing():
    # A server freezes it in every search worker at start: nothing it says is news to a user.
    program = ("import torch; from encoders.compact import MiniLMSentenceEncoder; "
               "encoder = MiniLMSentenceEncoder(torch.device('cpu')); encoder.freeze_graph(); encoder(['rain'])")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_frozen_minilm_graph_embeds_as_the_model_does():
    """The server runs MiniLM as a traced graph (``freeze_graph``): a trace records one path
    through the model's Python at one example's shape, so it must give the model's rows at
    every shape a query brings: one text, unpadded batches, padded ones, a caption cut at
    the token limit. In float32 the rows are the model's to rounding; in bfloat16 (how a CPU
    that computes it runs queries) the graph's fused steps round otherwise, so its
    vectors must stay within cosine 0.999 of float32's, as the model's own do."""
    texts = ["kick", "glass shatter 318270415", "rain", "heavy rain on a tin roof with distant thunder rolling",
             "door creak", "wind " * 300]
    batches = [texts[:1], texts[2:3], texts[:2], texts[1:4], texts, texts[4:5] * 7]
    exact = MiniLMSentenceEncoder(torch.device("cpu"))
    frozen = MiniLMSentenceEncoder(torch.device("cpu"))
    frozen.freeze_graph()
    assert isinstance(frozen._pooled, torch.jit.ScriptModule)
    for batch in batches:
        torch.testing.assert_close(frozen(batch), exact(batch), atol=1e-5, rtol=1e-4)
    if query_text_dtype(torch.device("cpu")) == torch.bfloat16:
        fast = MiniLMSentenceEncoder(torch.device("cpu"), dtype=torch.bfloat16)
        fast.freeze_graph()
        for batch in batches:
            cosines = (fast(batch) * exact(batch)).sum(-1)
            assert cosines.min() > 0.999, f"{batch}: cosine {cosines.min():.5f}"
    shipped = load_encoder("clapdex-compact")
    before = shipped.embed_text(texts)
    shipped.prepare_for_queries()
    assert isinstance(shipped.text_encoder._pooled, torch.jit.ScriptModule)
    assert (shipped.embed_text(texts) * before).sum(axis=1).min() > 0.999


def test_shipped_model_is_the_default_and_small():
    from encoders.compact import PACKAGED_WEIGHTS

    assert PACKAGED_WEIGHTS.exists() and PACKAGED_WEIGHTS.stat().st_size < 10 * 2**20
    encoder = load_encoder("clapdex-compact")
    texts = encoder.embed_text(["a dog barking", "rain falling on a roof"])
    assert texts.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-3)
