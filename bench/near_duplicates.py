"""Near-duplicate search at library scale: time, memory and planted pairs found.

Builds a real SQLite catalog and FaissStore (its automatic kind) of --files files x 3 windows of
random unit 1024-d vectors, then plants --planted re-encodes (every window of an original,
nudged) and as many trims (2 of its 3 windows, nudged), and runs ``near_duplicates`` on it.
Peak memory is sampled from /proc: the anonymous part leaves out the store's memory-mapped
rows, which are page cache.

    nice python bench/near_duplicates.py --files 100000 --planted 500 --home /tmp/dups --out near_duplicates.json

With --added N it then keeps the result as the library does (``duplicates.update``: a whole
pass), adds N files (one in five a re-encode of a file there, one in five a trim), brings the
kept pairs up to date, and compares them with a whole pass over the new library.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from search import duplicates  # noqa: E402
from search.catalog import INDEXED, Catalog, Embedded, File, Window  # noqa: E402
from search.duplicates import near_duplicates  # noqa: E402
from search.store import FaissStore  # noqa: E402

DIM, WINDOWS = 1024, 3


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def build(home: Path, files: int, planted: int) -> tuple[set, set]:
    """The library; returns the planted pairs, (re-encodes, trims). The last 2 * planted files
    copy the first ones: re-encodes, then trims."""
    rng = np.random.default_rng(0)
    copies_from = files - 2 * planted
    counts = np.full(files, WINDOWS)
    counts[copies_from + planted:] = 2
    starts = np.concatenate([[0], np.cumsum(counts)])
    path = [f"/lib/{(f * 7919) % files:07d}.wav" for f in range(files)]  # copies scattered in path order
    catalog = Catalog(f"sqlite:///{home}/catalog.sqlite")
    catalog.session.execute(insert(File), [
        dict(id=f + 1, path=path[f], root="/lib", folder="/lib", name=path[f][5:], size=1, mtime=1.0,
             content_hash=f"h{f}", status=INDEXED, hop=3.5) for f in range(files)])
    catalog.session.execute(insert(Window), [
        dict(id=int(starts[f] + w + 1), file_id=f + 1, start=3.5 * w, end=3.5 * w + 7)
        for f in range(files) for w in range(counts[f])])
    catalog.commit()
    catalog.close()
    store = FaissStore(home / "windows.faiss", DIM, gpu=False)
    originals = {}
    for first in range(0, files, 20_000):
        last = min(files, first + 20_000)
        vectors = []
        for f in range(first, last):
            if f >= copies_from:
                original = originals[f - copies_from]
                copy = original if f < copies_from + planted else original[:2]
                vectors.append(unit(copy + 0.05 * unit(rng.standard_normal(copy.shape))))
            else:
                vectors.append(unit(rng.standard_normal((WINDOWS, DIM))))
                if f < 2 * planted:
                    originals[f] = vectors[-1]
        store.add(np.arange(starts[first], starts[last]) + 1, np.concatenate(vectors))
    store.save()
    store.close()
    pairs = [tuple(sorted((path[f], path[f + copies_from]))) for f in range(2 * planted)]
    return set(pairs[:planted]), set(pairs[planted:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=500, help="re-encodes, and as many trims")
    parser.add_argument("--home", type=Path, required=True, help="an empty folder for the catalog and store")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--added", type=int, default=0, help="then keep, add this many files, update, compare")
    args = parser.parse_args()

    args.home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    re_encodes, trims = build(args.home, args.files, args.planted)
    build_s = time.perf_counter() - started

    peak_anonymous_kb = [0]

    def sample() -> None:
        while True:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peak_anonymous_kb[0] = max(peak_anonymous_kb[0], int(line.split()[1]))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    catalog = Catalog(f"sqlite:///{args.home}/catalog.sqlite")
    store = FaissStore(args.home / "windows.faiss", DIM, gpu=False)
    time.sleep(0.2)
    opened_kb = peak_anonymous_kb[0]
    started = time.perf_counter()
    pairs = near_duplicates(catalog, store)
    search_s = time.perf_counter() - started
    time.sleep(0.2)
    found = {(pair.first, pair.second) for pair in pairs}
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
        "command": " ".join(["python"] + sys.argv), "files": args.files, "store_kind": store.built_kind,
        "build_seconds": build_s, "seconds": search_s,
        "anonymous_mb_after_opening": opened_kb // 1024, "peak_anonymous_mb": peak_anonymous_kb[0] // 1024,
        "re_encodes": len(re_encodes), "re_encodes_found": len(found & re_encodes),
        "trims": len(trims), "trims_found": len(found & trims), "other_pairs": len(found - re_encodes - trims),
    }
    if args.added:
        results["kept"] = kept_and_updated(args.home, catalog, store, args.added)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


def add_file(catalog: Catalog, store, path: str, vectors: np.ndarray, content_hash: str, hop: float = 3.5) -> None:
    """A file of ``vectors`` (a window each, ``hop`` seconds apart), embedded as an index run records it."""
    record = catalog.set_file(None, path, root=str(Path(path).parent), size=1, mtime=1.0, content_hash=content_hash)
    spans = [(hop * w, hop * w + 2 * hop) for w in range(len(vectors))]
    _, (ids,) = catalog.replace_windows_of([Embedded(record, spans, hop * len(vectors) + hop, 44100, 1, "wav")])
    store.add(np.array(ids), vectors)


def kept_and_updated(home: Path, catalog: Catalog, store: FaissStore, added: int) -> dict:
    """Seconds of the whole pass that keeps the result, of adding ``added`` files and of the update
    after, and how the updated pairs compare with a whole pass over the new library."""
    rng = np.random.default_rng(1)
    timed = {}
    started = time.perf_counter()
    timed["how_first"] = duplicates.update(catalog, store, home)
    timed["whole_kept_s"] = round(time.perf_counter() - started, 1)
    library = duplicates._indexed_files(catalog)
    started = time.perf_counter()
    for number in range(added):
        kind = number % 5
        if kind < 2:  # a re-encode (0) or a trim (1) of a file of the library
            place = int(rng.integers(len(library)))
            windows = store.reconstruct(library.window_ids[library.starts[place]:library.starts[place + 1]])
            windows = windows if kind == 0 else windows[:2]
            vectors = unit(windows + 0.05 * unit(rng.standard_normal(windows.shape)))
        else:
            vectors = unit(rng.standard_normal((WINDOWS, DIM)))
        add_file(catalog, store, f"/lib/added/{number:05d}.wav", vectors, f"added{number}")
    catalog.commit()
    store.save()
    timed["adding_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    timed["how_after"] = duplicates.update(catalog, store, home)
    timed["update_s"] = round(time.perf_counter() - started, 1)
    kept = {(pair.first, pair.second): pair.score for pair in duplicates.kept(catalog, duplicates.DEFAULT_THRESHOLD).pairs}
    started = time.perf_counter()
    whole = {(pair.first, pair.second): pair.score for pair in near_duplicates(catalog, store)}
    timed["whole_after_s"] = round(time.perf_counter() - started, 1)
    timed |= {"pairs_updated": len(kept), "pairs_whole": len(whole), "in_both": len(kept.keys() & whole.keys()),
              "only_updated": sorted(kept.keys() - whole.keys())[:20], "only_whole": sorted(whole.keys() - kept.keys())[:20],
              "with_added_files": sum("/added/" in a + b for a, b in kept)}
    return timed


if __name__ == "__main__":
    main()
