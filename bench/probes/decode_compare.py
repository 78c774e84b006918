"""Whether two checkouts' decoders give the same samples: every audio file under the folders
given, read by each checkout's ``encoders.audio.read_audio`` at --rate, compared sample by
sample, with what each says the file holds (AudioInfo) and which decoder read it. Windows and
vectors follow from the samples, so equal samples mean equal vectors for the same weights
(bench/probes/index_vectors.py compares vectors themselves, on a GPU).

    python bench/probes/decode_compare.py --root /tmp/main /work/shared/data/esc10 /tmp/more [--out cmp.json]

With --rounds N, it also times each checkout's decoding of all the files (AudioStream's blocks,
as the decoders read a file), in this process, the two alternating N times: ms of CPU a file.

Exit status 1 when any file differs (or fails in one checkout only).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[2]


def load_audio_module(root: Path):
    """``encoders.audio`` of the checkout at ``root``, imported afresh."""
    for name in [name for name in sys.modules if name == "encoders" or name.startswith("encoders.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("encoders.audio")
    finally:
        sys.path.remove(str(root))


def read(module, path: Path, rate: int) -> tuple[np.ndarray | None, tuple | None, str]:
    """Samples, AudioInfo as a tuple, and the decoder's name (or the error)."""
    try:
        with module.AudioStream(path, rate) as stream:
            decoder = stream.decoder
            samples = np.concatenate(list(stream.blocks()))
            return samples, dataclasses.astuple(stream.info()), decoder
    except module.AudioDecodeError as exc:
        return None, None, f"error: {exc.reason}"


def cpu_a_file(module, paths: list[Path], rate: int) -> float:
    """ms of this process's CPU a file, decoding every file as the indexer's decoders do."""
    started = time.process_time()
    for path in paths:
        try:
            with module.AudioStream(path, rate) as stream:
                for _ in stream.blocks():
                    pass
        except module.AudioDecodeError:
            pass
    return (time.process_time() - started) * 1000 / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--root", type=Path, required=True, help="the other checkout (this one is the second)")
    parser.add_argument("--rate", type=int, default=44100, help="the model's rate (MS-CLAP 2023's by default)")
    parser.add_argument("--rounds", type=int, default=0, help="time the two checkouts' decoding, alternating, this many times")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    extensions = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".m4a"}
    paths = sorted(p for folder in args.folders for p in folder.rglob("*") if p.suffix.lower() in extensions)
    modules = [load_audio_module(args.root.resolve()), load_audio_module(HERE)]
    if modules[0].__file__ == modules[1].__file__:
        parser.error("--root is this checkout")
    results = []
    for path in paths:
        (a, info_a, decoder_a), (b, info_b, decoder_b) = (read(module, path, args.rate) for module in modules)
        same_length = a is not None and b is not None and len(a) == len(b)
        results.append({
            "path": str(path), "decoders": [decoder_a, decoder_b], "same_info": info_a == info_b,
            "equal": bool(same_length and np.array_equal(a, b)) or (a is None and b is None and decoder_a == decoder_b),
            "max_abs_difference": float(np.abs(a - b).max()) if same_length and len(a) else None,
        })
    differ = [result for result in results if not (result["equal"] and result["same_info"])]
    summary = {"files": len(results), "differ": len(differ), "roots": [str(args.root.resolve()), str(HERE)],
               "decoders": sorted({tuple(result["decoders"]) for result in results}), "differing": differ}
    if args.rounds:
        for path in paths:  # from the page cache from now on
            path.read_bytes()
        times: list[list[float]] = [[], []]
        for _ in range(args.rounds):
            for side, module in enumerate(modules):
                times[side].append(cpu_a_file(module, paths, args.rate))
        summary["cpu_ms_a_file"] = {
            "load": Path("/proc/loadavg").read_text().split()[:3],
            **{name: {"median": statistics.median(series), "min": min(series), "rounds": series}
               for name, series in zip(("root", "this"), times)}}
    text = json.dumps(summary, indent=1)
    if args.out:
        args.out.write_text(json.dumps(summary | {"files_compared": results}, indent=1))
    print(text)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
