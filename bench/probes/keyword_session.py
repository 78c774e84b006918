"""Keyword search as a long-lived process sees it (issue 15): ``Catalog.keyword_ranked`` (limit
500, the Searcher's) on one session, library_scale.py's queries of each kind twice in a row
(every word of its vocabulary), so that psycopg prepares the statements and PostgreSQL may plan
them for any values. Prints p50 / p95 ms of each kind and how many times a statement of keyword
search with parameters ran under such a generic plan. The search package is the one on
PYTHONPATH (a tree to time), imported before library_scale (which puts this one on the path):

    PYTHONPATH=TREE python bench/probes/keyword_session.py postgresql+psycopg://clapdex:clapdex@127.0.0.1:5432/scale1e6
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import text

from search.catalog import Catalog
from search.keyword import parse_keywords

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from library_scale import WORDS  # noqa: E402

n = len(WORDS)
KINDS = {"3 words": [" ".join(WORDS[(i + k * 7) % n] for k in range(3)) for i in range(n)],
         "OR and NOT": [f"{WORDS[i]} -{WORDS[(i + 3) % n]}, {WORDS[(i + 5) % n]}" for i in range(n)],
         "1 word": list(WORDS), "prefix": [word[:3] for word in WORDS]}
GENERIC = text("SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements "
               "WHERE statement LIKE '%file_text%' AND cardinality(parameter_types) > 0")

results = {}
for kind, queries in KINDS.items():
    with Catalog(sys.argv[1], create=False) as catalog:
        times = []
        for query in queries * 2:
            started = time.perf_counter()
            catalog.keyword_ranked(parse_keywords(query), limit=500)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        results[kind] = {"p50_ms": round(statistics.median(times), 1),
                         "p95_ms": round(times[int(0.95 * len(times))], 1), "calls": len(times),
                         "generic_plans": int(catalog.session.scalar(GENERIC))}
print(json.dumps(results))
