"""Searches for `clapdex serve`, in processes of their own.

A search is mostly Python (the catalog's rows, the ranking, the hits), and Python runs one
thread at a time per process: one process served about 100 requests/s on 2 cores however
many threads it had. So the server hands searches to worker processes, each with its own
Library and model, opened once. Concurrent requests are gathered into batches
while every worker is busy, and run on threads: while one waits for the catalog or the
vector index another computes (one after another gave 191 requests/s against 248 on threads,
2026-12-04). Torch and FAISS run on one thread each in a worker: the workers are the parallelism.

The words of text queries are embedded before their search is sent: the first worker free
embeds every text waiting, whichever worker its search will go to, in one model call, and the
server keeps the vectors for all workers. MiniLM's cost is mostly per call (reading its
weights), not per text: 6 texts took 21.8 ms, 16 took 38.2 (one thread, 2026-12-04), and each
worker embedding its own batch's texts made two calls where one would do, and embedded again
what the other had kept. (Embedding them on a thread of the server itself made that thread
the one stage of one core, and slower than main under load: docs/benchmarks.md, 3c.)
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
        # what their askers await.
        self.kept_texts = KeptVectors(TEXTS_KEPT)
        self._texts_asked: dict[str, asyncio.Future] = {}
        self._texts_queued: list[str] = []

    def _start(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the server may hold threads and a loaded library already.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_open, initargs=(self.settings.environment(), self.max_clip_seconds))

    def wait_ready(self) -> None:
        """Start every worker and wait until each has its model and calibration."""
        for future in [self.executor.submit(_ready) for _ in range(self.processes)]:
            future.result()

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
        """Hand what waits to the workers, a job per worker not busy: the texts waiting first
        (their searches wait for them), then batches of searches."""
        while (self._texts_queued or self._waiting) and self._running < self.processes:
            if self._texts_queued:
                texts, self._texts_queued = self._texts_queued[:TEXT_BATCH], self._texts_queued[TEXT_BATCH:]
                self._submit(_embed_texts, texts, functools.partial(self._embedded, texts))
            else:
                batch = [self._waiting.popleft() for _ in range(min(BATCH, len(self._waiting)))]
                self._submit(_search_batch, [request for request, _ in batch], functools.partial(self._answer, batch))

    def _submit(self, function, argument, done) -> None:
        executor = self.executor
        try:
            sent = asyncio.wrap_future(executor.submit(function, argument))
        except BrokenProcessPool as broken:
            sent = asyncio.get_running_loop().create_future()
            sent.set_exception(broken)
        self._running += 1
        sent.add_done_callback(functools.partial(done, executor))

    def _failure(self, executor: ProcessPoolExecutor, sent: asyncio.Future) -> BaseException | None:
        """What a job sent to ``executor`` failed with, if it failed; a dead worker starts new ones."""
        self._running -= 1
        error = sent.exception() if not sent.cancelled() else SearchUnavailable("the search was cancelled")
        if isinstance(error, BrokenProcessPool):
            if self.executor is executor:  # jobs failing together start one new pool
                log.error("a search process died; starting new ones")
                self.executor = self._start()
                executor.shutdown(wait=False, cancel_futures=True)
            error = SearchUnavailable("a search process stopped; try again")
        return error

    def _answer(self, batch: list, executor: ProcessPoolExecutor, sent: asyncio.Future) -> None:
        error = self._failure(executor, sent)
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
            self._send()
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

    def _embedded(self, texts: list[str], executor: ProcessPoolExecutor, sent: asyncio.Future) -> None:
        error = self._failure(executor, sent)
        if error is not None:
            log.error("embedding %d texts failed (%s); their searches embed them", len(texts), error)
        vectors = [None] * len(texts) if error is not None else sent.result()
        for text, vector in zip(texts, vectors):
            if vector is not None:
                vector.flags.writeable = False  # each is shared by every later query of its text
                self.kept_texts.put(text, vector)
            self._texts_asked.pop(text).set_result(vector)
        self._send()

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


def _embed_texts(texts: list[str]) -> list[np.ndarray]:
    return list(_searcher.encoder.embed_text(texts))


def _search_batch(requests: list[tuple[Query | None, dict, dict[str, np.ndarray]]]) -> list:
    for _, _, vectors in requests:  # embedded before
        for text, vector in vectors.items():
            if not _searcher.kept_texts.holds(text):
                _searcher.kept_texts.put(text, vector, ahead=True)
    try:  # what could not be embedded before, in one call
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
