import shutil

import numpy as np
import pytest
import torch

from checkpoints import TOKENIZER_FILES

from encoders import DeviceError, Encoder, MissingWeightsError, list_models, load_encoder
from encoders.weights import MSCLAP_2023_FILENAME

END_OF_TEXT = 50256


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("CLAPDEX_WEIGHTS", raising=False)
    return tmp_path / "hub"


def write_checkpoint(directory, state):
    directory.mkdir()
    torch.save({"model": state}, directory / MSCLAP_2023_FILENAME)
    return directory / MSCLAP_2023_FILENAME


def load_state(path):
    return torch.load(path, weights_only=True)["model"]


def test_registry():
    assert list_models() == ["clapdex-compact", "msclap-2023"]
    with pytest.raises(ValueError, match="msclap-2023"):
        load_encoder("no-such-model")


def test_encoder_contract(tiny_encoder, tiny_weights):
    assert isinstance(tiny_encoder, Encoder)
    assert tiny_encoder.name == "msclap-2023"
    assert tiny_encoder.sample_rate == 44100
    assert tiny_encoder.window_seconds == 7.0
    assert tiny_encoder.dim == 64
    assert tiny_encoder.device == torch.device("cpu")
    assert tiny_encoder.logit_scale == pytest.approx(1 / 0.07, rel=1e-6)
    from encoders.msclap import weights_fingerprint

    assert tiny_encoder.weights_id == weights_fingerprint(load_state(tiny_weights))
    state = load_state(tiny_weights)
    state["logit_scale"] = state["logit_scale"] + 1
    assert weights_fingerprint(state) != tiny_encoder.weights_id


def test_empty_inputs(tiny_encoder):
    for embedded in (tiny_encoder.embed_text([]), tiny_encoder.embed_audio([])):
        assert embedded.shape == (0, tiny_encoder.dim) and embedded.dtype == np.float32


def test_embeddings_are_unit_norm_and_batch_independent(tiny_encoder):
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (44100, 2 * 44100, 7 * 44100)]
    audio = tiny_encoder.embed_audio(clips, batch_size=2)
    texts = tiny_encoder.embed_text(["a dog barking", "wind", "a long caption about an old clock ticking"], batch_size=2)
    for embedded in (audio, texts):
        assert embedded.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tiny_encoder.embed_audio(clips[:1]), audio[:1], atol=1e-5)
    np.testing.assert_allclose(tiny_encoder.embed_text(["wind"]), texts[1:2], atol=1e-5)


def test_tokenizer(tiny_encoder):
    input_ids, attention_mask = tiny_encoder.tokenize(["a dog barking", "a"])
    assert input_ids[0].tolist() == [64, 3290, 48961, 220, END_OF_TEXT]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_long_captions_truncated_to_77_keeping_end_of_text(tiny_encoder):
    start = " ".join(f"word{i}" for i in range(100))
    input_ids, attention_mask = tiny_encoder.tokenize([start, start + " and more"])
    assert input_ids.shape == (2, 77) and attention_mask.all()
    assert (input_ids[:, -1] == END_OF_TEXT).all()
    embedded = tiny_encoder.embed_text([start, start + " and a different ending"])
    np.testing.assert_allclose(embedded[0], embedded[1], atol=1e-6)


def test_bang_does_not_shift_pooling(tiny_encoder):
    caption = "wow! a bang!"
    input_ids, attention_mask = tiny_encoder.tokenize([caption])
    assert (input_ids == 0).sum() == 2  # '!' is GPT-2 id 0, msclap's pad id
    model = tiny_encoder.model
    with torch.inference_mode():
        hidden = model.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        at_end_of_text = model.text_projection(hidden[0, input_ids[0] == END_OF_TEXT])
    expected = torch.nn.functional.normalize(at_end_of_text, dim=-1).numpy()
    np.testing.assert_allclose(tiny_encoder.embed_text([caption]), expected, atol=1e-6)
    padded = tiny_encoder.embed_text([caption, "a caption that is much longer than the one with bangs"])
    np.testing.assert_allclose(padded[:1], expected, atol=1e-5)


def test_short_clip_tiled_like_msclap(tiny_encoder):
    window = 7 * 44100
    clip = np.random.default_rng(1).uniform(-0.5, 0.5, 57330).astype(np.float32)  # 1.3 s
    tiled = np.concatenate([clip] * 6)[:window]  # ceil(308700 / 57330) = 6 copies, cut
    np.testing.assert_array_equal(tiny_encoder.runtime.fill_window(clip), tiled)
    np.testing.assert_allclose(tiny_encoder.embed_audio([clip]), tiny_encoder.embed_audio([tiled]), atol=1e-6)


def test_audio_input_errors(tiny_encoder):
    with pytest.raises(ValueError, match="mono 1-D"):
        tiny_encoder.embed_audio([np.zeros((2, 44100), np.float32)])
    with pytest.raises(ValueError, match="at most 308700 samples"):
        tiny_encoder.embed_audio([np.zeros(7 * 44100 + 1, np.float32)])
    with pytest.raises(ValueError, match="empty"):
        tiny_encoder.embed_audio([np.zeros(0, np.float32)])


