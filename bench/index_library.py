"""`clapdex index` itself, as a user runs it: scan, decode, embed and store a library made of
--copies copies of the files under --audio (or, with --long-files, of that many WAV files of
--long-seconds each, the clips joined end to end), then the same command again with nothing
changed.

Random MS-CLAP 2023 weights at the real sizes (tests/checkpoints.py), loaded before the clock
starts. The catalog is SQLite and the store FAISS, in a fresh home. Copies have the same bytes
under other names; their originals stay, so every copy is a new file to embed.

    python bench/index_library.py --audio /work/shared/data/esc10 --copies 10 --out index_library.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from checkpoints import write_tiny_msclap_checkpoint  # noqa: E402

from encoders.msclap import load_msclap_2023  # noqa: E402
from indexer.pipeline import index_paths  # noqa: E402
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
    parser.add_argument("--long-files", type=int, default=0,
                        help="instead of copies, this many 16-bit WAV files of the clips joined (recordings)")
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="the audio tower through torch.compile (timed apart)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clapdex-index-bench-") as folder:
        folder = Path(folder)
        library = folder / "library"
        if args.long_files:
            write_recordings(sorted(p for p in args.audio.rglob("*") if p.is_file()), library, args.long_files,
                             args.long_seconds)
        else:
            for copy in range(args.copies):
                shutil.copytree(args.audio, library / f"copy{copy}")
        files = sum(1 for path in library.rglob("*") if path.is_file())
        for path in library.rglob("*"):  # every run below starts from the page cache
            if path.is_file():
                path.read_bytes()
        encoder = load_msclap_2023(write_tiny_msclap_checkpoint(folder / "weights", full=True), device=args.device,
                                   compiled=args.compile)
        warm_up_started = time.perf_counter()  # kernels, the CUDA graph and any compiling: once per process
        encoder.runtime.embed_windows(torch.zeros(encoder.batch_size, encoder.config.window_samples))
        warm_up_s = time.perf_counter() - warm_up_started
        settings = Settings(home=folder / "home", device=args.device)
        settings.home.mkdir()

        stamps: dict[str, float] = {}

        def progress(path: str, outcome: str) -> None:
            stamps[outcome] = time.perf_counter()  # the last file of each outcome

        started = time.perf_counter()
        with Library(settings, create=True, encoder=encoder) as opened:
            first = index_paths(opened, [library], progress=progress)
        ended = time.perf_counter()
        again_started = time.perf_counter()
        with Library(settings, create=True, encoder=encoder) as opened:
            again = index_paths(opened, [library])
        again_s = time.perf_counter() - again_started
        with Catalog(settings.catalog_url) as catalog:
            windows = catalog.counts()["windows"]

    scan_s = stamps["pending"] - started
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "command": " ".join(["python"] + sys.argv), "files": files,
        "warm_up_seconds": warm_up_s,
        "first_run": {"report": first.summary(), "seconds": ended - started, "files_per_s": files / (ended - started),
                      "scan_seconds": scan_s, "scan_files_per_s": files / scan_s,
                      "embed_and_store_seconds": ended - stamps["pending"],
                      "embed_and_store_files_per_s": files / (ended - stamps["pending"]),
                      "windows": windows, "embed_and_store_windows_per_s": windows / (ended - stamps["pending"])},
        "unchanged_run": {"report": again.summary(), "seconds": again_s, "files_per_s": files / again_s},
    }
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
