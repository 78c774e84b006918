"""CPU a file of what an index run does to each new file outside the model, stage by stage, in
one process: the scan's reading (stat, content hash, header, tags) and the decoder's (open,
Ogg page check, decoding, windows, the piece laid into a slot, the message to the caller).
Then the same files through the indexer's own worker pools (``read_batches`` and
``decode_windows``), counting the workers' CPU, as a run spends it.

The library is --copies copies of the files under --audio, each tagged (as
``bench/index_library.py --distinct``), in a temporary folder; every file is read once first,
so all of it comes from the page cache. With --long-files, it is that many 60-s WAV recordings
instead (as ``bench/index_library.py --long-files`` writes them). With --root, another
checkout's code is measured (main's, say, beside a branch's, in one run).

    python bench/probes/decode_cost.py --audio /work/shared/data/esc10 --copies 5 --out cost.json
    python bench/probes/decode_cost.py --audio /work/shared/data/esc10 --copies 5 --root /tmp/main --pools-only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import pickle
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import mutagen
import numpy as np

# --root TREE measures another checkout's code (say main's, beside a branch's) with this script.
ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve() if "--root" in sys.argv else Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from encoders import audio as audio_module  # noqa: E402
from encoders.audio import AudioStream, stream_windows  # noqa: E402
from encoders.decoding import SLOT_SAMPLES, Piece, _joined, decode_windows, default_workers  # noqa: E402
from indexer.pipeline import _metadata_of  # noqa: E402
from indexer.scan import content_hash, read_batches  # noqa: E402

RATE, WINDOW, HOP = 44100, 7.0, 3.5  # MS-CLAP 2023's


def children_cpu(kernel_only: bool = False) -> float:
    """CPU seconds of this process's children so far (user and kernel, or kernel alone)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for child in multiprocessing.active_children():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()
            total += (0 if kernel_only else int(fields[11])) + int(fields[12])
    return total / ticks


def per_file_stages(paths: list[str]) -> dict[str, float]:
    """ms of this process's CPU a file for each stage, each stage over all the files in turn."""
    import soundfile

    slot = np.empty(SLOT_SAMPLES, np.float32)
    stages: dict[str, callable] = {
        "scan: stat": os.stat,
        "scan: content hash (blake2b, whole file)": content_hash,
        "scan: libsndfile's header (soundfile.info)": soundfile.info,
        "scan: mutagen.File": mutagen.File,
        "scan: read_metadata (header + tags + name)": _metadata_of,
        "scan: result pickled to the caller": lambda p: pickle.dumps(_metadata_of(p)),
        "decode: Ogg page CRC check": lambda p: audio_module._ogg_pages_intact(open(p, "rb").read()),
        "decode: open (AudioStream, incl. the CRC check)": lambda p: AudioStream(p, RATE).close(),
        "decode: open + decode (blocks)": lambda p: _decode(p),
        "decode: open + decode + windows + piece into a slot + message": lambda p: _pieces(p, slot),
    }
    return cpu_a_file(stages, paths)


def cpu_a_file(stages: dict[str, callable], paths: list[str]) -> dict[str, float]:
    """ms of this process's CPU a file for each stage, each stage over all the files in turn,
    after one file to warm it up."""
    out = {}
    for name, stage in stages.items():
        stage(paths[0])
        started = time.process_time()
        for path in paths:
            stage(path)
        out[name] = (time.process_time() - started) * 1000 / len(paths)
    return out


def _decode(path: str) -> None:
    with AudioStream(path, RATE) as stream:
        for _ in stream.blocks():
            pass


def _pieces(path: str, slot: np.ndarray) -> None:
    with AudioStream(path, RATE) as stream:
        windows = list(stream_windows(stream.blocks(), RATE, WINDOW, HOP))
        piece = Piece(0, [w.start for w in windows], [w.end for w in windows], [w.samples for w in windows],
                      True, stream.info(), None)
        piece = _joined(piece, RATE, out=slot)
        pickle.dumps((0, piece.number, piece.starts, piece.ends, piece.offsets, [len(s) for s in piece.samples],
                      len(piece.span), piece.done, piece.info, piece.error))


