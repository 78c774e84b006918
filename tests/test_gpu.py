"""What runs on a CUDA device: the encoders' bf16, compiled and GPU-filling paths, and exact GPU search.

Marked ``gpu``; skipped, with the reason, where CUDA is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def unit(rows):
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clips(count, rng):
    # lengths from a tenth of a window to a whole one: tiled differently
    return [0.1 * rng.standard_normal(int(44100 * seconds)).astype(np.float32)
            for seconds in np.linspace(0.7, 7.0, count)]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_gpu_embeddings_stay_within_cosine_0999_of_the_cpu(tiny_weights, tiny_encoder, precision):
    from encoders.msclap import load_msclap_2023

    on_gpu = load_msclap_2023(tiny_weights, device="cuda", precision=precision)
    audio = clips(9, np.random.default_rng(0))
    cosine = np.sum(on_gpu.embed_audio(audio, batch_size=4) * tiny_encoder.embed_audio(audio), axis=1)
    assert cosine.min() > 0.999
    texts = ["a dog barking", "rain on a tin roof, close", "!"]
    assert np.sum(on_gpu.embed_text(texts) * tiny_encoder.embed_text(texts), axis=1).min() > 0.999


def test_tiling_on_the_gpu_matches_the_cpu(tiny_weights, tiny_encoder):
    from encoders.msclap import load_msclap_2023

    on_gpu = load_msclap_2023(tiny_weights, device="cuda", precision="fp32")
    audio = clips(5, np.random.default_rng(1))
    tiled, lengths = on_gpu.runtime.windows_on_device(audio)
    assert np.array_equal(tiled.cpu().numpy(), np.stack([tiny_encoder.runtime.fill_window(clip) for clip in audio]))
    assert lengths.tolist() == [len(clip) for clip in audio]


@pytest.mark.parametrize("compiled", [False, True])
def test_full_batches_replayed_from_a_cuda_graph_match_launched_ones(tiny_weights, compiled):
    from encoders.msclap import load_msclap_2023

    graphed = load_msclap_2023(tiny_weights, device="cuda", precision="bf16", batch_size=4, compiled=compiled)
    launched = load_msclap_2023(tiny_weights, device="cuda", precision="bf16", batch_size=4, cuda_graphs=False)
    audio = clips(10, np.random.default_rng(3))  # two full batches and a partial one
    first = graphed.embed_audio(audio)
    assert graphed.runtime.graph is not None  # the full batches went through the graph
    assert np.sum(first * launched.embed_audio(audio), axis=1).min() > 0.9999
    # Replaying again with other inputs gives their own vectors, not the captured ones.
    again = graphed.embed_audio(audio[::-1])
    assert np.sum(again * first[::-1], axis=1).min() > 0.9999


def test_compiled_flex_window_attention_in_bf16_stays_within_cosine_0999_of_eager_fp32(tmp_path):
    from checkpoints import write_tiny_msclap_checkpoint

    from encoders.msclap import FlexWindowAttention, load_msclap_2023

    # The released architecture: heads of 24 (flex_attention pads them to 32), 64 windows an item.
    weights = write_tiny_msclap_checkpoint(tmp_path, full=True)
    fp32 = load_msclap_2023(weights, device="cuda", precision="fp32", batch_size=8)
    flex = load_msclap_2023(weights, device="cuda", precision="bf16", batch_size=8, compiled=True)
    assert flex.window_attention == "flex"
    assert sum(isinstance(module, FlexWindowAttention) for module in flex.model.modules()) == sum(flex.config.htsat_depths)
    audio = clips(8, np.random.default_rng(4))
    assert np.sum(flex.embed_audio(audio) * fp32.embed_audio(audio), axis=1).min() > 0.999


def test_exact_gpu_search_agrees_with_faiss_and_filters_inside(tmp_path):
    from search.store import FaissStore

    rng = np.random.default_rng(2)
    vectors = unit(rng.standard_normal((5000, 64)))
    ids = np.arange(100, 5100)
    on_gpu = FaissStore(tmp_path / "gpu.faiss", 64, kind="flat", gpu=True)
    on_cpu = FaissStore(tmp_path / "cpu.faiss", 64, kind="flat", gpu=False)
    for store in (on_gpu, on_cpu):
        store.add(ids, vectors)
    queries = unit(rng.standard_normal((4, 64)))
    gpu_scores, gpu_ids = on_gpu.search(queries, 10)
    cpu_scores, cpu_ids = on_cpu.search(queries, 10)
    assert np.allclose(gpu_scores, cpu_scores, atol=2e-3)
    assert np.mean(gpu_ids == cpu_ids) > 0.9  # float16 vectors may swap near-ties
    allowed = ids[::250]
    _, filtered = on_gpu.search(queries, 5, allowed_ids=allowed)
    assert filtered.shape == (4, 5) and set(filtered.ravel()) <= set(allowed)
    on_gpu.remove(ids[:2500])
    assert not set(on_gpu.search(queries, 10)[1].ravel()) & set(ids[:2500])


def test_the_compact_model_on_the_gpu_gives_the_cpus_rows():
    from encoders.batches import BatchEmbedder
    from encoders.compact import load_compact

    on_cpu, on_gpu = load_compact(device="cpu"), load_compact(device="cuda", batch_size=4)
    rng = np.random.default_rng(5)
    audio = [0.1 * rng.standard_normal(int(on_cpu.sample_rate * seconds)).astype(np.float32)
             for seconds in np.linspace(0.3, on_cpu.window_seconds, 9)]
    padded, lengths = on_gpu.runtime.windows_on_device(audio)
    assert np.array_equal(padded.cpu().numpy(), np.stack([on_cpu.runtime.fill_window(clip) for clip in audio]))
    assert lengths.tolist() == [len(clip) for clip in audio]
    expected = on_cpu.embed_audio(audio)
    assert np.sum(on_gpu.embed_audio(audio) * expected, axis=1).min() > 0.999
    with BatchEmbedder(on_gpu) as batches:
        for clip in audio:
            batches.add(clip)
        assert np.sum(np.stack(list(batches.finish())) * expected, axis=1).min() > 0.999
