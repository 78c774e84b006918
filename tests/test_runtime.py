"""encoders.runtime: windows filled on the device as on the host, and one thread limit for
torch and faiss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.threads import threads_limited


@pytest.fixture(scope="module")
def compact_encoder():
    from encoders.compact import load_compact

    return load_compact(device="cpu")  # the shipped weights


@pytest.mark.parametrize("model", ["tiny_encoder", "compact_encoder"])
def test_windows_filled_on_a_device_are_those_filled_on_the_host(request, model):
    # msclap-2023 tiles short clips, clapdex-compact pads them with silence; fill_on_device
    # runs on any device, so the CPU checks what a GPU does.
    runtime = request.getfixturevalue(model).runtime
    rng = np.random.default_rng(0)
    window = runtime.window_samples
    audio = [rng.uniform(-1, 1, size).astype(np.float32) for size in (1, window // 3, window - 1, window)]
    windows, lengths = runtime.fill_on_device(torch.from_numpy(np.concatenate(audio)), [len(clip) for clip in audio])
    assert np.array_equal(windows.numpy(), np.stack([runtime.fill_window(clip) for clip in audio]))
    assert lengths.tolist() == [len(clip) for clip in audio]
    assert not (runtime.fill == "silence" and windows[0, 1:].any())


def test_the_compact_model_embeds_windows_filled_on_a_device_as_clips(compact_encoder):
    runtime = compact_encoder.runtime
    audio = [0.1 * np.random.default_rng(seed).standard_normal(size).astype(np.float32)
             for seed, size in enumerate((3200, runtime.window_samples, 50000))]
    filled = runtime.fill_on_device(torch.from_numpy(np.concatenate(audio)), [len(clip) for clip in audio])
    assert np.array_equal(runtime.embed_windows(*filled), compact_encoder.embed_audio(audio))


def test_threads_limited_limits_torch_and_faiss_and_restores_both():
    faiss = pytest.importorskip("faiss")
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    with threads_limited(1):
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (torch_threads, faiss_threads)
    with pytest.raises(KeyError), threads_limited(0):  # at least one thread, and restored after an error
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
        raise KeyError
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (torch_threads, faiss_threads)
    with threads_limited(torch_threads + faiss_threads):  # more than there are: as they were
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (torch_threads, faiss_threads)


@pytest.mark.parametrize("model", ["tiny_encoder", "compact_encoder"])
def test_overlapping_windows_are_cut_on_a_device_as_on_the_host(request, model):
    # Windows of a recording at half-window hops share their samples in the packed batch: the
    # gather cuts each from its start, as fill_window would from a copy of its own.
    runtime = request.getfixturevalue(model).runtime
    window = runtime.window_samples
    recording = np.random.default_rng(1).uniform(-1, 1, 3 * window).astype(np.float32)
    starts = [0, window // 2, window, window + window // 2, 2 * window + 7]
    lengths = [window, window, window, window, window - 7]
    windows, _ = runtime.fill_on_device(torch.from_numpy(recording), lengths, starts)
    expected = [runtime.fill_window(recording[start : start + length]) for start, length in zip(starts, lengths)]
    assert np.array_equal(windows.numpy(), np.stack(expected))
