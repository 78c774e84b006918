"""BatchEmbedder: windows packed into buffers and embedded on a thread give the vectors
``embed_audio`` gives, in the order they were added, whatever the batch boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.batches import BatchEmbedder


def clips(count, seed, rate=44100, longest=7.0):
    # from a tenth of a window to a whole one, so short clips are tiled and full ones not
    rng = np.random.default_rng(seed)
    return [0.1 * rng.standard_normal(int(rate * seconds)).astype(np.float32)
            for seconds in np.linspace(longest / 10, longest, count)]


def embedded_in_batches(encoder, audio, batch_size):
    vectors = []
    with BatchEmbedder(encoder, batch_size) as batches:
        for clip in audio:
            batches.add(clip)
            vectors += batches.ready()
        vectors += batches.finish()
    return np.stack(vectors)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batches_give_embed_audio_vectors_in_order(tiny_encoder, batch_size):
    audio = clips(7, seed=0)
    expected = tiny_encoder.embed_audio(audio)
    assert np.allclose(embedded_in_batches(tiny_encoder, audio, batch_size), expected, atol=1e-5)


def test_the_compact_model_embeds_packed_batches_as_it_embeds_clips():
    from encoders.compact import load_compact

    compact = load_compact(device="cpu")  # the shipped weights
    audio = clips(5, seed=1, rate=compact.sample_rate, longest=compact.window_seconds)
    expected = compact.embed_audio(audio)
    packed = torch.from_numpy(np.concatenate(audio))
    assert np.array_equal(compact.embed_packed(packed, [len(clip) for clip in audio]), expected)
    assert np.allclose(embedded_in_batches(compact, audio, 2), expected, atol=1e-5)


def test_clips_longer_than_a_window_are_refused_when_added(tiny_encoder):
    with BatchEmbedder(tiny_encoder, 2) as batches:
        with pytest.raises(ValueError, match="at most"):
            batches.add(np.zeros(tiny_encoder.config.window_samples + 1, np.float32))


def test_an_error_inside_the_model_reaches_the_caller(tiny_weights):
    from encoders.msclap import load_msclap_2023

    broken = load_msclap_2023(tiny_weights, device="cpu")
    broken.model.audio_projection.double()  # float32 features meet float64 weights
    with BatchEmbedder(broken, 2) as batches:
        for clip in clips(3, seed=3):
            batches.add(clip)
        with pytest.raises(RuntimeError):
            list(batches.finish())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model_batch", [None, 4])
def test_packed_batches_on_the_gpu_match_the_cpu(tiny_weights, tiny_encoder, model_batch):
    # model_batch 4: every full batch replays one CUDA graph, whose output the next replay
    # overwrites while the batch after is already copied in: each batch keeps its own rows.
    from encoders.msclap import load_msclap_2023

    on_gpu = load_msclap_2023(tiny_weights, device="cuda", precision="fp32", batch_size=model_batch)
    audio = clips(23 if model_batch else 9, seed=2)
    cosine = np.sum(embedded_in_batches(on_gpu, audio, 4) * tiny_encoder.embed_audio(audio), axis=1)
    assert cosine.min() > 0.9999


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_windows_sharing_their_audio_give_the_vectors_of_windows_added_alone(tiny_encoder, batch_size):
    # A decoder's piece: overlapping windows of one recording, its audio held once.
    window = tiny_encoder.config.window_samples
    recording = 0.1 * np.random.default_rng(4).standard_normal(4 * window).astype(np.float32)
    offsets = [0, window // 2, window, 3 * window // 2, 2 * window, 3 * window]
    lengths = [window] * 5 + [window // 3]
    alone = [recording[offset : offset + length] for offset, length in zip(offsets, lengths)]
    vectors = []
    with BatchEmbedder(tiny_encoder, batch_size) as batches:
        batches.add_windows(recording, offsets[:4], lengths[:4])
        vectors += batches.ready()
        batches.add_windows(recording, offsets[4:], lengths[4:])
        vectors += batches.finish()
    assert np.allclose(np.stack(vectors), embedded_in_batches(tiny_encoder, alone, batch_size), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pieces_from_decoder_processes_cross_to_the_gpu_as_they_are_embedded_on_the_cpu(tiny_weights, tiny_encoder,
                                                                                       tmp_path):
    # The decoders' shared memory is page-locked and copied from straight to GPU buffers.
    import soundfile

    from encoders.decoding import decode_windows
    from encoders.msclap import load_msclap_2023

    rng = np.random.default_rng(5)
    paths = []
    for number, seconds in enumerate([30.0, 2.0, 12.5, 0.4, 7.0]):
        paths.append(tmp_path / f"take{number}.wav")
        soundfile.write(paths[-1], 0.1 * rng.standard_normal(int(44100 * seconds)), 44100, subtype="FLOAT")

    def embedded(encoder):
        keys, vectors = [], []
        with BatchEmbedder(encoder) as batches:
            for piece in decode_windows(paths, encoder.sample_rate, encoder.window_seconds, 3.5, workers=2):
                if piece.samples:
                    batches.add_windows(piece.span, piece.offsets, [len(window) for window in piece.samples])
                    keys += [(piece.number, start) for start in piece.starts]
                vectors += batches.ready()
            vectors += batches.finish()
        return dict(zip(keys, vectors, strict=True))

    on_gpu = load_msclap_2023(tiny_weights, device="cuda", precision="fp32", batch_size=4)
    expected, got = embedded(tiny_encoder), embedded(on_gpu)
    assert sorted(got) == sorted(expected)
    assert min(float(np.dot(got[key], expected[key])) for key in expected) > 0.9999
