"""A lone query's thread limit, for torch and faiss alike, without importing either.

Threads with no work of their own spin waiting for each other. On 2 cores shared with other
busy jobs, GPT-2 on one caption took 513 ms (p50) on 2 threads and 70 ms on one; an exact
faiss search of one query over 10^4 windows took 20 ms on 2 OpenMP threads and 1.2 ms on one
(docs/benchmarks.md). So a lone query runs on one thread, and a search on no more threads
than queries. This module imports neither library: a filter-only search must not pay for
importing torch to limit threads it will never start.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def threads_limited(count: int) -> Iterator[None]:
    """At most ``count`` threads (one at least) for torch's intra-op work and faiss's OpenMP
    loops, each where it is loaded already; both as they were afterwards."""
    limits = []
    if (torch := sys.modules.get("torch")) is not None:
        limits.append((torch.get_num_threads, torch.set_num_threads))
    if (faiss := sys.modules.get("faiss")) is not None:  # search loads it; encoders never import it
        limits.append((faiss.omp_get_max_threads, faiss.omp_set_num_threads))
    before = [get() for get, _ in limits]
    for (_, set_threads), threads in zip(limits, before):
        set_threads(max(1, min(threads, count)))
    try:
        yield
    finally:
        for (_, set_threads), threads in zip(limits, before):
            set_threads(threads)
