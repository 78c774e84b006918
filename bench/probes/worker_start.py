"""Probe (H100 machine, 2026-11-26, written against commit c8e537f, when each call forked its
workers): what starting decoder workers costs from a fresh process and from one that holds
CUDA and a model; with workers kept between calls (02c515f on) only the first call pays it.

    CLAPDEX_SHARED=<shared> PYTHONPATH=.:tests python3 bench/probes/worker_start.py <folder of .ogg files>
"""
import glob, os, sys, tempfile, time
from pathlib import Path
import numpy as np
from encoders.decoding import decode_windows
files = sorted(glob.glob(sys.argv[1] + '/**/*.ogg', recursive=True))
def fork_ms():
    t0 = time.perf_counter()
    for _ in range(10):
        pid = os.fork()
        if pid == 0: os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) * 100
def run(label, paths):
    t0 = time.perf_counter(); first = None; n = 0
    for piece in decode_windows(paths, 44100, 7.0, workers=14):
        if first is None: first = time.perf_counter() - t0
        n += piece.done
    wall = time.perf_counter() - t0
    print(f'{label}: fork {fork_ms():.1f} ms; first piece after {1e3 * first:.0f} ms; {n} files in {wall:.2f} s = {n / wall:.0f} files/s', flush=True)
run('fresh process', files * 5)
run('fresh process', files * 5)
import torch
sys.path.insert(0, 'tests')
from checkpoints import write_tiny_msclap_checkpoint
from encoders.msclap import load_msclap_2023
from encoders.batches import BatchEmbedder
weights = write_tiny_msclap_checkpoint(Path(tempfile.mkdtemp()), full=True)
encoder = load_msclap_2023(weights, device='cuda', batch_size=256, precision='bf16')
encoder.embed_audio([np.zeros(308700, np.float32)] * 256)
batches = BatchEmbedder(encoder)
print('cuda memory', torch.cuda.memory_allocated() >> 20, 'MiB; rss', int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20, 'MiB')
run('with CUDA and a model', files * 5)
run('with CUDA and a model', files * 5)
run('with CUDA and a model, 1 pass', files)
