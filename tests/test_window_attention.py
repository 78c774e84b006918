"""FlexWindowAttention, the fused window attention of compiled MS-CLAP encoders, against
transformers' ClapAudioSelfAttention, compiled on the CPU through inductor as on a GPU.

The test checkpoint's weights (0.02 scale) leave attention almost uniform, so a misplaced bias
would hardly move an embedding: the tests give the bias tables unit scale and sharpen the
queries, and check that a transposed bias is caught.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import ClapAudioConfig
from transformers.models.clap.modeling_clap import ClapAudioLayer

from encoders.msclap import FlexWindowAttention, MSClap2023Encoder, load_msclap_2023


def sharpened(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
            if name.endswith("attention.self.query.weight"):
                parameter.mul_(10)
    return model


def flipped_bias(model: torch.nn.Module) -> torch.nn.Module:
    """The table reversed: each query gets the bias of the mirrored offset, as if query and key
    were swapped in the lookup."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                parameter.copy_(parameter.flip(0))
    return model


@pytest.mark.parametrize("grid_rows", [FlexWindowAttention.GRID_ROWS, 16])
def test_a_shifted_block_attends_as_transformers_does(monkeypatch, grid_rows):
    # 16 grid rows over 2 heads: chunks of two items' windows, as a batch of 256 needs on a GPU.
    monkeypatch.setattr(FlexWindowAttention, "GRID_ROWS", grid_rows)
    torch.manual_seed(0)
    # 16 x 16 tokens in four 8 x 8 windows, each with its own regions, for three items.
    block = ClapAudioLayer(ClapAudioConfig(window_size=8), dim=32, input_resolution=(16, 16), num_heads=2, shift_size=4)
    eager = sharpened(block).attention.self
    mask = block.get_attn_mask(16, 16, torch.float32, "cpu")  # (4, 64, 64)
    flex = torch.compile(FlexWindowAttention(eager, mask), dynamic=False)
    windows = torch.randn(3 * 4, 64, 32)
    with torch.inference_mode():
        expected = eager(windows, mask)[0]
        assert (expected - eager(windows)[0]).abs().max() > 0.1  # the mask matters here
        assert (flex(windows, mask)[0] - expected).abs().max() < 1e-5


def test_compiled_flex_encoder_gives_the_eager_embeddings(tiny_weights):
    eager = load_msclap_2023(tiny_weights, device="cpu", batch_size=3)
    sharpened(eager.model)
    flex = MSClap2023Encoder(copy.deepcopy(eager.model), eager.tokenizer, eager.weights_id, [torch.device("cpu")],
                             batch_size=3, compiled=True, window_attention="flex")
    swapped = [module for module in flex.model.modules() if isinstance(module, FlexWindowAttention)]
    assert len(swapped) == sum(eager.config.htsat_depths)
    assert list(flex.model.state_dict()) == list(eager.model.state_dict())
    template = torch.load(tiny_weights, weights_only=True)["model"]
    official = flex.model.to_official_state_dict(template)
    assert all(torch.equal(value, official[key]) for key, value in eager.model.to_official_state_dict(template).items())

    windows = 0.1 * torch.randn(3, eager.config.window_samples, generator=torch.Generator().manual_seed(1))
    expected = eager.runtime.embed_windows(windows)
    assert np.sum(flex.runtime.embed_windows(windows) * expected, axis=1).min() > 0.99999
    # A bias looked up the wrong way round would fail the bound above.
    mirrored = MSClap2023Encoder(flipped_bias(eager.model), eager.tokenizer, eager.weights_id, [torch.device("cpu")], 3)
    assert np.sum(mirrored.runtime.embed_windows(windows) * expected, axis=1).min() < 0.9999


def test_flex_is_the_default_only_compiled_on_cuda(tiny_weights):
    assert load_msclap_2023(tiny_weights, device="cpu").window_attention == "eager"
    compiled = load_msclap_2023(tiny_weights, device="cpu", compiled=True)
    assert compiled.window_attention == "eager"
    assert not any(isinstance(module, FlexWindowAttention) for module in compiled.model.modules())
    with pytest.raises(ValueError, match="needs compiled=True"):
        load_msclap_2023(tiny_weights, device="cpu", window_attention="flex")
    with pytest.raises(ValueError, match="'flex' or 'eager'"):
        load_msclap_2023(tiny_weights, device="cpu", compiled=True, window_attention="sdpa")
