"""Probe (H100 machine, 2026-11-26, written against commit 29610df): compiled bf16 at batch
512 with flex_attention tiles of 64 x 64 (the window's tokens), and with the patch-embedding
conv's weight channels-last. From commit b808b5f on the encoder makes that conv channels-last
itself.

    CLAPDEX_SHARED=<shared> python3 bench/probes/flex_tiles_channels_last.py
"""
import functools, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path[:0] = ['.', 'tests', 'bench']
from checkpoints import write_tiny_msclap_checkpoint
import encoders.msclap as msclap
from indexing import windows_per_second
weights = write_tiny_msclap_checkpoint(Path(tempfile.mkdtemp()), full=True)
batch = 512
g = torch.Generator(device='cuda').manual_seed(1)
test = 0.1 * torch.randn(batch, 308700, device='cuda', generator=g)
reference = msclap.load_msclap_2023(weights, device='cuda', batch_size=64, precision='fp32', cuda_graphs=False)
expected = np.concatenate([reference.runtime.embed_windows(test[i:i + 64]) for i in range(0, batch, 64)])
del reference; torch.cuda.empty_cache()
original = msclap.flex_attention
def variant(tiles, channels_last):
    msclap.flex_attention = functools.partial(original, kernel_options={"BLOCK_M": 64, "BLOCK_N": 64}) if tiles else original
    encoder = msclap.load_msclap_2023(weights, device='cuda', batch_size=batch, precision='bf16', compiled=True)
    if channels_last:
        encoder.model.audio_tower.audio_encoder.patch_embed.proj.to(memory_format=torch.channels_last)
    return encoder
for label, tiles, cl in [('flex as committed', False, False), ('flex tiles 64x64', True, False), ('patch conv channels-last', False, True), ('both', True, True)]:
    try:
        t0 = time.perf_counter(); encoder = variant(tiles, cl); encoder.runtime.embed_windows(test); compile_s = time.perf_counter() - t0
        cosine = float(np.sum(encoder.runtime.embed_windows(test) * expected, axis=1).min())
        rate = windows_per_second(encoder, batch, 12)
        print(f'{label}: {rate:.0f} windows/s, cosine to fp32 min {cosine:.6f}, compile {compile_s:.0f} s', flush=True)
    except Exception as error:
        print(f'{label}: failed: {type(error).__name__}: {str(error)[:300]}', flush=True)
    encoder = None; torch.cuda.empty_cache()
