"""`clapdex index` itself, as a user runs it: scan, decode, embed and store a library made of
--copies copies of the files under --audio (or, with --long-files, of that many WAV files of
--long-seconds each, the clips joined end to end), then the same command again with nothing
changed.

Random MS-CLAP 2023 weights at the real sizes (tests/checkpoints.py). As the index verb does,
the scan's readers and the decoders start before the model loads; the model is loaded and
warmed up before the clock starts. The catalog is SQLite and the store FAISS, in a fresh home.
Copies have the same bytes under other names (with --distinct, each copy's tags say which copy
it is, so every file has a content of its own, as in a real library, and the scan has no
same-content files to rule out as moved); their originals stay, so every copy is a new file to
embed. The run reports the CPU time of the worker processes (decoders and the scan's readers)
beside the main thread's. --set MODULE.NAME=VALUE changes a module's constant for the run, to
try a setting without editing the code.

With --wrapper, the official msclap 1.3.4 wrapper (bench/indexing.py's, its file reading
swapped for soundfile) embeds the files under --audio in the same call, for the ratio. With
--command, the `clapdex index` command is also run whole in a fresh home (a process of its
own: start-up, model load and warm-up included).

    python bench/index_library.py --audio /work/shared/data/esc10 --copies 10 --wrapper --out index_library.json
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import json
import multiprocessing
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from checkpoints import write_tiny_msclap_checkpoint  # noqa: E402

from encoders.audio import AUDIO_EXTENSIONS  # noqa: E402
from encoders.msclap import load_msclap_2023  # noqa: E402
from indexer.pipeline import index_paths, start_index_workers  # noqa: E402
from search.catalog import Catalog  # noqa: E402
from search.config import Settings  # noqa: E402
from search.library import Library  # noqa: E402


def write_recordings(clips: list[Path], library: Path, count: int, seconds: float) -> None:
    """``count`` WAV files of ``seconds`` each, every one the clips joined from its own start."""
    audio = [soundfile.read(clip, dtype="float32", always_2d=True) for clip in clips]
    rate = audio[0][1]
    samples = np.concatenate([data.mean(axis=1) for data, clip_rate in audio if clip_rate == rate])
    length = round(seconds * rate)
    library.mkdir(parents=True)
    for number in range(count):
        start = (number * 7919 * rate) % len(samples)
        recording = np.take(samples, np.arange(start, start + length), mode="wrap")
        soundfile.write(library / f"recording{number:05d}.wav", recording, rate, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--distinct", action="store_true", help="tag each copy, so no two files have one content")
    parser.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                        help="a module constant for this run, e.g. encoders.decoding.FILES_AHEAD=4")
    parser.add_argument("--long-files", type=int, default=0,
                        help="instead of copies, this many 16-bit WAV files of the clips joined (recordings)")
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="the audio tower through torch.compile (timed apart)")
    parser.add_argument("--wrapper", action="store_true", help="also time the official wrapper on the --audio files")
    parser.add_argument("--command", action="store_true", help="also time the whole `clapdex index` command")
    parser.add_argument("--profile", type=Path, help="cProfile the first run's main thread into this text file")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny random model, not the real sizes: what the run costs besides the model (a CPU)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for setting in args.set:
        name, _, value = setting.partition("=")
        module, _, constant = name.rpartition(".")
        setattr(importlib.import_module(module), constant, type(getattr(importlib.import_module(module), constant))(value))

    with tempfile.TemporaryDirectory(prefix="clapdex-index-bench-") as folder:
        folder = Path(folder)
        library = folder / "library"
        if args.long_files:
            write_recordings(sorted(p for p in args.audio.rglob("*") if p.is_file()), library, args.long_files,
                             args.long_seconds)
        else:
            for copy in range(args.copies):
                shutil.copytree(args.audio, library / f"copy{copy}")
                if args.distinct:
                    tag_copies(library / f"copy{copy}", copy)
        files = sum(1 for path in library.rglob("*") if path.is_file())
        for path in library.rglob("*"):  # every run below starts from the page cache
            if path.is_file():
                path.read_bytes()
        workers_started = time.perf_counter()
        start_index_workers()  # as the index verb does: before the model is on the GPU
        workers_s = time.perf_counter() - workers_started
        checkpoint = write_tiny_msclap_checkpoint(folder / "weights", full=not args.tiny)
        encoder = load_msclap_2023(checkpoint, device=args.device,
                                   compiled=args.compile)
        warm_up_started = time.perf_counter()  # kernels, the CUDA graph and any compiling: once per process
        encoder.runtime.embed_windows(torch.zeros(encoder.batch_size, encoder.config.window_samples))
        warm_up_s = time.perf_counter() - warm_up_started
        settings = Settings(home=folder / "home", device=args.device)
        settings.home.mkdir()

        stamps: dict[str, float] = {}

        def progress(path: str, outcome: str) -> None:
            stamps[outcome] = time.perf_counter()  # the last file of each outcome

        profile = cProfile.Profile() if args.profile else None
        workers_cpu = workers_cpu_seconds()
        started, main_cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
        with Library(settings, create=True, encoder=encoder) as opened, profile or contextlib.nullcontext():
            first = index_paths(opened, [library], progress=progress)
        ended = time.perf_counter()
        main_cpu, process_cpu = time.thread_time() - main_cpu, time.process_time() - process_cpu
        workers_cpu = workers_cpu_seconds() - workers_cpu
        if profile is not None:
            with open(args.profile, "w") as out:
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(45)
        again_started = time.perf_counter()
        with Library(settings, create=True, encoder=encoder) as opened:
            again = index_paths(opened, [library])
        again_s = time.perf_counter() - again_started
        with Catalog(settings.catalog_url) as catalog:
            windows = catalog.counts()["windows"]
        command = whole_command(checkpoint, folder / "command-home", library, args.device) if args.command else None
        wrapper = None
        if args.wrapper:
            try:
                wrapper = time_wrapper(checkpoint, args.audio, args.device)
            except Exception as exc:  # its dependencies (librosa's numba) may be missing: keep the runs above
                traceback.print_exc()
                wrapper = {"error": f"{type(exc).__name__}: {exc}"}

    scan_s = stamps["pending"] - started
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "command": " ".join(["python"] + sys.argv), "files": files, "settings": args.set,
        "workers_start_seconds": workers_s, "warm_up_seconds": warm_up_s,
        "first_run": {"report": first.summary(), "seconds": ended - started, "files_per_s": files / (ended - started),
                      "windows": windows, "windows_per_s": windows / (ended - started),
                      # This process's CPU (its threads: the main one, the model's) beside the wall time.
                      "main_thread_cpu_seconds": main_cpu, "process_cpu_seconds": process_cpu,
                      "workers_cpu_seconds": workers_cpu, "cores": len(os.sched_getaffinity(0)),
                      # The scan overlaps embedding: when it had catalogued its last file.
                      "scan_seconds": scan_s, "scan_files_per_s": files / scan_s},
        "unchanged_run": {"report": again.summary(), "seconds": again_s, "files_per_s": files / again_s},
    }
    if command is not None:
        results["whole_command"] = command | {"files_per_s": files / command["seconds"]}
    if wrapper is not None:
        results["wrapper"] = wrapper
        if "files_per_s" in wrapper:
            results["first_run"]["vs_wrapper"] = results["first_run"]["files_per_s"] / wrapper["files_per_s"]
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def tag_copies(folder: Path, copy: int) -> None:
    import mutagen

    for path in folder.rglob("*"):
        if path.is_file():
            tagged = mutagen.File(path)
            tagged["comment"] = f"copy {copy}"
            tagged.save()


def workers_cpu_seconds() -> float:
    """User and system CPU time of this process's live children (the decoders and the readers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for child in multiprocessing.active_children():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def whole_command(weights: Path, home: Path, library: Path, device: str) -> dict:
    """`clapdex index` run whole, in a process and a home of its own, with the same weights."""
    command = [sys.executable, "-m", "clapdex", "--home", str(home), "--model", "msclap-2023",
               "--weights", str(weights), "--device", device, "index", str(library)]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if finished.returncode:
        raise RuntimeError(f"clapdex index failed ({finished.returncode}): {finished.stderr[-2000:]}")
    return {"seconds": seconds, "command": " ".join(command[1:]), "said": finished.stdout.strip()[-300:]}


def time_wrapper(weights: Path, audio: Path, device: str) -> dict:
    """The official wrapper over the clips under ``audio``, after an 8-file warm-up."""
    sys.path.insert(0, str(ROOT / "bench"))
    from indexing import build_wrapper, synchronize

    official = build_wrapper(weights, torch.device(device))
    paths = sorted(str(path) for path in audio.rglob("*") if path.suffix.lower() in AUDIO_EXTENSIONS)
    official.get_audio_embeddings(paths[:8], resample=True)
    synchronize(torch.device(device))
    started = time.perf_counter()
    official.get_audio_embeddings(paths, resample=True)
    synchronize(torch.device(device))
    seconds = time.perf_counter() - started
    return {"files": len(paths), "seconds": seconds, "files_per_s": len(paths) / seconds}


if __name__ == "__main__":
    main()
