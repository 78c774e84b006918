"""Indexing throughput: clapdex against the official msclap 1.3.4 wrapper, same files, same run.

Random weights in the official layout at the real sizes (tests/checkpoints.py), written
where the benchmark runs. Stages, each saved to --out as soon as it ends:

  rates     the device's measured matrix-multiply rates (bf16, fp32) and the audio
            tower's FLOPs per window (torch.utils.flop_counter), so windows/s can be set
            against what the arithmetic allows
  decode    decode_windows without a model, on one core and on --workers (and each
            --workers-sweep count), against soundfile.read on as many processes
  encoder   clapdex's encoder alone on windows already on the device: fp32 and bf16 at
            --batch, windows/s and the fraction of the matmul rate it reaches
  wrapper   CLAPWrapper.get_audio_embeddings on the files (its own file reading swapped for
            soundfile, as the image's torchaudio has no torchcodec backend)
  clapdex   files -> decode_windows workers -> BatchEmbedder -> vectors, the indexer's
            path, end to end, files/s and windows/s: one pass over the files and a steady
            state (the list several times over), both with the decoder workers that a
            warm-up pass started (they serve every later call, as in a long indexing run),
            and the warm-up itself, starting them included; vectors of the files of one
            window compared with the wrapper's (cosine)
  official  the official audio encoder alone, on the same card in the same run: fp32, bf16
            and bf16 through torch.compile
  compiled  clapdex's encoder through torch.compile, per --compiled mode:batch[:attention]
            variant, window attention flex or eager (last: compiling takes a while)
  profile   the CUDA kernels of one batch, eager bf16 and compiled, by device time
  devices   packed batches (BatchEmbedder) through one encoder over each --device-sets
            entry: windows/s on one GPU against several (not in the default stages)

    python bench/indexing.py --audio /work/shared/data/esc10 --out indexing.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from checkpoints import FULL, write_tiny_msclap_checkpoint  # noqa: E402

from encoders.msclap import load_msclap_2023  # noqa: E402
from encoders.batches import BatchEmbedder  # noqa: E402
from encoders.decoding import decode_windows, default_workers  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of one size x size x size product, median of 10 after 3 warm-ups, random data."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    times = []
    for round_ in range(13):
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        if round_ >= 3:
            times.append(time.perf_counter() - started)
    return 2 * size**3 / float(np.median(times))


def flops_per_window(encoder) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    window = torch.randn(2, encoder.config.window_samples, device=encoder.device)
    log_mel = encoder.model.log_mel(window)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        encoder.model.audio_features(log_mel)
    return counter.get_total_flops() / 2


def windows_per_second(encoder, batch: int, repeats: int) -> float:
    generator = torch.Generator(device=encoder.device).manual_seed(0)
    # Several input sets, so no timing reuses one batch from cache.
    inputs = [0.1 * torch.randn(batch, encoder.config.window_samples, device=encoder.device, generator=generator)
              for _ in range(3)]
    for warm in inputs:
        encoder.runtime.embed_windows(warm)
    synchronize(encoder.device)
    started = time.perf_counter()
    for round_ in range(repeats):
        encoder.runtime.embed_windows(inputs[round_ % len(inputs)])
    synchronize(encoder.device)
    return batch * repeats / (time.perf_counter() - started)


def build_wrapper(weights: Path, device: torch.device):
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "tests" / "parity" / "make_reference.py")
    make_reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_reference)
    official = make_reference.build_official(weights, FULL)
    if device.type == "cuda":
        official.clap.cuda()
        official.use_cuda = True
    import soundfile

    def read_audio_with_soundfile(self, audio_path, resample=True):
        # The wrapper's read_audio with torchaudio.load swapped for soundfile: (channels, time).
        import torchaudio.transforms as T

        samples, sample_rate = soundfile.read(audio_path, dtype="float32", always_2d=True)
        audio_time_series = torch.from_numpy(samples.T.copy())
        resample_rate = self.args.sampling_rate
        if resample and resample_rate != sample_rate:
            audio_time_series = T.Resample(sample_rate, resample_rate)(audio_time_series)
        return audio_time_series, resample_rate

    type(official).read_audio = read_audio_with_soundfile
    return official


def index_end_to_end(encoder, paths: list[str], workers: int, batch: int) -> tuple[np.ndarray, list[int], float]:
    """Vectors of every window in file order, windows per file, seconds from the first file opened.

    The indexer's own path: decode_windows' pieces packed by a BatchEmbedder.
    """
    started, main_cpu = time.perf_counter(), time.thread_time()
    placed, vectors = [], []  # (file, window) of each window added; vectors in that order
    per_file = [0] * len(paths)
    with BatchEmbedder(encoder, batch) as batches:
        for piece in decode_windows(paths, encoder.sample_rate, encoder.window_seconds, workers=workers):
            if piece.error:
                raise RuntimeError(f"{paths[piece.number]}: {piece.error}")
            for _ in piece.samples:
                placed.append((piece.number, per_file[piece.number]))
                per_file[piece.number] += 1
            if piece.samples:
                batches.add_windows(piece.span, piece.offsets, [len(window) for window in piece.samples])
            vectors += batches.ready()
        vectors += batches.finish()
    elapsed = time.perf_counter() - started
    print(f"  end to end, {workers} workers: main thread {1000 * (time.thread_time() - main_cpu) / len(paths):.3f} "
          f"ms CPU a file, {len(paths) / elapsed:.0f} files/s", flush=True)
    order = sorted(range(len(placed)), key=placed.__getitem__)  # files arrive interleaved
    return np.stack(vectors)[order], per_file, elapsed


def decode_only(paths: list[str], sample_rate: int, window_seconds: float, workers: int, batch: int) -> dict:
    """files -> decode_windows -> windows copied into one batch-sized host buffer, no model:
    the CPU side of the indexer alone, and the main thread's share of it (its workers started
    by a first call, as the end-to-end stage's warm-up starts them)."""
    if workers:
        for _ in decode_windows(paths[: 2 * workers], sample_rate, window_seconds, workers=workers):
            pass
    window = round(sample_rate * window_seconds)
    buffer, used, files = np.empty(batch * window, np.float32), 0, 0
    started, main_cpu = time.perf_counter(), time.thread_time()
    for piece in decode_windows(paths, sample_rate, window_seconds, workers=workers):
        for samples in piece.samples:
            used = 0 if used + len(samples) > len(buffer) else used
            buffer[used : used + len(samples)] = samples
            used += len(samples)
        files += piece.done
    elapsed = time.perf_counter() - started
    return {"workers": workers, "files": files, "files_per_s": files / elapsed,
            "main_thread_cpu_ms_per_file": 1000 * (time.thread_time() - main_cpu) / files}


