"""A folder's first search at 10^6 files (issue 15), profiled: library_scale.py's "text, folder
filter" for each of its 21 publishers once (each a folder's first search), after 30 text
searches that embed their captions (as the bench's "text" does before it), under cProfile;
prints each search's milliseconds and the calls by cumulative time. The search package is the
one on PYTHONPATH (a tree to profile):

    PYTHONPATH=TREE python bench/probes/folder_first_search.py HOME CATALOG_URL WEIGHTS
    PYTHONPATH=. python bench/probes/folder_first_search.py /tmp/scale-1e6-pg \
        postgresql+psycopg://clapdex:clapdex@127.0.0.1:5432/scale1e6 /tmp/compact2-base.safetensors
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

from search.config import load_settings
from search.engine import Searcher
from search.filters import Filters
from search.library import Library
from search.query import parse_query

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from library_scale import CAPTIONS, PUBLISHERS  # noqa: E402

home, url, weights = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
settings = load_settings(home, device="cpu", catalog=url, weights=weights)
library = Library(settings)
searcher = Searcher(library, library_only=True)
searcher.calibration()
root = settings.roots[0] if settings.roots else str(home / "library")
for caption in CAPTIONS[:30]:
    searcher.search(parse_query(caption))
profile = cProfile.Profile()
laps = []
for i, publisher in enumerate(PUBLISHERS):
    filters = Filters(folders=(os.path.join(root, publisher),))
    clock = time.perf_counter()
    profile.enable()
    searcher.search(parse_query(CAPTIONS[i]), filters=filters)
    profile.disable()
    laps.append(1000 * (time.perf_counter() - clock))
print("laps", sorted(round(l) for l in laps))
pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
library.close()
