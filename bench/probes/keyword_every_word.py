"""Keyword search of one word, its first three letters and its first two, for every word of
library_scale.py's vocabulary (bench/keyword_timing.py takes 20 of each), on a catalog that exists:
``Catalog.keyword_ranked`` with limit 500, as the engine asks; each query once after a first pass.
p50 / p95 / max ms and the five slowest queries, written to the JSON file named (run from the
repository root whose search/ package is to be timed):

    python bench/probes/keyword_every_word.py postgresql+psycopg://...:5432/scale1e6 /tmp/out.json
"""

import json
import statistics
import sys
import time

sys.path.insert(0, "bench")
from library_scale import WORDS  # noqa: E402

from search.catalog import Catalog  # noqa: E402
from search.keyword import parse_keywords  # noqa: E402

catalog = Catalog(sys.argv[1], create=False)
out = {}
for kind, cut in (("1 word", None), ("prefix", 3), ("2 letters", 2)):
    words = list(dict.fromkeys(word[:cut] if cut else word for word in WORDS))
    for word in words:
        catalog.keyword_ranked(parse_keywords(word), limit=500)
    laps = []
    for word in words:
        clock = time.perf_counter()
        catalog.keyword_ranked(parse_keywords(word), limit=500)
        laps.append((1000 * (time.perf_counter() - clock), word))
    cuts = statistics.quantiles([ms for ms, _ in laps], n=100, method="inclusive")
    out[kind] = {"queries": len(words), "p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1),
                 "max_ms": round(max(ms for ms, _ in laps), 1),
                 "slowest": [f"{word}:{ms:.0f}" for ms, word in sorted(laps)[-5:]]}
    print(kind, out[kind], flush=True)
with open(sys.argv[2], "w") as file:
    json.dump(out, file, indent=1)