def read_with_soundfile(paths: list[str]) -> int:
    import soundfile

    for path in paths:
        soundfile.read(path, dtype="float32", always_2d=True)
    return len(paths)


def soundfile_ms_per_file(paths: list[str]) -> float:
    """One core reading whole files with soundfile.read, as the wrapper's reader here does."""
    started = time.perf_counter()
    read_with_soundfile(paths)
    return 1000 * (time.perf_counter() - started) / len(paths)


def soundfile_files_per_second(paths: list[str], workers: int) -> float:
    """``workers`` processes reading whole files with soundfile.read and nothing else: what
    libsndfile alone delivers on these cores, against which decode_windows' rate is set."""
    import multiprocessing

    shares = [paths[first::workers * 4] for first in range(workers * 4)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        started = time.perf_counter()
        files = sum(pool.map(read_with_soundfile, shares))
        return files / (time.perf_counter() - started)


def packed_windows_per_second(encoder, batches: int) -> float:
    """Windows of a whole 7 s through BatchEmbedder (its default batch: a full one per device),
    after a warm-up that captures the graphs: what several devices add."""
    window = encoder.config.window_samples
    clip = (0.1 * np.random.default_rng(0).standard_normal(window)).astype(np.float32)
    with BatchEmbedder(encoder) as packer:
        count = packer.batch_size * batches
        for _ in range(2 * packer.batch_size):
            packer.add(clip)
        list(packer.finish())
        synchronize(encoder.device)
        started = time.perf_counter()
        for _ in range(count):
            packer.add(clip)
            list(packer.ready())
        list(packer.finish())
    return count / (time.perf_counter() - started)


def official_windows_per_second(official, batch: int, repeats: int, precision: str, compiled: bool) -> dict:
    """The official audio encoder (torchlibrosa front end, HTSAT, projection) on windows already
    on the device, timed as windows_per_second times ours."""
    device = next(official.clap.parameters()).device
    encode = official.clap.audio_encoder
    started = time.perf_counter()
    if compiled:
        encode = torch.compile(encode)
    generator = torch.Generator(device=device).manual_seed(0)
    window = round(official.args.sampling_rate * official.args.duration)
    inputs = [0.1 * torch.randn(batch, window, device=device, generator=generator) for _ in range(3)]
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]

    def run(windows):
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return encode(windows)[0].float().cpu()

    for warm in inputs:
        run(warm)
    synchronize(device)
    ready_s = time.perf_counter() - started
    started = time.perf_counter()
    for round_ in range(repeats):
        run(inputs[round_ % len(inputs)])
    synchronize(device)
    return {"windows_per_s": batch * repeats / (time.perf_counter() - started), "warm_up_s": ready_s}


