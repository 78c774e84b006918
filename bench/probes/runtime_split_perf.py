"""Run from the repository root (it reads tests/checkpoints.py); see runtime_split_compare.py
for the two versions. GPU throughput of one version of encoders (argv[1]: the folder holding the package): wall
and process CPU time of batches through embed_windows (graphs and not), embed_audio and
BatchEmbedder, msclap-2023's released architecture (random weights), bf16, batch 256."""
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [sys.argv[1], "tests"]
import numpy as np  # noqa: E402
import torch  # noqa: E402
from checkpoints import write_tiny_msclap_checkpoint  # noqa: E402

from encoders.batches import BatchEmbedder  # noqa: E402
from encoders.msclap import load_msclap_2023  # noqa: E402

BATCH = 256


def timed(run, rounds):
    run()
    torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        run()
    torch.cuda.synchronize()
    return (time.perf_counter() - wall) / rounds, (time.process_time() - cpu) / rounds


def windows_fn(encoder):
    return encoder.runtime.embed_windows if hasattr(encoder, "runtime") else encoder.embed_windows


def packed(encoder, audio):
    def run():
        with BatchEmbedder(encoder) as batches:
            for clip in audio:
                batches.add(clip)
                list(batches.ready())
            list(batches.finish())
    return run


results = {"version": sys.argv[1], "device": torch.cuda.get_device_name()}
with tempfile.TemporaryDirectory() as folder:
    weights = write_tiny_msclap_checkpoint(Path(folder), full=True)
    for label, options in [("bf16 graphs", {}), ("bf16 no graphs", {"cuda_graphs": False})]:
        encoder = load_msclap_2023(weights, device="cuda", batch_size=BATCH, precision="bf16", **options)
        inputs = 0.1 * torch.randn(BATCH, encoder.config.window_samples, device="cuda")
        embed = windows_fn(encoder)
        wall, cpu = timed(lambda: embed(inputs), 20)
        results[f"{label}: embed_windows"] = {"windows_per_s": BATCH / wall, "cpu_ms_per_batch": 1000 * cpu}
        rng = np.random.default_rng(0)
        audio = [0.1 * rng.standard_normal(int(44100 * s)).astype(np.float32) for s in rng.uniform(0.3, 7.0, 4 * BATCH)]
        wall, cpu = timed(lambda: encoder.embed_audio(audio), 3)
        results[f"{label}: embed_audio"] = {"windows_per_s": len(audio) / wall, "cpu_ms_per_batch": 1000 * cpu * BATCH / len(audio)}
        wall, cpu = timed(packed(encoder, audio), 3)
        results[f"{label}: BatchEmbedder"] = {"windows_per_s": len(audio) / wall, "cpu_ms_per_batch": 1000 * cpu * BATCH / len(audio)}
        del encoder
        torch.cuda.empty_cache()
print(json.dumps(results, indent=1), flush=True)
