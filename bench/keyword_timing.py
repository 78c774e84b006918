"""Keyword search timed on a catalog that exists (issue 15): ``Catalog.keyword_ranked``, the
call the Searcher makes, for the kinds of query a user types, 20 of each (10 of two letters)
run once, then the first 5 again; p50 and p95 of those 25, and every query's ids written to
--ids, so two versions of the code can be shown to give the same files in the same order:

    python bench/keyword_timing.py sqlite:////tmp/scale-1e6/catalog.sqlite --ids /tmp/after.json
    python bench/keyword_timing.py URL --code /tmp/old --ids /tmp/before.json  # an older search/ package

The words are library_scale.py's, whose catalogs this reads (a copy: opening it for writing
may add an index the first time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("url", help="the catalog's database URL")
parser.add_argument("--ids", help="write every query's ids here (JSON)")
parser.add_argument("--code", help="a folder holding another version of the search package, timed instead")
parser.add_argument("--limit", type=int, default=500)
parser.add_argument("--only", help="time only the kinds whose label holds this")
args = parser.parse_args()

# --code first: library_scale puts this repository on the path, and must find search/ loaded.
sys.path[:0] = [*([args.code] if args.code else []), str(Path(__file__).resolve().parent.parent)]
from search.catalog import Catalog  # noqa: E402
from search.filters import Filters  # noqa: E402
from search.keyword import parse_keywords  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from library_scale import WORDS  # noqa: E402

QUERIES = {
    "1 word": WORDS[:20],
    "3 words": [" ".join(WORDS[(i + k * 7) % len(WORDS)] for k in range(3)) for i in range(20)],
    "AND/OR/NOT": [f"{WORDS[i]} -{WORDS[i + 3]}, {WORDS[i + 5]}" for i in range(20)],
    "prefix (3 letters)": [word[:3] for word in WORDS[20:40]],
    "2 letters": [word[:2] for word in WORDS[40:50]],
    "rare (a take number)": [f"take{i}" for i in range(1000, 1020)],
    "1 word, pending too": WORDS[20:40],
    "1 word, selective filter": WORDS[:20],
    "1 word, broad filter": WORDS[:20],
}
# library_scale.py's filters: few files (DOOR and FLAC, 0.2%) and most (longer than 1 s).
FILTERS = {"1 word, selective filter": Filters(categories=("DOOR",), formats=("flac",)),
           "1 word, broad filter": Filters(min_duration=1.0)}

found = {}
with Catalog(args.url, create=False) as catalog:
    for label, texts in QUERIES.items():
        if args.only and args.only not in label:
            continue
        times, counts = [], []
        for text in texts + texts[:5]:
            clock = time.perf_counter()
            ids = catalog.keyword_ranked(parse_keywords(text), FILTERS.get(label, Filters()), limit=args.limit,
                                         pending="pending" in label)
            times.append(time.perf_counter() - clock)
            catalog.rollback()
            counts.append(len(ids))
            found[f"{label}|{text}"] = ids
        times.sort()
        print(f"{label:22s} p50 {1000 * statistics.median(times):7.1f} ms  p95 "
              f"{1000 * times[int(0.95 * (len(times) - 1))]:7.1f} ms  (hits {min(counts)}-{max(counts)})", flush=True)
if args.ids:
    Path(args.ids).write_text(json.dumps(found))
