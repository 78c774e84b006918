"""Several devices share the audio batches and give the rows one device gives."""

import numpy as np
import pytest
import torch


def test_several_devices_share_audio_batches_and_give_one_devices_rows(tiny_weights, tiny_encoder):
    from encoders.msclap import load_msclap_2023

    shared = load_msclap_2023(tiny_weights, device="cpu,cpu", batch_size=2)
    assert shared.devices == shared.runtime.devices == [torch.device("cpu")] * 2
    models = [runtime.embed.__self__.model for runtime in (shared.runtime, *shared.runtime.replicas)]
    assert models[0] is shared.model and models[1] is not shared.model  # each device has its own copy
    rng = np.random.default_rng(5)
    clips = [0.1 * rng.standard_normal(int(44100 * s)).astype(np.float32) for s in (1.0, 7.0, 3.5, 0.5, 2.0)]
    assert np.allclose(shared.embed_audio(clips), tiny_encoder.embed_audio(clips), atol=1e-5)
    assert shared.embed_audio(clips[:1]).shape == (1, tiny_encoder.dim)


def test_packed_batches_are_shared_among_devices_too(tiny_weights, tiny_encoder):
    from encoders.batches import BatchEmbedder
    from encoders.msclap import load_msclap_2023

    shared = load_msclap_2023(tiny_weights, device="cpu,cpu", batch_size=4)
    rng = np.random.default_rng(6)
    clips = [0.1 * rng.standard_normal(int(44100 * s)).astype(np.float32) for s in (1.0, 7.0, 3.5, 0.5, 2.0, 6.0)]
    vectors = []
    with BatchEmbedder(shared) as batches:
        for clip in clips:
            batches.add(clip)
        vectors += batches.finish()
    assert np.allclose(np.stack(vectors), tiny_encoder.embed_audio(clips), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_give_the_rows_of_one(tiny_weights):
    from encoders.batches import BatchEmbedder
    from encoders.msclap import load_msclap_2023

    one = load_msclap_2023(tiny_weights, device="cuda:0", batch_size=8, precision="fp32")
    two = load_msclap_2023(tiny_weights, device="cuda:0,cuda:1", batch_size=8, precision="fp32")
    assert two.devices == [torch.device("cuda:0"), torch.device("cuda:1")]
    rng = np.random.default_rng(7)
    clips = [0.1 * rng.standard_normal(int(44100 * s)).astype(np.float32) for s in np.linspace(0.5, 7.0, 20)]
    vectors = []
    with BatchEmbedder(two) as batches:
        for clip in clips:
            batches.add(clip)
        vectors += batches.finish()
    assert np.sum(np.stack(vectors) * one.embed_audio(clips), axis=1).min() > 0.99999


def test_all_means_every_gpu_and_the_cpu_without_one(tiny_weights):
    from encoders.msclap import load_msclap_2023
    from encoders.runtime import resolve_devices

    expected = [torch.device("cuda", i) for i in range(torch.cuda.device_count())] or [torch.device("cpu")]
    assert resolve_devices("all") == expected
    assert resolve_devices("cpu, cpu") == [torch.device("cpu")] * 2
    encoder = load_msclap_2023(tiny_weights, device="all", batch_size=2)
    assert encoder.devices == encoder.runtime.devices == expected


def test_the_compact_model_shares_audio_batches_among_devices_too():
    from encoders.batches import BatchEmbedder
    from encoders.compact import load_compact

    one = load_compact(device="cpu", batch_size=2)  # the shipped weights
    shared = load_compact(device="cpu,cpu", batch_size=2)
    assert shared.devices == [torch.device("cpu")] * 2
    rng = np.random.default_rng(8)
    clips = [0.1 * rng.standard_normal(int(one.sample_rate * s)).astype(np.float32) for s in (0.3, 5.0, 2.5, 1.0, 4.0)]
    expected = one.embed_audio(clips)
    assert np.allclose(shared.embed_audio(clips), expected, atol=1e-5)
    with BatchEmbedder(shared) as batches:
        for clip in clips:
            batches.add(clip)
        assert np.allclose(np.stack(list(batches.finish())), expected, atol=1e-5)


def test_devices_is_another_name_for_the_device_option():
    from clapdex.cli import build_parser

    assert build_parser().parse_args(["--devices", "cuda:0,cuda:1", "status"]).device == "cuda:0,cuda:1"
