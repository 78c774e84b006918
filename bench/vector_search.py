"""Query latency, recall@10 and memory of FaissStore's index kinds at 10^4..10^6 windows.

The vectors are synthetic, 1024-d and unit length, clustered the way a sound library's
embeddings are (families of sounds, sounds, windows of one sound): 64 families of 256
sounds each, sound centres at cosine 0.7 from their family's, windows at cosine 0.55 from
their sound's. Queries sit at cosine 0.45 from a sound centre, farther out than windows, as a
caption does. ``--spread 3.0`` puts windows at cosine 0.32 from their sound's centre, nearly
unclustered within a family. Ground truth is exact inner product.

Timed per query, one query at a time (as a user types): the search step asks for
10 files x 8 windows (the engine's oversampling) and ranks files by their best window.

    nice python bench/vector_search.py --sizes 10000 100000 1000000 --out results.json
    python bench/vector_search.py --gpu ...     # exact search on the GPU (flat kind)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from search.store import FaissStore  # noqa: E402

DIM = 1024
CHUNK = 50_000
TOP_FILES = 10
WINDOWS_PER_QUERY = TOP_FILES * 8
WINDOWS_PER_FILE = 3  # consecutive ids belong to one file


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def centres(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    families = unit(rng.standard_normal((64, DIM)))
    # a point at cosine c from its centre: centre + noise of norm tan(acos(c))
    sounds = unit(np.repeat(families, 256, axis=0) + unit(rng.standard_normal((64 * 256, DIM))) * 1.0)
    return sounds


def windows(count: int, sounds: np.ndarray, spread: float = 1.5):
    """Deterministic chunks of (ids, vectors) making up ``count`` windows, ``spread`` the
    noise's norm against the sound centre's 1 (1.5: cosine 0.55 to the centre)."""
    for start in range(0, count, CHUNK):
        rng = np.random.default_rng(1000 + start // CHUNK)
        size = min(CHUNK, count - start)
        which = rng.integers(0, len(sounds), size)
        vectors = unit(sounds[which] + unit(rng.standard_normal((size, DIM))) * spread)
        yield np.arange(start, start + size, dtype=np.int64), vectors


def queries(count: int, sounds: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    return unit(sounds[rng.integers(0, len(sounds), count)] + unit(rng.standard_normal((count, DIM))) * 2.0)


def exact_top(count: int, sounds: np.ndarray, asked: np.ndarray, k: int, spread: float) -> np.ndarray:
    best_scores = np.full((len(asked), k), -np.inf, np.float32)
    best_ids = np.zeros((len(asked), k), np.int64)
    for ids, vectors in windows(count, sounds, spread):
        scores = np.concatenate([best_scores, asked @ vectors.T], axis=1)
        pool = np.concatenate([best_ids, np.broadcast_to(ids, (len(asked), len(ids)))], axis=1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(pool, top, 1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_ids, order, 1)


def rank_files(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Files by their best window (ids are in score order, so the first of each file wins)."""
    files = ids // WINDOWS_PER_FILE
    _, first = np.unique(files, return_index=True)
    return files[np.sort(first)][:TOP_FILES]


def measure(store: FaissStore, asked: np.ndarray, truth: np.ndarray) -> dict:
    latencies, found = [], []
    for query in asked[:5]:  # warm caches and lazy state
        store.search(query[None], WINDOWS_PER_QUERY)
    for query in asked:
        started = time.perf_counter()
        scores, ids = store.search(query[None], WINDOWS_PER_QUERY)
        rank_files(scores[0], ids[0])
        latencies.append(time.perf_counter() - started)
        found.append(ids[0, :10])
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    return {"p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p95_ms": 1000 * float(np.percentile(latencies, 95)),
            "recall_at_10": float(recall)}


def run(count: int, kind: str, nprobes: list[int], asked, truth, sounds, spread: float, gpu: bool,
        folder: Path) -> list[dict]:
    path = folder / f"{kind}-{count}.faiss"
    store = FaissStore(path, DIM, kind=kind, gpu=gpu)
    started = time.perf_counter()
    for ids, vectors in windows(count, sounds, spread):
        store.add(ids, vectors)
    store.build()
    build_s = time.perf_counter() - started
    store.save()
    stored = sum(p.stat().st_size for p in folder.glob(path.name + "*") if p.name != path.name + ".f32")
    common = {"windows": count, "spread": spread, "kind": store.built_kind, "build_s": round(build_s, 2),
              "memory_bytes_per_window": round(stored / count, 1),
              "disk_only_bytes_per_window": round(os.path.getsize(path.with_name(path.name + ".f32")) / count, 1)
              if store.built_kind == "ivf-sq8" else 0.0,
              "gpu": gpu and store.built_kind == "flat"}
    rows = []
    for nprobe in (nprobes if store.built_kind != "flat" else [None]):
        store.nprobe = nprobe
        row = dict(common, nprobe=nprobe, nlist=getattr(store.index, "nlist", None), **measure(store, asked, truth))
        print(json.dumps(row), flush=True)
        rows.append(row)
    for leftover in folder.glob(path.name + "*"):
        leftover.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivf", "ivf-sq8"])
    parser.add_argument("--nprobes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--spread", type=float, default=1.5,
                        help="windows' noise against their sound centre (3.0: cosine 0.32, nearly unclustered)")
    parser.add_argument("--gpu", action="store_true", help="exact search on the GPU (flat kind only)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import faiss

    sounds = centres()
    asked = queries(args.queries, sounds)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
               "cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
               "command": " ".join([Path(sys.executable).name] + sys.argv), "rows": []}
    with tempfile.TemporaryDirectory(prefix="clapdex-bench-") as folder:
        for count in args.sizes:
            started = time.perf_counter()
            truth = exact_top(count, sounds, asked, 10, args.spread)
            print(f"# {count} windows: exact truth in {time.perf_counter() - started:.1f} s", flush=True)
            for kind in args.kinds:
                results["rows"] += run(count, kind, args.nprobes, asked, truth, sounds, args.spread, args.gpu, Path(folder))
                if args.out:
                    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
