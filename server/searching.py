"""Searches for `clapdex serve`, in processes of their own.

A search is mostly Python (the catalog's rows, the ranking, the hits), and Python runs one
thread at a time per process: one process served about 100 requests/s on 2 cores however
many threads it had. So the server hands searches to worker processes, each with its own
Library and model, opened once. Concurrent requests are gathered into batches
while every worker is busy, and run on threads: while one waits for the catalog or the
vector index another computes (one after another gave 191 requests/s against 248 on threads,
2026-12-04). Torch and FAISS run on one thread each in a worker: the workers are the parallelism.

The words of text queries are embedded here, in the server, before their search goes to a
worker: every text waiting, whichever worker its search will go to, in one model call, and
kept for all workers. MiniLM's cost is mostly per call (reading its weights), not per text: 6
texts took 21.8 ms, 16 took 38.2 (one thread, 2026-12-04), and each worker embedding its own
batch's texts made two calls where one would do, and embedded again what the other had kept.
The server keeps what must be one (keys, rate limits, index runs, files, the texts' vectors);
workers end with it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from encoders.audio import AudioDecodeError
from encoders.processes import end_with_parent
import numpy as np

from encoders.threads import threads_limited
from search.config import load_settings
from search.engine import TEXTS_KEPT, KeptVectors, Results, Searcher
from search.library import Library
from search.query import Query, QueryError, Text

log = logging.getLogger(__name__)

# Requests a worker takes at once: enough to fill a model call, few enough to answer soon (a
# request waits for its whole batch). 32 clients on 2 workers, 2 cores: 8 gave 315-355
# requests/s, search p95 147-178 ms; 16 gave 281 and 201 ms; 4 gave 221 (2026-12-04).
BATCH = 8
# Texts embedded in one model call at most: 32 clients' texts, each waiting for at most one call.
TEXT_BATCH = 32
# What a search may rightly raise, handed to the caller as it is; anything else is a fault.
EXPECTED = (QueryError, PermissionError, AudioDecodeError)

_searcher: Searcher | None = None
_threads: ThreadPoolExecutor | None = None


class SearchUnavailable(RuntimeError):
    """A worker died (killed, out of memory); the next request gets new ones."""


class SearchProcesses:
    """``await search(query, **options)``: ``Searcher.search`` run by ``processes`` worker
    processes, awaited in the server's event loop. Requests that come while every worker is
    busy wait, and go together (at most BATCH) to the first worker free. No server thread waits
    for a search: a thread per request, handing over to the next, cost a quarter of the
    server's time."""

    def __init__(self, library: Library, processes: int, max_clip_seconds: float | None):
        self.library, self.settings = library, library.settings
        self.processes, self.max_clip_seconds = processes, max_clip_seconds
        self.executor = self._start()
        self._waiting: collections.deque[tuple[tuple, asyncio.Future]] = collections.deque()
        self._running = 0  # batches at the workers; only the event loop changes these
        # Texts' vectors, kept for every worker; texts being embedded or waiting to be, with
        # what their askers await; one model call at a time, on a thread of its own.
        self.kept_texts = KeptVectors(TEXTS_KEPT)
        self._texts_asked: dict[str, asyncio.Future] = {}
        self._texts_queued: list[str] = []
        self._embedding = False
        self._embedder = ThreadPoolExecutor(1, thread_name_prefix="embed-texts")

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the server may hold threads and a loaded library already.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_open, initargs=(self.settings.environment(), self.max_clip_seconds))

    def wait_ready(self) -> None:
        """Start every worker and wait until each has its model and calibration; load the model
        here too, for the texts."""
        for future in [self.executor.submit(_ready) for _ in range(self.processes)]:
            future.result()
        with self.library.reading():
            log.debug("texts embedded here by %s", self.library.encoder.name)  # loads it, checked against the index

    async def search(self, query: Query | None, **options) -> Results:
        vectors = await self._text_vectors(query) if query is not None else {}
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(((query, options, vectors), answer))
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

    async def _text_vectors(self, query: Query) -> dict[str, np.ndarray]:
        """text -> vector for ``query``'s texts: kept ones, the others embedded with every other
        text waiting. A text whose embedding failed is left out: the worker embeds it again, and
        the search fails alone if that fails too."""
        vectors: dict[str, np.ndarray] = {}
        asked: dict[str, asyncio.Future] = {}
        for text in dict.fromkeys(term.source.text for term in query.terms if isinstance(term.source, Text)):
            kept = self.kept_texts.get(text)
            if kept is not None:
                vectors[text] = kept
            else:
                asked[text] = self._texts_asked.get(text) or self._ask(text)
        if asked:
            self._embed_queued()
            for text, future in asked.items():
                # Shielded: a client that goes away cancels its own wait, not others' for the same text.
                vector = await asyncio.shield(future)
                if vector is not None:
                    vectors[text] = vector
        return vectors

    def _ask(self, text: str) -> asyncio.Future:
        future = self._texts_asked[text] = asyncio.get_running_loop().create_future()
        self._texts_queued.append(text)
        return future

    def _embed_queued(self) -> None:
        """Start a model call for the texts queued, unless one is running: texts that come
        meanwhile go together in the next."""
        if self._embedding or not self._texts_queued:
            return
        texts, self._texts_queued = self._texts_queued[:TEXT_BATCH], self._texts_queued[TEXT_BATCH:]
        self._embedding = True
        done = asyncio.get_running_loop().run_in_executor(self._embedder, self._embed, texts)
        done.add_done_callback(functools.partial(self._embedded, texts))

    def _embed(self, texts: list[str]) -> np.ndarray:
        # One thread: the cores are the workers'.
        with threads_limited(1):
            vectors = self.library.encoder.embed_text(texts)
        vectors.flags.writeable = False  # each row is shared by every later query of its text
        return vectors

    def _embedded(self, texts: list[str], done: asyncio.Future) -> None:
        self._embedding = False
        failed = done.cancelled() or done.exception() is not None
        if failed:
            log.error("embedding %d texts failed; the workers embed them", len(texts),
                      exc_info=None if done.cancelled() else done.exception())
        for at, text in enumerate(texts):
            vector = None if failed else done.result()[at]
            if vector is not None:
                self.kept_texts.put(text, vector)
            self._texts_asked.pop(text).set_result(vector)
        self._embed_queued()

    def close(self) -> None:
        self._embedder.shutdown(wait=True, cancel_futures=True)
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


def _search_batch(requests: list[tuple[Query | None, dict, dict[str, np.ndarray]]]) -> list:
    for _, _, vectors in requests:  # embedded by the server
        for text, vector in vectors.items():
            if not _searcher.kept_texts.holds(text):
                _searcher.kept_texts.put(text, vector, ahead=True)
    try:  # what the server could not embed, in one call
        _searcher.embed_texts_ahead(query for query, _, _ in requests)
    except Exception:  # each search embeds its own words again, and fails alone if they fail
        log.exception("embedding a batch's texts failed")
    return list(_threads.map(_search_one, requests))


def _search_one(request: tuple[Query | None, dict, dict]):
    query, options, _ = request
    try:
        return _searcher.search(query, **options)
    except EXPECTED as expected:  # one bad query fails alone, not its batch
        return expected
    except Exception as error:
        log.exception("search %s failed", query)
        return RuntimeError(f"the search failed: {error}")