def profile_encoder(encoder, batch: int, rows: int = 25) -> str:
    """The CUDA kernels of one batch, by total device time: where the encoder's time goes."""
    from torch.profiler import ProfilerActivity, profile

    windows = 0.1 * torch.randn(batch, encoder.config.window_samples, device=encoder.device)
    encoder.runtime.embed_windows(windows)
    with profile(activities=[ProfilerActivity.CUDA]) as profiler:
        encoder.runtime.embed_windows(windows)
    return profiler.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True, help="folder of audio files (searched recursively)")
    parser.add_argument("--limit", type=int, help="first N files only")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=12, help="batches timed per encoder setting")
    parser.add_argument("--list-repeats", type=int, default=5,
                        help="the steady-state pass indexes the file list this many times over")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--workers-sweep", type=int, nargs="+", default=[],
                        help="also decode alone, and index end to end in bf16, with these worker counts")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--compiled", nargs="+", default=["default:256", "default:512"], metavar="MODE:BATCH[:ATTENTION]",
                        help="torch.compile mode, batch size and window attention (flex or eager; the encoder's "
                             "default if left out) of each compiled variant of clapdex's encoder (each compiles "
                             "anew), e.g. max-autotune-no-cudagraphs:256 default:256:eager")
    parser.add_argument("--device-sets", nargs="+", default=[],
                        help="devices stage: one encoder over each comma-separated set, e.g. cuda:0 cuda:0,cuda:1")
    parser.add_argument("--stages", nargs="+",
                        default=["rates", "decode", "encoder", "wrapper", "clapdex", "official", "compiled", "profile"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    device = torch.device(args.device)
    paths = sorted(str(p) for p in args.audio.rglob("*") if p.suffix.lower() in {".ogg", ".wav", ".flac", ".mp3"})
    paths = paths[: args.limit] if args.limit else paths
    for path in paths:  # every reader below starts from the page cache
        Path(path).read_bytes()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.node(), "cpus": os.cpu_count(), "workers": args.workers,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "files": len(paths), "batch": args.batch,
        "command": " ".join(["python"] + sys.argv),
    }

    def save(stage: str, values) -> None:
        results[stage] = values
        args.out.write_text(json.dumps(results, indent=1))
        print(stage, values if isinstance(values, str) else json.dumps(values), flush=True)

    with tempfile.TemporaryDirectory(prefix="clapdex-weights-") as folder:
        weights = write_tiny_msclap_checkpoint(Path(folder), full=True)
        encoders = {precision: load_msclap_2023(weights, device=device, batch_size=args.batch, precision=precision)
                    for precision in ("fp32", "bf16")}
        # The same bf16 model launching its kernels one by one, as before CUDA graphs.
        no_graphs = load_msclap_2023(weights, device=device, batch_size=args.batch, precision="bf16", cuda_graphs=False)
        flops = flops_per_window(encoders["fp32"])
        if "rates" in args.stages:
            save("rates", {"flops_per_window": flops,
                           "matmul_flops_bf16": matmul_rate(device, torch.bfloat16, args.matmul_size),
                           "matmul_flops_fp32": matmul_rate(device, torch.float32, args.matmul_size)})
        if "encoder" in args.stages:
            encoder_rates = {}
            for precision, encoder in [*encoders.items(), ("bf16 without CUDA graphs", no_graphs)]:
                rate = windows_per_second(encoder, args.batch, args.repeats)
                encoder_rates[precision] = {"windows_per_s": rate, "flops_per_s": rate * flops}
            save("encoder", encoder_rates)

        if "decode" in args.stages:
            sample_rate, window_seconds = encoders["bf16"].sample_rate, encoders["bf16"].window_seconds
            save("decode", {
                "one_core_ms_per_file": {"clapdex": decode_only(paths[:100], sample_rate, window_seconds, 0, args.batch),
                                         "soundfile.read": soundfile_ms_per_file(paths[:100])},
                "workers": [decode_only(paths * args.list_repeats, sample_rate, window_seconds, workers, args.batch)
                            for workers in sorted({*args.workers_sweep, args.workers})],
                "soundfile.read, files/s": {workers: soundfile_files_per_second(paths * args.list_repeats, workers)
                                            for workers in sorted({*args.workers_sweep, args.workers})}})

        if "devices" in args.stages:
            save("devices", {devices: packed_windows_per_second(
                load_msclap_2023(weights, device=devices, batch_size=args.batch, precision="bf16"), args.repeats)
                for devices in args.device_sets})

        official = build_wrapper(weights, device) if {"wrapper", "official"} & set(args.stages) else None
        wrapper_vectors = None
        if "wrapper" in args.stages:
            official.get_audio_embeddings(paths[:8], resample=True)  # warm-up: kernels, allocator
            synchronize(device)
            started = time.perf_counter()
            wrapper_vectors = official.get_audio_embeddings(paths, resample=True).float().cpu().numpy()
            synchronize(device)
            elapsed = time.perf_counter() - started
            save("wrapper", {"files_per_s": len(paths) / elapsed, "windows_per_s": len(paths) / elapsed,
                             "seconds": elapsed})

        if "clapdex" in args.stages:
            clapdex = {}
            for precision, encoder in [*encoders.items(), ("bf16 without CUDA graphs", no_graphs)]:
                _, warm_per_file, warm = index_end_to_end(encoder, paths[: args.batch], args.workers, args.batch)
                vectors, per_file, once = index_end_to_end(encoder, paths, args.workers, args.batch)
                # The list over and over: a library's steady state.
                _, steady_per_file, steady = index_end_to_end(encoder, paths * args.list_repeats, args.workers, args.batch)
                row = {"warm_up_with_workers_start": {"files": len(warm_per_file), "seconds": warm},
                       "one_pass": {"files": len(paths), "seconds": once, "files_per_s": len(paths) / once,
                                    "windows_per_s": sum(per_file) / once},
                       "steady": {"files": len(steady_per_file), "seconds": steady,
                                  "files_per_s": len(steady_per_file) / steady,
                                  "windows_per_s": sum(steady_per_file) / steady}}
                if wrapper_vectors is not None:
                    # Files of one window (at most 7 s): the wrapper crops longer ones at random.
                    first = np.cumsum([0] + per_file[:-1])
                    single = np.array(per_file) == 1
                    cosine = np.sum(unit(vectors[first[single]]) * unit(wrapper_vectors[single]), axis=1)
                    row |= {"compared_files": int(single.sum()), "cosine_to_wrapper_min": float(cosine.min()),
                            "cosine_to_wrapper_mean": float(cosine.mean()),
                            "speedup_files_per_s_steady": row["steady"]["files_per_s"] / results["wrapper"]["files_per_s"],
                            "speedup_files_per_s_one_pass": row["one_pass"]["files_per_s"] / results["wrapper"]["files_per_s"]}
                clapdex[precision] = row
            for workers in args.workers_sweep:
                _, steady_per_file, steady = index_end_to_end(encoders["bf16"], paths * args.list_repeats, workers, args.batch)
                clapdex[f"bf16, {workers} workers"] = {"files": len(steady_per_file), "files_per_s": len(steady_per_file) / steady}
            save("clapdex", clapdex)

        if "official" in args.stages:
            # The official encoder in this run, on this card: what "2x the compiled official" is against.
            save("official", {f"{precision}{' compiled' if compiled else ''}": official_windows_per_second(
                official, args.batch, args.repeats, precision, compiled)
                for precision, compiled in (("fp32", False), ("bf16", False), ("bf16", True))})
        if official is not None:
            del official
            torch.cuda.empty_cache() if device.type == "cuda" else None

        compiled_rates = {}
        if "compiled" in args.stages:
            for mode, batch, attention in [(variant.split(":") + [None])[:3] for variant in args.compiled]:
                started, batch = time.perf_counter(), int(batch)
                compiled = load_msclap_2023(weights, device=device, batch_size=batch, precision="bf16",
                                            compiled=True if mode == "default" else mode, window_attention=attention)
                probe = 0.1 * torch.randn(4, compiled.config.window_samples, device=device)
                reference = encoders["bf16"].runtime.embed_windows(probe)
                first = compiled.runtime.embed_windows(torch.cat([probe, probe.new_zeros(batch - 4, probe.shape[1])]))[:4]
                compile_s = time.perf_counter() - started
                rate = windows_per_second(compiled, batch, args.repeats)
                compiled_rates[f"{mode} batch {batch} {compiled.window_attention} attention"] = {
                    "windows_per_s": rate, "flops_per_s": rate * flops, "compile_s": compile_s,
                    "cosine_to_eager_bf16_min": float(np.sum(unit(first) * unit(reference), axis=1).min())}
                save("compiled", compiled_rates)
                if "profile" in args.stages and (mode, batch) == ("default", args.batch):
                    save(f"profile_compiled {compiled.window_attention} attention", profile_encoder(compiled, batch))
                del compiled  # and its captured graph's memory, before the next variant
                torch.cuda.empty_cache()
        if "profile" in args.stages:
            save("profile_eager_bf16", profile_encoder(no_graphs, args.batch))


if __name__ == "__main__":
    main()