@pytest.mark.parametrize("change, named", [
    ("drop", "caption_encoder.base.h.1.ln_2.bias"),
    ("drop", "audio_encoder.base.htsat.layers.2.blocks.1.attn.qkv.bias"),
    ("drop", "audio_encoder.base.htsat.bn0.running_var"),
    ("add", "audio_encoder.base.htsat.layers.0.blocks.0.attn.extra"),
    ("add", "text_model.pooler.weight"),
])
def test_strict_loading_names_the_key(tiny_weights, tmp_path, change, named):
    state = load_state(tiny_weights)
    if change == "drop":
        del state[named]
    else:
        state[named] = torch.zeros(3)
    path = write_checkpoint(tmp_path / "bad", state)
    with pytest.raises(ValueError, match="missing keys" if change == "drop" else "unexpected keys") as error:
        load_encoder("msclap-2023", weights=path)
    assert named in str(error.value)


def test_wrong_shape_and_wrong_layout_are_clear(tiny_weights, tmp_path):
    state = load_state(tiny_weights)
    state["caption_encoder.projection.linear2.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="caption_encoder.projection.linear2.weight|text_projection.linear2.weight"):
        load_encoder("msclap-2023", weights=write_checkpoint(tmp_path / "shape", state))
    (tmp_path / "layout").mkdir()
    torch.save({"state_dict": {}}, tmp_path / "layout" / "w.pth")
    with pytest.raises(ValueError, match="'model'"):
        load_encoder("msclap-2023", weights=tmp_path / "layout" / "w.pth")


def test_missing_weights_path(tmp_path):
    with pytest.raises(MissingWeightsError, match="does not exist") as error:
        load_encoder("msclap-2023", weights=tmp_path / "nowhere.pth")
    assert isinstance(error.value, FileNotFoundError)


def test_missing_weights_offline_says_how_to_get_them(offline_hub):
    with pytest.raises(MissingWeightsError) as error:
        load_encoder("msclap-2023", cache_dir=offline_hub)
    for hint in ("microsoft/msclap", MSCLAP_2023_FILENAME, "--weights", "CLAPDEX_WEIGHTS", "HF_HUB_OFFLINE"):
        assert hint in str(error.value)


def test_weights_from_environment(tiny_weights, tiny_encoder, monkeypatch):
    monkeypatch.setenv("CLAPDEX_WEIGHTS", str(tiny_weights))
    assert load_encoder("msclap-2023").weights_id == tiny_encoder.weights_id


def test_offline_hugging_face_cache(tiny_weights, tiny_encoder, offline_hub):
    # The documented cache layout: refs/main names a snapshot folder holding the files.
    commit = "0123456789abcdef0123456789abcdef01234567"
    for repo, names in (("models--microsoft--msclap", [MSCLAP_2023_FILENAME]), ("models--gpt2", TOKENIZER_FILES)):
        snapshot = offline_hub / repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (offline_hub / repo / "refs").mkdir()
        (offline_hub / repo / "refs" / "main").write_text(commit)
        for name in names:
            shutil.copyfile(tiny_weights.parent / name, snapshot / name)
    encoder = load_encoder("msclap-2023", cache_dir=offline_hub)
    assert encoder.weights_id == tiny_encoder.weights_id
    np.testing.assert_allclose(encoder.embed_text(["rain"]), tiny_encoder.embed_text(["rain"]), atol=1e-6)


def test_missing_tokenizer_offline(tiny_weights, tmp_path, offline_hub):
    (tmp_path / "alone").mkdir()
    shutil.copyfile(tiny_weights, tmp_path / "alone" / MSCLAP_2023_FILENAME)
    with pytest.raises(MissingWeightsError, match="vocab.json"):
        load_encoder("msclap-2023", weights=tmp_path / "alone" / MSCLAP_2023_FILENAME, cache_dir=offline_hub)


def test_auto_device():
    from encoders.runtime import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible:
        assert resolve_device(f"cuda:{visible - 1}") == torch.device("cuda", visible - 1)
    with pytest.raises(DeviceError, match=f"cuda:{visible}: "):  # one past the last GPU, or none at all
        resolve_device(f"cuda:{visible}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_weights, tiny_encoder):
    clip = np.random.default_rng(2).uniform(-0.5, 0.5, 3 * 44100).astype(np.float32)
    on_cpu = np.concatenate([tiny_encoder.embed_audio([clip]), tiny_encoder.embed_text(["rain"])])
    # fp32 on the GPU computes what the CPU computes.
    exact = load_encoder("msclap-2023", weights=tiny_weights, device="cuda", precision="fp32")
    np.testing.assert_allclose(np.concatenate([exact.embed_audio([clip]), exact.embed_text(["rain"])]), on_cpu, atol=1e-4)
    # The default on CUDA, bf16 matmuls, stays within the cosine the index tolerates.
    fast = load_encoder("msclap-2023", weights=tiny_weights, device="cuda")
    cosines = (np.concatenate([fast.embed_audio([clip]), fast.embed_text(["rain"])]) * on_cpu).sum(axis=1)
    assert cosines.min() >= 0.999


def test_bf16_runs_the_audio_tower_in_bf16_within_cosine_0999(tiny_weights, tiny_encoder):
    """bf16 casts the audio tower itself (activations and residual stream too), not autocast;
    the log-mel front end and the text tower are left as they were."""
    from encoders.msclap import load_msclap_2023

    half = load_msclap_2023(tiny_weights, device="cpu", precision="bf16")
    assert {p.dtype for p in half.model.audio_tower.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.model.text_tower.parameters()} == {torch.float32}
    clips = [np.random.default_rng(seed).uniform(-0.5, 0.5, 5 * 44100).astype(np.float32) for seed in range(3)]
    vectors = half.embed_audio(clips)
    assert vectors.dtype == np.float32
    assert (vectors * tiny_encoder.embed_audio(clips)).sum(axis=1).min() >= 0.999
