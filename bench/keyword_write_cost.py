"""What keeping the keyword index costs the scan (issue 15): ``Catalog.add_files`` of --files new
files, in batches of the scan's size (indexer.pipeline.SCAN_BATCH), into a catalog that exists,
with the keyword index kept as shipped and without it (its meta key removed inside the
transaction, so add_files writes no file_text rows and no full-text index entries), each in one
transaction rolled back at the end: the catalog is left as it was.

    python bench/keyword_write_cost.py sqlite:////tmp/copy.sqlite --files 10000
    python bench/keyword_write_cost.py postgresql+psycopg://... --files 10000

The files are named and described as bench/library_scale.py's, under a folder of their own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import delete

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from library_scale import PUBLISHERS, SUBCATEGORIES, TAG_VOCABULARY, WORDS  # noqa: E402

from indexer.pipeline import SCAN_BATCH  # noqa: E402
from search.catalog import Catalog, Meta, Metadata, NewFile  # noqa: E402
from search.keyword_index import _TEXT_KEY  # noqa: E402


def new_files(count: int, root: str, seed: int) -> list[NewFile]:
    rng = np.random.default_rng(seed)
    files = []
    for number in range(count):
        words = " ".join(WORDS[i].title() for i in rng.integers(len(WORDS), size=rng.integers(1, 4)))
        publisher = PUBLISHERS[number % len(PUBLISHERS)]
        sub = SUBCATEGORIES[rng.integers(len(SUBCATEGORIES))]
        path = f"{root}/{publisher}/Doors/DOOR{sub}/DOOR{sub}_{words} {number:07d}_{publisher}.wav"
        tags = tuple(TAG_VOCABULARY[i] for i in rng.integers(len(TAG_VOCABULARY), size=rng.integers(0, 5)))
        description = f"{words.lower()} recorded" if rng.random() < 0.3 else None
        files.append(NewFile(path, root, 100_000, 1.0, f"{seed:08x}{number:056x}", Metadata(
            duration=2.0, sample_rate=48000, channels=2, bit_depth=24, codec="wav", description=description, tags=tags,
            ucs_cat_id=f"DOOR{sub}", ucs_category="DOOR", ucs_subcategory=sub)))
    return files


def timed(url: str, files: list[NewFile], kept: bool) -> float:
    with Catalog(url, create=False) as catalog:
        if not kept:
            catalog.session.execute(delete(Meta).where(Meta.key == _TEXT_KEY))
        clock = time.perf_counter()
        for first in range(0, len(files), SCAN_BATCH):
            catalog.add_files(files[first:first + SCAN_BATCH])
        catalog.flush()
        seconds = time.perf_counter() - clock
        catalog.rollback()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"kept": [], "without": []}
    for round_ in range(args.rounds):
        for mode in results:
            files = new_files(args.files, f"/write-cost-{round_}-{mode}", round_)
            seconds = timed(args.url, files, mode == "kept")
            results[mode].append(round(args.files / seconds))
            print(f"{mode:8s} {args.files} files in {seconds:6.2f} s: {args.files / seconds:7.0f} files/s", flush=True)
    print(json.dumps({"files_per_s": results}))


if __name__ == "__main__":
    main()
