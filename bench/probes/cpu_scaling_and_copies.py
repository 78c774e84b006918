"""Probe (H100 machine, 2026-11-26): how far 16 vCPUs scale a pure Python loop, and what
copying one 7-s window to the GPU costs from torch's pinned memory, from page-locked shared
memory (cudaHostRegister) and from pageable memory, against a host memcpy.

    python3 bench/probes/cpu_scaling_and_copies.py      # needs torch with CUDA
"""
import time, os, mmap, multiprocessing as mp, numpy as np, torch
def spin(n):
    x = 0
    for i in range(n): x += i * i
    return x
def cpu_scaling():
    n = 3_000_000
    t0 = time.perf_counter(); spin(n); one = time.perf_counter() - t0
    for procs in (8, 14, 16):
        with mp.get_context('fork').Pool(procs) as pool:
            t0 = time.perf_counter(); pool.map(spin, [n] * procs * 3); wall = time.perf_counter() - t0
        print(f'python loop: {procs} procs {procs * 3 * one / wall:.1f}x one core', flush=True)
def copies():
    dev = torch.device('cuda'); torch.ones(1, device=dev)
    size = 308700
    dst = torch.empty(64 * size, device=dev)
    stream = torch.cuda.Stream()
    pinned = torch.empty(64 * size, pin_memory=True)
    shared = np.frombuffer(mmap.mmap(-1, 64 * size * 4), np.float32); shared[:] = 1
    cudart = torch.cuda.cudart()
    torch.cuda.check_error(cudart.cudaHostRegister(shared.ctypes.data, shared.nbytes, 0))
    pageable = np.ones(64 * size, np.float32)
    host_dst = torch.empty(64 * size, pin_memory=True).numpy()
    for name, src in [('torch pinned', pinned), ('registered shared', torch.from_numpy(shared)), ('pageable', torch.from_numpy(pageable))]:
        for mode in ('sync each', 'async, one sync'):
            for rep in range(2):
                t0 = time.perf_counter(); c0 = time.thread_time()
                for i in range(64):
                    with torch.cuda.stream(stream):
                        dst[i * size:(i + 1) * size].copy_(src[i * size:(i + 1) * size], non_blocking=True)
                    if mode == 'sync each': stream.synchronize()
                stream.synchronize()
                w = time.perf_counter() - t0; c = time.thread_time() - c0
            print(f'H2D {name:18s} {mode:15s}: {1e6 * w / 64:.0f} us wall, {1e6 * c / 64:.0f} us CPU a window, {64 * size * 4 / w / 1e9:.1f} GB/s', flush=True)
    for name, src in [('shared', shared), ('pageable', pageable)]:
        for rep in range(2):
            t0 = time.perf_counter()
            for i in range(64): host_dst[i * size:(i + 1) * size] = src[i * size:(i + 1) * size]
            w = time.perf_counter() - t0
        print(f'memcpy {name} -> pinned: {1e6 * w / 64:.0f} us a window', flush=True)
if __name__ == '__main__':
    os.system('lscpu | egrep "Model name|MHz|L3|NUMA"; cat /proc/cpuinfo | grep -m1 flags | tr " " "\\n" | egrep -c "avx512|avx2"')
    cpu_scaling()
    copies()
