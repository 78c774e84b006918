"""Every window's vector and every file's catalogued header after an index run, for comparing
two checkouts' code (--root) on the same library and weights: run it once per checkout, then
once more with --compare A.npz B.npz.

    python bench/probes/index_vectors.py --make-library /tmp/lib --audio /work/shared/data/esc10
    python bench/probes/index_vectors.py --root /tmp/main --library /tmp/lib --weights /tmp/w --out main.npz
    python bench/probes/index_vectors.py --library /tmp/lib --weights /tmp/w --out branch.npz
    python bench/probes/index_vectors.py --compare main.npz branch.npz

The library: the clips under --audio and --recordings WAV files of 60 s (the clips joined, as
bench/index_library.py --long-files makes them). Random MS-CLAP 2023 weights at the real sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

# --root TREE: the checkout whose code indexes (default: this one).
ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve() if "--root" in sys.argv else Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

HEADER = ("sample_rate", "channels", "duration", "codec", "bit_depth")


def make_library(folder: Path, audio: Path, recordings: int) -> None:
    import soundfile

    clips = sorted(path for path in audio.rglob("*") if path.suffix.lower() in (".ogg", ".wav", ".flac"))
    shutil.copytree(audio, folder / "clips", ignore=lambda _, names: [
        name for name in names if Path(name).suffix and Path(name).suffix.lower() not in (".ogg", ".wav", ".flac")])
    joined, rate = [], None
    for clip in clips:
        samples, clip_rate = soundfile.read(clip, dtype="float32", always_2d=True)
        if rate in (None, clip_rate):
            rate = clip_rate
            joined.append(samples.mean(axis=1))
    joined = np.concatenate(joined)
    (folder / "recordings").mkdir()
    for number in range(recordings):
        start = (number * 7919 * rate) % len(joined)
        soundfile.write(folder / "recordings" / f"recording{number:03d}.wav",
                        np.take(joined, np.arange(start, start + 60 * rate), mode="wrap"), rate, subtype="PCM_16")


def index_vectors(library: Path, weights: Path, device: str, out: Path) -> None:
    import torch
    from sqlalchemy import select

    from checkpoints import write_tiny_msclap_checkpoint
    from encoders.msclap import load_msclap_2023
    from indexer.pipeline import index_paths
    from search.catalog import File, Window
    from search.config import Settings
    from search.library import Library

    checkpoint = weights / "CLAP_weights_2023.pth"
    if not checkpoint.exists():
        checkpoint = write_tiny_msclap_checkpoint(weights, full=True)
    encoder = load_msclap_2023(checkpoint, device=device)
    with tempfile.TemporaryDirectory(prefix="clapdex-vectors-") as home:
        settings = Settings(home=Path(home), device=device)
        with Library(settings, create=True, encoder=encoder) as opened:
            report = index_paths(opened, [library])
            rows = opened.catalog.session.execute(
                select(Window.id, File.path, Window.start).join(File, File.id == Window.file_id)).all()
            files = opened.catalog.session.execute(select(File.path, *(getattr(File, name) for name in HEADER))).all()
            ids = np.array([row[0] for row in rows], dtype=np.int64)
            vectors = opened.store.reconstruct(ids)
    keys = [f"{Path(path).relative_to(library)}@{start:.3f}" for _, path, start in rows]
    headers = {str(Path(row[0]).relative_to(library)): list(row[1:]) for row in files}
    np.savez(out, keys=np.array(keys), vectors=vectors, headers=json.dumps(headers),
             report=json.dumps(report.summary()), root=str(ROOT), torch=torch.__version__)
    print(json.dumps({"windows": len(keys), "files": len(headers), "report": report.summary(), "out": str(out)}))


def compare(first: Path, second: Path) -> dict:
    a, b = np.load(first), np.load(second)
    in_a = dict(zip(a["keys"].tolist(), a["vectors"]))
    in_b = dict(zip(b["keys"].tolist(), b["vectors"]))
    shared = sorted(set(in_a) & set(in_b))
    cosines = np.array([float(np.dot(in_a[key], in_b[key]) / (np.linalg.norm(in_a[key]) * np.linalg.norm(in_b[key])))
                        for key in shared])
    headers_a, headers_b = json.loads(str(a["headers"])), json.loads(str(b["headers"]))
    differing = {path: [headers_a[path], headers_b.get(path)] for path in headers_a if headers_a[path] != headers_b.get(path)}
    return {"windows": [len(in_a), len(in_b)], "shared_windows": len(shared),
            "cosine_min": float(cosines.min()) if len(cosines) else None,
            "cosine_mean": float(cosines.mean()) if len(cosines) else None,
            "bit_identical_windows": int(sum(np.array_equal(in_a[key], in_b[key]) for key in shared)),
            "files": [len(headers_a), len(headers_b)], "headers_differing": dict(list(differing.items())[:10]),
            "headers_differing_count": len(differing), "roots": [str(a["root"]), str(b["root"])]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--make-library", type=Path, help="write the library into this new folder and stop")
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--recordings", type=int, default=10)
    parser.add_argument("--library", type=Path)
    parser.add_argument("--weights", type=Path, help="a folder for the random checkpoint (written once, then reused)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2)
    args = parser.parse_args()
    if args.make_library:
        make_library(args.make_library, args.audio, args.recordings)
    elif args.compare:
        result = compare(*args.compare)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
    else:
        import torch

        args.weights.mkdir(parents=True, exist_ok=True)
        index_vectors(args.library.resolve(), args.weights, args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                      args.out)


if __name__ == "__main__":
    main()
