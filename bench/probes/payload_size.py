"""The Qdrant payload clapdex keeps beside each window (``search.qdrant_store.payload_of``), as
JSON bytes, for a sample of a catalog's files: every STEP-th file id, and their windows a file.
docs/scaling.md sizes a Qdrant deployment with it. Opens the catalog without creating anything
(``create=False``) and only reads.

    python bench/probes/payload_size.py --catalog sqlite:////tmp/scale-1e6/catalog.sqlite --step 997
"""

from __future__ import annotations

import argparse
import json
import statistics

from sqlalchemy import func, select

from search.catalog import Catalog, File
from search.qdrant_store import payload_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="the catalog's URL")
    parser.add_argument("--step", type=int, default=997, help="sample every STEP-th file id")
    args = parser.parse_args()
    with Catalog(args.catalog, create=False) as catalog:
        last = catalog.session.scalar(select(func.max(File.id))) or 0
        records = list(catalog.files_by_id(range(args.step, last + 1, args.step)).values())
        sizes = [len(json.dumps(payload_of(record)).encode()) for record in records]
        windows = [len(record.windows) for record in records]
    print(json.dumps({
        "catalog": args.catalog, "files": len(sizes), "payload_bytes_mean": round(statistics.mean(sizes), 1),
        "payload_bytes_median": statistics.median(sizes), "payload_bytes_max": max(sizes),
        "windows_a_file": round(statistics.mean(windows), 3),
    }))


if __name__ == "__main__":
    main()
