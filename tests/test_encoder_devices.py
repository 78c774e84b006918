"""Several devices share the audio batches and give the rows one device gives."""

import numpy as np


def test_several_devices_share_audio_batches_and_give_one_devices_rows(tiny_weights, tiny_encoder):
    from encoders.msclap import load_msclap_2023

    shared = load_msclap_2023(tiny_weights, device="cpu,cpu", batch_size=2)
    assert len(shared.replicas) == 1 and shared.replicas[0].model is not shared.model
    rng = np.random.default_rng(5)
    clips = [0.1 * rng.standard_normal(int(44100 * s)).astype(np.float32) for s in (1.0, 7.0, 3.5, 0.5, 2.0)]
    assert np.allclose(shared.embed_audio(clips), tiny_encoder.embed_audio(clips), atol=1e-5)
    assert shared.embed_audio(clips[:1]).shape == (1, tiny_encoder.dim)
