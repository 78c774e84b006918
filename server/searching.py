"""Searches for `clapdex serve`, in processes of their own.

A search is mostly Python (the catalog's rows, the ranking, the hits), and Python runs one
thread at a time per process: one process served about 100 requests/s on 2 cores however
many threads it had. So the server hands searches to worker processes, each with its own
Library and model, opened once. Concurrent requests are gathered into batches
(search.batching) while every worker is busy. A worker embeds the batch's texts it has not
kept in one model call (one model call per search cost most of a worker's time), then runs
the searches on threads: while one waits for the catalog or the vector index another
computes (one after another gave 191 requests/s against 248 on threads, 2026-12-04).
Torch and FAISS run on one thread each in a worker: the workers are the parallelism.
The server keeps what must be one (keys, rate limits, index runs, files); workers end with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from encoders.audio import AudioDecodeError
from encoders.processes import end_with_parent
from search.batching import Gathered
from search.config import Settings, load_settings
from search.engine import Results, Searcher
from search.library import Library
from search.query import Query, QueryError

log = logging.getLogger(__name__)

# Requests a worker takes at once: enough to fill a model call, few enough to answer soon.
BATCH = 16
# What a search may rightly raise, handed to the caller as it is; anything else is a fault.
EXPECTED = (QueryError, PermissionError, AudioDecodeError)

_searcher: Searcher | None = None
_threads: ThreadPoolExecutor | None = None


class SearchUnavailable(RuntimeError):
    """A worker died (killed, out of memory); the next request gets new ones."""


class SearchProcesses:
    """``search(query, **options)`` as ``Searcher.search``, run by ``processes`` worker processes."""

    def __init__(self, settings: Settings, processes: int, max_clip_seconds: float | None):
        self.settings, self.processes, self.max_clip_seconds = settings, processes, max_clip_seconds
        self.gathered = Gathered(self._run, most=BATCH, at_once=processes)
        self.executor = self._start()
        self._restarting = threading.Lock()  # batches failing together start one new pool

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the server may hold threads and a loaded library already.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_open, initargs=(self.settings.environment(), self.max_clip_seconds))

    def wait_ready(self) -> None:
        """Start every worker and wait until each has its model and calibration."""
        for future in [self.executor.submit(_ready) for _ in range(self.processes)]:
            future.result()

    def search(self, query: Query | None, **options) -> Results:
        outcome = self.gathered((query, options))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _run(self, requests: list) -> list:
        executor = self.executor
        try:
            return executor.submit(_search_batch, requests).result()
        except BrokenProcessPool:
            with self._restarting:
                if self.executor is executor:
                    log.error("a search process died; starting new ones")
                    self.executor = self._start()
                    executor.shutdown(wait=False, cancel_futures=True)
            raise SearchUnavailable("a search process stopped; try again") from None

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _open(environment: dict[str, str], max_clip_seconds: float | None) -> None:
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
    _threads = ThreadPoolExecutor(BATCH, thread_name_prefix="search")


def _ready() -> int:
    return os.getpid()


def _search_batch(requests: list[tuple[Query | None, dict]]) -> list:
    try:
        _searcher.embed_texts_ahead(query for query, _ in requests)
    except Exception:  # each search embeds its own words again, and fails alone if they fail
        log.exception("embedding a batch's texts failed")
    return list(_threads.map(_search_one, requests))


def _search_one(request: tuple[Query | None, dict]):
    query, options = request
    try:
        return _searcher.search(query, **options)
    except EXPECTED as expected:  # one bad query fails alone, not its batch
        return expected
    except Exception as error:
        log.exception("search %s failed", query)
        return RuntimeError(f"the search failed: {error}")
