"""Searches for `clapdex serve`, in processes of their own.

A search is mostly Python (the catalog's rows, the ranking, the hits), and Python runs one
thread at a time per process: one process served about 100 requests/s on 2 cores however
many threads it had. So the server hands searches to worker processes, each with its own
Library and model, opened once. Concurrent requests are gathered into batches
while every worker is busy. A worker embeds the batch's texts it has not
kept in one model call (one model call per search cost most of a worker's time), then runs
the searches: one after another where the workers have every core, on threads where cores
are left over (``search_threads``). Torch and FAISS run on one thread each in a worker: the
workers are the parallelism.
The server keeps what must be one (keys, rate limits, index runs, files); workers end with it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from encoders.audio import AudioDecodeError
from encoders.processes import end_with_parent
from search.config import Settings, load_settings
from search.engine import Results, Searcher
from search.library import Library, ModelReplaced
from search.query import Query, QueryError

log = logging.getLogger(__name__)

# Requests a worker takes at once: enough to fill a model call, few enough to answer soon (a
# request waits for its whole batch). 32 clients on 2 workers, 2 cores: 8 gave 315-355
# requests/s, search p95 147-178 ms; 16 gave 281 and 201 ms; 4 gave 221 (2026-12-04).
BATCH = 8
# What a search may rightly raise, handed to the caller as it is; anything else is a fault.
EXPECTED = (QueryError, PermissionError, AudioDecodeError, ModelReplaced)

_searcher: Searcher | None = None
_threads: ThreadPoolExecutor | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    """A search's answer as the API sends it: its page of hits as JSON, and the files ranked."""

    body: bytes
    total: int


def page_of(found: Results) -> Page:
    """``found`` as the API's answer. A worker makes it: the server then neither rebuilds the
    hits from their pickle nor writes them as JSON (a fifth of a millisecond a search, on the
    one process every request passes through); the bytes pickle for nothing. Written as
    Starlette's JSONResponse writes (UTF-8, compact, no NaN)."""
    hits = [hit.to_dict() for hit in found.hits]
    body = json.dumps(hits, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Page(body, found.total)


class SearchUnavailable(RuntimeError):
    """A worker died (killed, out of memory); the next request gets new ones."""


class SearchProcesses:
    """``await search(query, **options)``: ``Searcher.search`` run by ``processes`` worker
    processes, its answer as a ``Page``, awaited in the server's event loop. Requests that come while every worker is
    busy wait, and go together (at most BATCH) to the first worker free. No server thread waits
    for a search: a thread per request, handing over to the next, cost a quarter of the
    server's time."""

    def __init__(self, settings: Settings, processes: int, max_clip_seconds: float | None):
        self.settings, self.processes, self.max_clip_seconds = settings, processes, max_clip_seconds
        self.executor = self._start()
        self._waiting: collections.deque[tuple[tuple, asyncio.Future]] = collections.deque()
        self._running = 0  # batches at the workers; only the event loop changes these

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the server may hold threads and a loaded library already.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_open, initargs=(self.settings.environment(), self.max_clip_seconds,
                                                                search_threads(self.processes)))

    def wait_ready(self) -> None:
        """Start every worker and wait until each has its model and calibration."""
        for future in [self.executor.submit(_ready) for _ in range(self.processes)]:
            future.result()

    async def search(self, query: Query | None, **options) -> Page:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(((query, options), answer))
        self._send()
        outcome = await answer
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _send(self) -> None:
        """Hand what waits to the workers, a batch per worker not busy."""
        while self._waiting and self._running < self.processes:
            batch = [self._waiting.popleft() for _ in range(min(BATCH, len(self._waiting)))]
            executor = self.executor
            try:
                sent = asyncio.wrap_future(executor.submit(_search_batch, [request for request, _ in batch]))
            except BrokenProcessPool as broken:
                sent = asyncio.get_running_loop().create_future()
                sent.set_exception(broken)
            self._running += 1
            sent.add_done_callback(functools.partial(self._answer, batch, executor))

    def _answer(self, batch: list, executor: ProcessPoolExecutor, sent: asyncio.Future) -> None:
        self._running -= 1
        error = sent.exception() if not sent.cancelled() else SearchUnavailable("the search was cancelled")
        if isinstance(error, BrokenProcessPool):
            if self.executor is executor:  # batches failing together start one new pool
                log.error("a search process died; starting new ones")
                self.executor = self._start()
                executor.shutdown(wait=False, cancel_futures=True)
            error = SearchUnavailable("a search process stopped; try again")
        outcomes = [error] * len(batch) if error is not None else sent.result()
        for (_, answer), outcome in zip(batch, outcomes):
            if not answer.done():  # its client may have gone
                answer.set_result(outcome)
        self._send()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def search_threads(processes: int) -> int:
    """The threads a worker runs its batch's searches on. Where the workers have every core (2
    workers on 2 cores, the default here), one: the threads of a worker on a busy core only take
    turns for Python's lock, and handing it over costs CPU (the load test spent less a request
    with one, 2026-12-04, docs/benchmarks.md 3c). Where cores are left over, BATCH: while one
    search waits on SQLite or FAISS, which let go of the lock, another computes."""
    return 1 if processes >= len(os.sched_getaffinity(0)) else BATCH


def _open(environment: dict[str, str], max_clip_seconds: float | None, threads: int) -> None:
    end_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server ends us
    os.environ.update(environment)
    # Each worker is one of about as many processes as cores: torch's and FAISS's threads of
    # their own would only take turns with the other workers' (encoders.threads).
    import faiss
    import torch
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    global _searcher, _threads
    library = Library(load_settings())
    _searcher = Searcher(library, library_only=True, max_clip_seconds=max_clip_seconds)
    _searcher.calibration()  # loads the model, learns the windows' files
    _searcher.encoder.prepare_for_queries()  # a worker embeds many queries' words
    _threads = ThreadPoolExecutor(threads, thread_name_prefix="search") if threads > 1 else None


def _ready() -> int:
    return os.getpid()


def _search_batch(requests: list[tuple[Query | None, dict]]) -> list:
    try:
        _searcher.embed_texts_ahead(query for query, _ in requests)
    except Exception:  # each search embeds its own words again, and fails alone if they fail
        log.exception("embedding a batch's texts failed")
    return list(_threads.map(_search_one, requests)) if _threads else [_search_one(request) for request in requests]


def _search_one(request: tuple[Query | None, dict]):
    query, options = request
    try:
        return page_of(_searcher.search(query, **options))
    except EXPECTED as expected:  # one bad query fails alone, not its batch
        return expected
    except Exception as error:
        log.exception("search %s failed", query)
        return RuntimeError(f"the search failed: {error}")