def alternatives(paths: list[str]) -> dict[str, float]:
    """ms of CPU a file for other decoders of the same files (decoding alone, mono float32)."""
    import soundfile

    candidates = {"libsndfile (soundfile.read)": lambda p: soundfile.read(p, dtype="float32")}
    try:
        import av

        def ffmpeg(path: str) -> None:
            with av.open(path) as container:
                for frame in container.decode(audio=0):
                    frame.to_ndarray()
        candidates["FFmpeg (PyAV), its native Vorbis decoder"] = ffmpeg
    except ImportError:
        pass
    return cpu_a_file(candidates, paths)


def decoders_cpu(paths: list[str], workers: int) -> dict[str, float]:
    """CPU ms a file of the indexer's decoder pool (workers and caller) over all the files."""
    main, before, kernel = time.process_time(), children_cpu(), children_cpu(kernel_only=True)
    started = time.perf_counter()
    windows = sum(len(piece.samples) for piece in decode_windows(paths, RATE, WINDOW, HOP, workers=workers))
    seconds = time.perf_counter() - started  # the workers' start included, as an index run's first call pays it
    return {"files_per_second": len(paths) / seconds, "workers": (children_cpu() - before) * 1000 / len(paths),
            "workers_kernel": (children_cpu(kernel_only=True) - kernel) * 1000 / len(paths),
            "caller": (time.process_time() - main) * 1000 / len(paths), "windows": windows}


def readers_cpu(paths: list[str], workers: int) -> float:
    """Workers' CPU ms a file of ``read_batches`` with a pool started ahead (as an index run does)."""
    from indexer.scan import start_readers

    start_readers(workers)
    before = children_cpu()
    batches = [(i, [(p, None) for p in paths[i : i + 64]]) for i in range(0, len(paths), 64)]
    for _ in read_batches(iter(batches), _metadata_of, workers=workers):
        pass
    return (children_cpu() - before) * 1000 / len(paths)


def write_recordings(clips: list[Path], folder: Path, count: int, seconds: float = 60.0) -> None:
    """As bench/index_library.py --long-files writes them: each the clips joined from its own start."""
    import soundfile

    audio = [soundfile.read(clip, dtype="float32", always_2d=True) for clip in clips]
    rate = audio[0][1]
    samples = np.concatenate([data.mean(axis=1) for data, clip_rate in audio if clip_rate == rate])
    folder.mkdir(parents=True)
    for number in range(count):
        start = (number * 7919 * rate) % len(samples)
        soundfile.write(folder / f"recording{number:05d}.wav", np.take(samples, np.arange(start, start + round(seconds * rate)),
                                                                       mode="wrap"), rate, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--long-files", type=int, default=0,
                        help="instead of copies, this many 60-s 16-bit WAV files of the clips joined (recordings)")
    parser.add_argument("--root", type=Path, help="the checkout whose code is measured (default: this one)")
    parser.add_argument("--pools-only", action="store_true", help="only the worker pools' CPU (no stages)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.workers = args.workers or default_workers()
    with tempfile.TemporaryDirectory(prefix="clapdex-decode-cost-") as folder:
        library = Path(folder)
        for copy in range(0 if args.long_files else args.copies):
            shutil.copytree(args.audio, library / f"copy{copy}", ignore=lambda _, names: [
                name for name in names if os.path.splitext(name)[1] not in ("", ".ogg")])
            for path in (library / f"copy{copy}").rglob("*.ogg"):  # as index_library.py --distinct
                tagged = mutagen.File(path)
                tagged["comment"] = f"copy {copy}"
                tagged.save()
        if args.long_files:
            write_recordings(sorted(args.audio.rglob("*.ogg")), library / "long", args.long_files)
        paths = sorted(str(p) for p in library.rglob("*") if p.suffix in (".ogg", ".wav"))
        for path in paths:
            Path(path).read_bytes()
        results = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
            "load": Path("/proc/loadavg").read_text().split()[:3], "files": len(paths),
            "command": " ".join(["python"] + sys.argv), "root": str(ROOT),
            "readers_workers_cpu_ms_a_file": readers_cpu(paths, args.workers),
            "decoders_cpu_ms_a_file": decoders_cpu(paths, args.workers),
        }
        if not args.pools_only:
            results["stages_ms_a_file"] = per_file_stages(paths)
            results["other_decoders_ms_a_file"] = alternatives(paths)
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
