"""Probe (H100 machine, 2026-11-26, written against commit 7613bf7, when precision "bf16"
meant autocast): the audio tower cast to bf16 (activations and residual stream too) against
autocast bf16, both compiled with flex attention, at batch 512. From commit 29610df on, "bf16"
casts the tower itself, so both variants below run the cast tower.

    CLAPDEX_SHARED=<shared> python3 bench/probes/bf16_tower.py 512
"""
import sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path[:0] = ['.', 'tests', 'bench']
from checkpoints import write_tiny_msclap_checkpoint
from encoders.msclap import load_msclap_2023
from indexing import windows_per_second
weights = write_tiny_msclap_checkpoint(Path(tempfile.mkdtemp()), full=True)
batch = int(sys.argv[1]) if len(sys.argv) > 1 else 512
g = torch.Generator(device='cuda').manual_seed(1)
tests = [0.1 * torch.randn(batch, 308700, device='cuda', generator=g) for _ in range(2)]
reference = load_msclap_2023(weights, device='cuda', batch_size=64, precision='fp32', cuda_graphs=False)
expected = [np.concatenate([reference.runtime.embed_windows(t[i:i + 64]) for i in range(0, batch, 64)]) for t in tests]
del reference; torch.cuda.empty_cache()
def pure_bf16(encoder):
    model = encoder.model
    model.audio_tower.to(torch.bfloat16); model.audio_projection.to(torch.bfloat16)
    features = model.audio_features
    model.audio_features = lambda log_mel: features(log_mel.to(torch.bfloat16))
    return encoder
for label, make in [
    ('autocast bf16, compiled, flex', lambda: load_msclap_2023(weights, device='cuda', batch_size=batch, precision='bf16', compiled=True)),
    ('pure bf16, compiled, flex', lambda: pure_bf16(load_msclap_2023(weights, device='cuda', batch_size=batch, precision='fp32', compiled=True, window_attention='flex'))),
]:
    t0 = time.perf_counter(); encoder = make(); encoder.runtime.embed_windows(tests[0]); compile_s = time.perf_counter() - t0
    cosine = min(float(np.sum(encoder.runtime.embed_windows(t) * e, axis=1).min()) for t, e in zip(tests, expected))
    rate = windows_per_second(encoder, batch, 12)
    print(f'{label}, batch {batch}: {rate:.0f} windows/s, cosine to fp32 min {cosine:.6f}, compile {compile_s:.0f} s', flush=True)
    del encoder; torch.cuda.empty_cache()
