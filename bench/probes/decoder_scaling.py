"""Probe (H100 machine, 2026-11-26): libsndfile against miniaudio's stb_vorbis on Ogg clips,
one core and 14 or 16 processes, from a memory map or bytes, with glibc's heap kept or not.

    python3 bench/probes/decoder_scaling.py <folder of .ogg files>   # needs soundfile, miniaudio
"""
import ctypes, glob, mmap, sys, time, multiprocessing as mp
import numpy as np, soundfile as sf
from miniaudio import ffi, lib
files = sorted(glob.glob(sys.argv[1] + '/**/*.ogg', recursive=True))
BUF = np.empty((1 << 19,), np.float32)
def ma_decode(data, size, fresh):
    dec = ffi.new('ma_decoder *')
    cfg = lib.ma_decoder_config_init(lib.ma_format_f32, 0, 0); cfg.encodingFormat = lib.ma_encoding_format_vorbis
    assert lib.ma_decoder_init_memory(data, size, ffi.addressof(cfg), dec) == 0
    n = ffi.new('ma_uint64 *'); total = 0
    while True:
        out = np.empty(1 << 18, np.float32) if fresh else BUF[total:]
        r = lib.ma_decoder_read_pcm_frames(dec, ffi.from_buffer(out), 1 << 18, n); total += n[0]
        if r or not n[0]: break
    lib.ma_decoder_uninit(dec)
def ma_mmap(path, fresh=True):
    with open(path, 'rb') as fh: mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    data = ffi.from_buffer(mm); ma_decode(data, len(mm), fresh); del data; mm.close()
def ma_bytes(path, fresh=True):
    with open(path, 'rb') as fh: b = fh.read()
    ma_decode(b, len(b), fresh)
VARIANTS = {
    'soundfile.read': lambda p: sf.read(p, dtype='float32'),
    'ma mmap, new out': ma_mmap,
    'ma bytes, new out': ma_bytes,
    'ma bytes, reused out': lambda p: ma_bytes(p, False),
}
def keep_heap():
    libc = ctypes.CDLL('libc.so.6')
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
def work(args):
    name, chunk, heap = args
    if heap: keep_heap()
    fn = VARIANTS[name]
    c0 = time.process_time()
    for p in chunk: fn(p)
    return len(chunk), time.process_time() - c0
if __name__ == '__main__':
    one = {}
    for name, fn in VARIANTS.items():
        for p in files[:50]: fn(p)
        t0 = time.process_time()
        for p in files: fn(p)
        one[name] = (time.process_time() - t0) / len(files)
        print(f'{name:22s} one core {1e3 * one[name]:.2f} ms/file', flush=True)
    reps = files * 4
    for heap in (False, True):
        for procs in (14, 16):
            for name in VARIANTS:
                chunks = [(name, reps[i::procs * 4], heap) for i in range(procs * 4)]
                with mp.get_context('fork').Pool(procs) as pool:
                    pool.map(work, [(name, files[:procs], heap)] * procs)
                    t0 = time.perf_counter(); out = pool.map(work, chunks); wall = time.perf_counter() - t0
                n = sum(o[0] for o in out); cpu = sum(o[1] for o in out)
                print(f'{"heap kept " if heap else ""}{procs} procs {name:22s} {n / wall:6.0f} files/s = {n / wall * one[name]:.1f} cores of one; '
                      f'CPU {1e3 * cpu / n:.2f} ms/file', flush=True)
