"""Queries to ranked files: embed the query, find the nearest windows, rank files by their best.

The vector store holds one vector per window; a file is as relevant as its best-matching
window, and a hit says where in the file that window is. Filters become the set of window
ids the store may return, so they act inside the vector search and a selective filter
still fills a page. Keywords rank files on their own; the two rankings are fused by
weighted reciprocal rank.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from encoders.audio import load_audio, resample, to_mono, windows
from search import keyword as keywords
from search import relevance
from search.batching import Gathered
from search.catalog import INDEXED, PENDING, File, Listed, Span, Window
from search.catalog import SORTS as CATALOG_SORTS
from search.filters import Filters
from search.library import Library
from search.query import Clip, Query, QueryError, Sound, Text
from search.relevance import level as _level
from search.store import unit_vector

log = logging.getLogger(__name__)

# Windows fetched per wanted file at first; files with many close windows need more.
OVERSAMPLE = 8
# Files ranked per query. Pages and the other sort orders work within these: sorting the
# whole library by name is a listing, not a search.
RESULT_LIMIT = 500
# A filter that passes at least 1/BROAD of the best files is applied to the unfiltered ranking,
# ranked that many times deeper (``Searcher._rank_filtered``).
BROAD = 2
SELECTIVE_KEPT = 256  # filters remembered as selective
# The windows of recent filters are kept for their next searches, up to this many bytes of ids:
# listing a folder of 5% of the library took 45-85 ms of a search's 100 at 10^6 files, where a
# publisher's 142,000 windows take 0.6 MB kept (docs/benchmarks.md, section 6).
ALLOWED_KEPT_BYTES = 16 * 2**20
# Reciprocal rank fusion's constant: how much rank 1 outweighs rank 10 (60 is the usual choice).
RRF_K = 60
SORTS = ("relevance", *CATALOG_SORTS)
# Texts whose vectors are kept (a 1024-d vector: 4 kB, so 16 MB at most): people repeat
# queries, and a server's users share them; embedding one costs more than the rest of a search.
TEXTS_KEPT = 4096
# Rankings kept for their searches' next pages (500 files each: about 60 kB).
RANKINGS_KEPT = 64
# Threads ranking the keywords of searches that have words or sounds too, while the caller embeds
# them and searches the vectors: a search's two halves take the time of the longer, not of both.
KEYWORD_THREADS = 4


@dataclasses.dataclass(frozen=True)
class Hit:
    path: str  # absolute
    score: float | None  # cosine similarity of the best window, in [-1, 1]; None without a sound query
    start: float  # seconds: where the best window is in the file
    end: float
    duration: float | None
    file_id: int
    window_id: int | None  # None: catalogued, not embedded yet (found by keywords or filters)
    name: str
    folder: str
    root: str
    size: int
    mtime: float  # the file's version, as catalogued
    sample_rate: int | None
    channels: int | None
    codec: str | None
    format: str | None = None  # "wav", "flac", "mp3"... as filters name it
    bit_depth: int | None = None
    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    ucs_cat_id: str | None = None  # "DOORWood"
    ucs_category: str | None = None  # "DOOR"
    suggested: tuple[tuple[str, float], ...] = ()  # UCS CatIDs ``clapdex tag`` suggests, (CatID, confidence)
    accepted: str | None = None  # the suggested CatID a person accepted
    suggested_tags: tuple[tuple[str, str, float], ...] = ()  # descriptive tags suggested: (group, tag, confidence)
    keyword_match: bool = False  # the file matched the keywords
    relevance: float | None = None  # the score placed among this library's (search.relevance)
    match: str | None = None  # "strong", "fair" or "weak"

    @classmethod
    def of_file(cls, file: File | Listed, keyword_match: bool = False, *, window: Window | Span | None = None,
                score: float | None = None, relevance: float | None = None) -> Hit:
        """A hit on ``file`` at ``window``; without one (not embedded yet), the whole file;
        ``relevance``: its score placed among the library's (search.relevance)."""
        return cls(
            path=file.path, score=score, start=window.start if window else 0.0,
            end=window.end if window else file.duration or 0.0, duration=file.duration,
            file_id=file.id, window_id=window.id if window else None, name=file.name, folder=file.folder,
            root=file.root, size=file.size, mtime=file.mtime, sample_rate=file.sample_rate, channels=file.channels, codec=file.codec,
            format=file.format, bit_depth=file.bit_depth, title=file.title, description=file.description,
            tags=tuple(file.tags), ucs_cat_id=file.ucs_cat_id, ucs_category=file.ucs_category,
            suggested=tuple(getattr(file, "suggested", ())), accepted=getattr(file, "accepted", None),
            suggested_tags=tuple(getattr(file, "suggested_tags", ())),
            keyword_match=keyword_match, relevance=relevance, match=_level(relevance),
        )

    @property
    def folder_in_library(self) -> str:
        """The folder as the user knows it: from the library root's own name down."""
        return below_root(self.folder, self.root)

    def to_dict(self) -> dict:
        fields = {name: getattr(self, name) for name in _HIT_FIELDS}  # not asdict(): no deep copies needed
        fields["tags"] = list(self.tags)
        fields["suggested"] = [{"cat_id": cat_id, "confidence": confidence} for cat_id, confidence in self.suggested]
        fields["suggested_tags"] = [{"group": group, "tag": tag, "confidence": confidence}
                                    for group, tag, confidence in self.suggested_tags]
        return fields


_HIT_FIELDS = tuple(field.name for field in dataclasses.fields(Hit))


def below_root(folder: str, root: str) -> str:
    """``folder`` (inside ``root``) from the root's own name down: "sfx/doors/wood"."""
    return os.path.join(os.path.basename(root.rstrip(os.sep)), os.path.relpath(folder, root)).removesuffix(os.sep + ".")


@dataclasses.dataclass(frozen=True)
class Results:
    hits: list[Hit]  # this page's
    total: int  # files ranked, at most RESULT_LIMIT
    page: int  # from 0
    page_size: int
    best_score: float | None = None  # the highest cosine of the search, on any page
    best_match: str | None = None  # how well the best hit matches: "strong", "fair", "weak"

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


class WindowFiles:
    """Window id -> file id, learned from the catalog as searches meet windows.

    A search ranks files by their windows: 800 window ids a query, which cost 25 ms of SQL each
    time at 10^5 windows. Window ids are never reused (autoincrement on SQLite, sequences on
    PostgreSQL) and a window never changes file, so what is learned stays true; only ids not
    seen yet (new windows) go to the catalog. Windows whose file is gone are never learned; a
    file deleted after is no longer in the store, and if another process's deletion is not seen
    yet, its hit finds no file record and is dropped (``_hits``).
    """

    def __init__(self):
        self.files = np.full(0, -1, dtype=np.int64)
        self.lock = threading.Lock()  # concurrent searches learn into the same array
        # Every window up to this id is known (``learn_all``); -1: not learned whole.
        self.whole_up_to = -1

    def of(self, ids: np.ndarray, ask) -> np.ndarray:
        """The file id of each of ``ids`` (-1: none, or no such window); ``ask(ids) -> {window: file}``
        answers for those not learned yet."""
        with self.lock:
            return self._of(np.asarray(ids, dtype=np.int64), ask)

    def learn_all(self, window_ids: np.ndarray, file_ids: np.ndarray) -> None:
        """Learn every window at once (a server's start), so no search asks the catalog."""
        with self.lock:
            # Half the memory where file ids allow (three million windows: 12 MB instead of 24).
            compact = int(file_ids.max(initial=0)) < np.iinfo(np.int32).max
            files = np.full(int(window_ids.max(initial=-1)) + 1, -1, dtype=np.int32 if compact else np.int64)
            files[window_ids] = file_ids
            self.files = files
            self.whole_up_to = len(files) - 1

    def windows_of(self, file_ids: np.ndarray, catalog) -> np.ndarray | None:
        """The ids of the windows of ``file_ids`` (any order), in id order, the windows added since
        ``learn_all`` asked of ``catalog``; None if never learned whole. A window whose file was
        re-indexed may be among them: stores search only what they hold."""
        with self.lock:
            if self.whole_up_to < 0:
                return None
            window_ids, owners = catalog.window_files(after=self.whole_up_to)
            if len(window_ids):
                self._of(window_ids, lambda ids: {})  # grows the array
                self._fit(owners)
                self.files[window_ids] = owners
                self.whole_up_to = int(window_ids.max())
            files = self.files
        if not len(file_ids):
            return np.empty(0, np.int64)
        passing = np.zeros(max(int(file_ids.max()), int(files.max(initial=-1))) + 2, dtype=bool)
        passing[file_ids] = True  # files[-1 (unknown)] reads the last slot, never a file
        return np.flatnonzero(passing[files])

    def _fit(self, file_ids: np.ndarray) -> None:
        """Widen the array to 64 bits if ``file_ids`` need it."""
        if self.files.dtype != np.int64 and int(file_ids.max(initial=0)) > np.iinfo(self.files.dtype).max:
            self.files = self.files.astype(np.int64)

    def _of(self, ids: np.ndarray, ask) -> np.ndarray:
        valid = ids >= 0
        if valid.any() and ids.max() >= len(self.files):
            grown = np.full(max(int(ids.max()) + 1, len(self.files) * 3 // 2), -1, dtype=self.files.dtype)
            grown[: len(self.files)] = self.files
            self.files = grown
        found = np.where(valid, self.files[np.where(valid, ids, 0)], -1)
        unknown = ids[valid & (found < 0)]
        if len(unknown):
            answers = ask(unknown.tolist())
            self._fit(np.fromiter(answers.values(), dtype=np.int64, count=len(answers)))
            for window_id, file_id in answers.items():
                self.files[window_id] = file_id
            found = np.where(valid, self.files[np.where(valid, ids, 0)], -1)
        return found


class KeptVectors:
    """The ``most`` vectors last asked for, by key (a text), with how often one asked for was
    found kept (``hits``) or had to be made (``misses``). A vector made ahead of its asking
    (``put(..., ahead=True)``: a server's batch) is that asking's miss, counted when it asks."""

    def __init__(self, most: int):
        self.most = most
        self.hits = self.misses = 0
        self._kept: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._ahead: set[str] = set()  # made ahead, not asked for since
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            vector = self._kept.get(key)
            if vector is None or key in self._ahead:
                self.misses += 1
                self._ahead.discard(key)
            else:
                self.hits += 1
            if vector is not None:
                self._kept.move_to_end(key)
            return vector

    def holds(self, key: str) -> bool:
        """Whether ``key``'s vector is kept, counting nothing: looking ahead is not asking."""
        with self._lock:
            return key in self._kept

    def put(self, key: str, vector: np.ndarray, ahead: bool = False) -> None:
        with self._lock:
            self._kept[key] = vector
            self._kept.move_to_end(key)
            if ahead:
                self._ahead.add(key)
            if len(self._kept) > self.most:
                self._ahead.discard(self._kept.popitem(last=False)[0])

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._ahead.clear()
            self.hits = self.misses = 0


class KeptRankings:
    """The rankings of recent searches by sound, for their next pages and their repeats, while
    the store and the catalog stay as they were.

    Each page of a search ranks the same files again; with 4-bit codes a deep page re-scores
    thousands of rows to order them exactly (8,000 for the 500 files), so the second page ranks
    every file exactly once, and the pages after it read that ranking."""

    def __init__(self, most: int = RANKINGS_KEPT):
        self.most = most
        self._kept: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
        self._lock = threading.Lock()  # concurrent searches keep into the same dictionary

    def get(self, key: tuple, state: tuple, exact_files: int):
        """What was kept for ``key`` in ``state`` exact at least ``exact_files`` deep, or None."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or kept[0] != state or kept[1] < exact_files:
                return None
            self._kept.move_to_end(key)
            return kept[2]

    def put(self, key: tuple, state: tuple, exact_files: int, ranking) -> None:
        """Keep ``ranking``, unless its state has no catalog generation (a catalog made before
        generations were written: its changes cannot be seen)."""
        if state[-1] is None:
            return
        with self._lock:
            self._kept[key] = (state, exact_files, ranking)
            self._kept.move_to_end(key)
            while len(self._kept) > self.most:
                self._kept.popitem(last=False)


class AllowedWindows:
    """The windows each recent filter lets through, kept while the catalog's generation stays.

    A user searches one folder with one word after another: its windows are the same until a
    commit changes files, windows or tags, which gives the catalog a new generation. A catalog
    with no generation yet (made before they were kept) is asked every time."""

    def __init__(self, budget: int = ALLOWED_KEPT_BYTES):
        self.budget = budget
        self._kept: collections.OrderedDict[Filters, tuple[str, np.ndarray]] = collections.OrderedDict()
        self._lock = threading.Lock()  # concurrent searches keep into the same dictionary

    def of(self, filters: Filters, generation: str | None, compute) -> np.ndarray | None:
        """The window ids ``filters`` allow at ``generation``: kept ones, or ``compute()``'s (None:
        it declined to list them, and nothing is kept)."""
        if generation is None:
            return compute()
        with self._lock:
            kept = self._kept.get(filters)
            if kept is not None and kept[0] == generation:
                self._kept.move_to_end(filters)
                return kept[1]
        ids = compute()
        if ids is None:  # too many to list (``Searcher._narrow_folder``): nothing kept
            return None
        ids = np.asarray(ids)
        if len(ids) and int(ids.max()) <= np.iinfo(np.int32).max:
            ids = ids.astype(np.int32)  # half the memory; stores take any integer array
        ids.flags.writeable = False  # shared by every later search of the filter
        with self._lock:
            for stale in [other for other, (seen, _) in self._kept.items() if seen != generation]:
                del self._kept[stale]
            self._kept[filters] = (generation, ids)
            self._kept.move_to_end(filters)
            while sum(kept.nbytes for _, kept in self._kept.values()) > self.budget:
                self._kept.popitem(last=False)  # the least recently searched (this one, if it alone is too big)
        return ids


def _remember(kept: collections.OrderedDict, filters: Filters) -> None:
    """Add ``filters`` to ``kept``, the least recent dropped past SELECTIVE_KEPT."""
    kept[filters] = None
    kept.move_to_end(filters)
    if len(kept) > SELECTIVE_KEPT:
        kept.popitem(last=False)


class Searcher:
    """The query side of a ``Library``: queries embedded by its model, ranked over its store.

    ``library_only`` is for the page: sounds named in a query must then be indexed files
    inside the library roots, and clips are cut to ``max_clip_seconds``. The command line
    leaves it off, so ``clapdex similar ~/Downloads/x.wav`` reads any file its user can.
    One Searcher serves any number of threads (a server's requests, the page's sessions) at
    once: each reads the catalog through its own session, and the words of concurrent text
    queries are embedded together, in one batch. Whoever opened the library closes it.
    """

    def __init__(self, library: Library, *, library_only: bool = False, max_clip_seconds: float | None = None):
        self.library = library
        self.settings = library.settings
        self.library_only = library_only
        self.max_clip_seconds = max_clip_seconds
        self._pinned = threading.local()  # the store one search uses from start to end
        # Typing a query, then paging and filtering, embeds the same words again and again; words
        # not embedded yet that several threads ask for at once are embedded in one model call.
        self.kept_texts = KeptVectors(TEXTS_KEPT)
        self._embed_new_text = Gathered(self._embed_texts)
        self._embed_clip_bytes = functools.lru_cache(maxsize=16)(self._embed_clip_bytes_uncached)
        self._calibration: tuple[int, relevance.Calibration] | None = None
        self._calibrating = threading.Lock()
        self._window_files = WindowFiles()
        self._allowed = AllowedWindows()
        self._rankings = KeptRankings()
        # Filters found selective: their next searches (the pages, other words) go straight to
        # the windows they allow instead of ranking the whole library first.
        self._selective: collections.OrderedDict[Filters, None] = collections.OrderedDict()
        # Folder filters found too large to search within their windows from the start.
        self._not_narrow: collections.OrderedDict[Filters, None] = collections.OrderedDict()
        # Its threads last, each with its catalog session: a session remembers the filters it
        # found broad (``Catalog.keyword_ranked``).
        self._keyword_threads = concurrent.futures.ThreadPoolExecutor(KEYWORD_THREADS, thread_name_prefix="keywords")

    @property
    def store(self):
        """The library's vector store; within one search, the one it started with, even if an
        index run's save replaces it meanwhile (``Library.store``)."""
        return getattr(self._pinned, "store", None) or self.library.store

    @property
    def catalog(self):
        """The catalog as this thread reads it (``Library.thread_catalog``)."""
        return self.library.thread_catalog

    @property
    def encoder(self):
        """The library's model, loaded by the first query that needs it: keywords and filters
        alone never load it."""
        return self.library.encoder

    # --- the one search

    def search(
        self,
        query: Query | None = None,
        *,
        filters: Filters = Filters(),
        keywords_text: str = "",
        keyword_weight: float = 0.5,
        page: int = 0,
        page_size: int = 10,
        sort: str = "relevance",
    ) -> Results:
        """Files matching ``query`` (texts and sounds) and/or ``keywords_text``, within ``filters``.

        ``keyword_weight`` in [0, 1] is the keywords' share of the fused ranking: 0 ranks by
        sound alone (keywords only mark hits), 1 by keywords alone (the sound query only
        scores them).
        """
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
        if not 0 <= keyword_weight <= 1:
            raise QueryError("the keyword weight is a share between 0 and 1")
        keyword_query = keywords.parse_keywords(keywords_text)
        started = time.perf_counter()
        with self._store_pinned(), self.library.reading():
            if filters.suggested and not self.catalog.tagged_ever():  # nothing suggested: nothing to add
                filters = dataclasses.replace(filters, suggested=False)
            excluded = None
            if query is not None and query.exclude_path is not None:
                excluded = self.catalog.located(os.path.abspath(query.exclude_path))
            exclude_id = excluded.id if excluded else None
            if query and sort == "relevance" and not keyword_query:
                vector = self.embed_query(query)
                ranked, best_score = self._ranked_to(vector, filters, keyword_query, exclude_id, page, page_size)
            else:  # other sorts and the keywords' fusion use the whole ranking, in the store's order
                # The keywords' ranking needs neither the query's vector nor the store's: with a
                # sound query, the catalog's database ranks them meanwhile.
                by_keyword = self._keyword_threads.submit(self._keyword_ranked, keyword_query, filters, exclude_id) \
                    if keyword_query and query else None
                try:
                    vector = self.embed_query(query) if query else None
                    ranked, best_score = self._rank(vector, filters, keyword_query, keyword_weight, exclude_id,
                                                    keywords_ranked=by_keyword)
                finally:
                    if by_keyword is not None:
                        by_keyword.cancel()  # if the embedding failed: the error is the caller's, not the keywords'
            ranked = self._sorted(ranked, sort)
            shown = ranked[page * page_size : (page + 1) * page_size]
            # Words and sounds mixed in one query score on a scale of their own, which neither
            # reference knows: such hits carry their cosine only.
            placed = self.calibration() if vector is not None and not (query.has_sound and query.has_text) else None
            placing = functools.partial(placed.relevance, sound_query=query.has_sound) if placed else None
            hits = self._hits(shown, vector, {file_id for file_id, _, matched in ranked if matched}, placing)
            best_match = relevance.level(placing(best_score)) if placing and best_score is not None else None
        log.debug("search %s, keywords %r, %s: %d files ranked in %.1f ms", query, keywords_text, filters,
                  len(ranked), 1000 * (time.perf_counter() - started))
        return Results(hits, len(ranked), page, page_size, best_score, best_match)

    def _ranked_to(self, vector: np.ndarray, filters: Filters, no_keywords: keywords.KeywordQuery,
                   exclude_id: int | None, page: int, page_size: int) -> tuple[tuple[tuple[int, float, bool], ...], float | None]:
        """``_rank`` for a search by sound alone, in relevance order, exact as deep as ``page``
        shows: the first page's files only (a compressed store re-scores few rows), the whole
        ranking from the second page on, kept for the pages after it (``KeptRankings``)."""
        exact_files = (page + 1) * page_size if page == 0 else RESULT_LIMIT
        key = (vector.tobytes(), filters, exclude_id)
        state = (id(self.store), len(self.store), self.catalog.generation())
        kept = self._rankings.get(key, state, exact_files)
        if kept is None:
            ranked, best_score = self._rank(vector, filters, no_keywords, 0.0, exclude_id, exact_files)
            kept = (tuple(ranked), best_score)
            self._rankings.put(key, state, exact_files, kept)
        return kept

    @contextlib.contextmanager
    def _store_pinned(self) -> Iterator[None]:
        """``store`` stays the one it is now until the end, in this thread."""
        self._pinned.store = self.library.store
        try:
            yield
        finally:
            self._pinned.store = None

    def calibration(self) -> relevance.Calibration:
        """This library's reference scores (search.relevance), computed once per state of the store:
        a library that grows gets a new one. Servers call it at start, so no query waits for it,
        nor for learning which file each window belongs to."""
        with self.library.reading() as catalog, self._calibrating:
            if self._calibration is None or self._calibration[0] != len(self.store):
                self._window_files.learn_all(*catalog.window_files())
                self._calibration = (len(self.store), relevance.calibrate(
                    self.encoder.embed_text, self.store, catalog.file_ids_of_windows,
                ))
            return self._calibration[1]

    # --- embedding queries

    def embed_query(self, query: Query) -> np.ndarray:
        """The unit vector of the weighted sum of the terms' unit vectors."""
        with self.library.reading():
            total = np.zeros(self.encoder.dim, np.float32)
            for term in query.terms:
                total += term.weight * self._embed_source(term.source)
            if not np.linalg.norm(total) > 1e-6:
                raise QueryError("the query's terms cancel out; change a weight or remove a term")
            return unit_vector(total)

    def embed_text(self, text: str) -> np.ndarray:
        """The unit vector of ``text``, kept for its next queries."""
        vector = self.kept_texts.get(text)
        if vector is None:
            vector = self._embed_new_text(text)
            self.kept_texts.put(text, vector)
        return vector

    def embed_texts_ahead(self, queries: Iterable[Query | None]) -> None:
        """Embed, in one model call, the texts of ``queries`` not kept yet: a server handed
        several queries at once, whose threads would each start a model call of its own."""
        texts = list(dict.fromkeys(term.source.text for query in queries if query is not None for term in query.terms
                                   if isinstance(term.source, Text) and not self.kept_texts.holds(term.source.text)))
        if texts:
            with self.library.reading():
                for text, vector in zip(texts, self._embed_texts(texts)):
                    self.kept_texts.put(text, vector, ahead=True)

    def _embed_source(self, source: Text | Sound | Clip) -> np.ndarray:
        if isinstance(source, Text):
            return self.embed_text(source.text)
        if isinstance(source, Clip):
            return self._embed_clip_bytes(source.data, source.name)
        return self._embed_sound(source)

    def _embed_texts(self, texts: list[str]) -> list[np.ndarray]:
        vectors = self.encoder.embed_text(texts)
        vectors.flags.writeable = False  # each row is shared by every later query of its text
        return list(vectors)

    def _embed_clip_bytes_uncached(self, data: bytes, name: str) -> np.ndarray:
        clip = io.BytesIO(data)
        clip.name = name  # the decoder guesses the format from it
        rate = self.encoder.sample_rate
        samples = load_audio(clip, rate)
        if self.max_clip_seconds is not None:
            samples = samples[: round(self.max_clip_seconds * rate)]
        vector = self.embed_clip(samples, rate)
        vector.flags.writeable = False
        return vector

    def _embed_sound(self, sound: Sound) -> np.ndarray:
        path = self._sound_path(sound.path)
        record = self.catalog.located(str(path))
        if record is not None and record.status == INDEXED:
            # An indexed file's vectors are stored: a whole file, or one of its windows, is free.
            stored = [w for w in self.catalog.window_spans(record.id)
                      if not sound.is_region or (w.start, w.end) == (sound.start, sound.end)]
            if stored:
                vectors = self.store.reconstruct(np.array([w.id for w in stored], dtype=np.int64))
                return unit_vector(vectors.mean(axis=0))
        rate = self.encoder.sample_rate
        samples = load_audio(path, rate)
        if sound.is_region:
            samples = samples[round(sound.start * rate) : round(sound.end * rate)]
            if len(samples) == 0:
                raise QueryError(f"{sound} lies past the end of the file")
        return self.embed_clip(samples, rate)

    def _sound_path(self, path: str) -> Path:
        """Where a query's sound is: for the page, only an indexed library file (a bare name is
        looked up); for the command line, any file."""
        if not self.library_only:
            found = Path(os.path.abspath(os.path.expanduser(path)))
            if not found.is_file():
                raise QueryError(f"{path}: no such audio file (a path with ' + ' or ' - ' in it goes in quotes: "
                                 f"'\"{path}\"')")
            return found
        if os.path.isabs(path):
            return self.library_file(path)
        named = self.catalog.indexed_paths_named(os.path.basename(path))
        if not named:
            raise QueryError(f"no file named {os.path.basename(path)} is indexed in this library")
        if len(named) > 1:
            raise QueryError(f"several files are named {os.path.basename(path)}; give its full path")
        return self.library_file(named[0])

    def embed_clip(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """One unit vector for a clip of any length: the mean of its windows' embeddings."""
        rate = self.encoder.sample_rate
        mono = resample(to_mono(samples), sample_rate, rate)
        if len(mono) == 0:
            raise QueryError("the query clip is empty")
        pieces = [window.samples for window in windows(mono, rate, self.encoder.window_seconds)]
        embedded = self.encoder.embed_audio(pieces, batch_size=self.settings.batch_size or None)
        return unit_vector(embedded.mean(axis=0))

    # --- serving files

    def library_file(self, path: str | os.PathLike) -> Path:
        """``path``, resolved, if it is an indexed file inside its library root; else PermissionError."""
        return self.library.served_file(path)

    # --- ranking

    def _rank(
        self,
        vector: np.ndarray | None,
        filters: Filters,
        keyword_query: keywords.KeywordQuery,
        keyword_weight: float,
        exclude_id: int | None,
        exact_files: int | None = None,
        keywords_ranked: concurrent.futures.Future | None = None,
    ) -> tuple[list[tuple[int, float, bool]], float | None]:
        """(file id, relevance, matched the keywords), best first, at most RESULT_LIMIT; and the
        best cosine of any file (None without a sound query). Files past ``exact_files`` may be in
        the order of the store's codes (``VectorStore.search``'s ``exact``). ``keywords_ranked``:
        the keywords' ranking (``_keyword_ranked``) under way on another thread, if it is."""
        by_vector: list[tuple[int, float]] = []
        if vector is not None:
            by_vector = self._rank_filtered(vector, filters, exclude_id, exact_files)
        best_score = by_vector[0][1] if by_vector else None
        if not keyword_query:
            if vector is None:  # filters alone: a listing of what they let through
                return [(file_id, 0.0, False) for file_id in self.catalog.listed(filters, RESULT_LIMIT)], None
            return [(file_id, score, False) for file_id, score in by_vector], best_score
        # Without a sound query, files the scan has catalogued but not yet embedded are found too.
        by_keyword = keywords_ranked.result() if keywords_ranked is not None else \
            self.catalog.keyword_ranked(keyword_query, filters, pending=vector is None, exclude_id=exclude_id,
                                        limit=RESULT_LIMIT)
        if vector is None:
            return [(file_id, 1.0 / (RRF_K + rank), True) for rank, file_id in enumerate(by_keyword, 1)], None
        fused: dict[int, float] = {}
        for rank, (file_id, _) in enumerate(by_vector, 1):
            fused[file_id] = (1 - keyword_weight) / (RRF_K + rank)
        for rank, file_id in enumerate(by_keyword, 1):
            fused[file_id] = fused.get(file_id, 0.0) + keyword_weight / (RRF_K + rank)
        matched = set(by_keyword)
        ranked = sorted(
            ((file_id, relevance, file_id in matched) for file_id, relevance in fused.items() if relevance > 0),
            key=lambda item: item[1], reverse=True,
        )
        return ranked[:RESULT_LIMIT], best_score

    def _keyword_ranked(self, keyword_query: keywords.KeywordQuery, filters: Filters, exclude_id: int | None) -> list[int]:
        """``Catalog.keyword_ranked`` of a search with a sound query (embedded files only), run
        on one of the keyword threads, through that thread's catalog session."""
        with self.library.reading() as catalog:
            return catalog.keyword_ranked(keyword_query, filters, exclude_id=exclude_id, limit=RESULT_LIMIT)

    def _rank_filtered(self, vector: np.ndarray, filters: Filters, exclude_file_id: int | None,
                       exact_files: int | None = None) -> list[tuple[int, float]]:
        """``_rank_by_vector`` within ``filters``. A broad filter (a duration most files have, a
        common format) is applied to the files of a deeper unfiltered ranking: the windows it
        allows are millions at 10^6 files, seconds to list, where checking a thousand files
        takes milliseconds. Where too few of those pass, the store searches the allowed windows."""
        by_catalog = not self.store.keeps_payload or filters.in_catalog_only
        if filters and by_catalog and filters not in self._selective:
            narrow = self._narrow_folder(filters)
            if narrow is not None:
                _remember(self._selective, filters)
                return self._rank_by_vector(vector, narrow, exclude_file_id, exact_files=exact_files)
            passing = self._passing_of_unfiltered(vector, filters, exclude_file_id, exact_files)
            if passing is not None:
                return passing
        return self._rank_by_vector(vector, self._restriction(filters), exclude_file_id, exact_files=exact_files)

    def _passing_of_unfiltered(self, vector: np.ndarray, filters: Filters, exclude_file_id: int | None,
                               exact_files: int | None) -> list[tuple[int, float]] | None:
        """The best RESULT_LIMIT files passing ``filters`` among a deeper unfiltered ranking, or
        None where too few of its best pass (``filters`` is then remembered as selective) or it
        holds too few that do."""
        ranked = self._rank_by_vector(vector, {}, exclude_file_id, limit=BROAD * RESULT_LIMIT,
                                      exact_files=exact_files and BROAD * exact_files)
        kept: list[tuple[int, float]] = []
        for at in range(0, len(ranked), RESULT_LIMIT):
            chunk = ranked[at : at + RESULT_LIMIT]
            passing = self.catalog.passing([file_id for file_id, _ in chunk], filters)
            kept += [item for item in chunk if item[0] in passing]
            if len(kept) >= RESULT_LIMIT:
                return kept[:RESULT_LIMIT]  # any other file that passes ranks lower
            if len(passing) * BROAD < len(chunk):
                _remember(self._selective, filters)
                break
        return None

    def _narrow_folder(self, filters: Filters) -> dict | None:
        """The store's restriction for a folder filter that allows at most 1/(2 BROAD) of the
        windows, or None (another filter, a larger folder). Such a filter would fail the
        unfiltered ranking's test (half its best files passing) all but always, and that try cost
        a folder's first search at 10^6 files a ranking of 1,000 files and a check of 500 in the
        catalog; a folder's files come from the paths' index, counted as they are listed, and
        listing them is the first step of searching within them anyway."""
        if not filters.folders or filters in self._not_narrow:
            return None
        most = len(self.store) // (2 * BROAD)  # windows; a file has at least one
        allowed = self._allowed.of(filters, self.catalog.generation(), lambda: self._allowed_windows(filters, most))
        if allowed is not None and len(allowed) <= most:
            return {"allowed_ids": allowed}
        _remember(self._not_narrow, filters)  # its next searches list nothing for this test again
        return None

    def _restriction(self, filters: Filters) -> dict:
        """How the store is told ``filters``: as its own payload filter where it keeps the
        metadata beside the vectors (Qdrant), else as the windows the catalog lets through."""
        if not filters:
            return {}
        if self.store.keeps_payload and not filters.in_catalog_only:
            return {"filters": filters}
        return {"allowed_ids": self._allowed.of(filters, self.catalog.generation(), lambda: self._allowed_windows(filters))}

    def _allowed_windows(self, filters: Filters, files_at_most: int | None = None) -> np.ndarray | None:
        """The windows ``filters`` allow; None if more than ``files_at_most`` files pass."""
        # The files from the catalog, their windows from what this Searcher knows of each window:
        # reading 142,000 window ids from the catalog (a folder of 5% at 10^6 files) took 0.5 s.
        file_ids = self.catalog.file_ids_matching(filters, at_most=files_at_most)
        if file_ids is None:
            return None
        allowed = self._window_files.windows_of(file_ids, self.catalog)
        return self.catalog.window_ids_matching(filters) if allowed is None else allowed

    def _rank_by_vector(
        self, vector: np.ndarray, restriction: dict, exclude_file_id: int | None, limit: int = RESULT_LIMIT,
        exact_files: int | None = None,
    ) -> list[tuple[int, float]]:
        """(file id, best window's cosine) for the ``limit`` nearest files, best first; those past
        the first ``exact_files`` (None: as deep as the store chooses) may be in the order of its
        codes."""
        allowed = restriction.get("allowed_ids")
        total = len(self.store) if allowed is None else len(allowed)
        wanted = min(total, limit * OVERSAMPLE)
        best: list[tuple[int, float]] = []
        while wanted > 0:
            # As many windows exactly as the wanted windows' share for those files.
            exact = None if exact_files is None else math.ceil(wanted * min(exact_files, limit) / limit)
            scores, ids = self.store.search(vector[np.newaxis], wanted, exact=exact, **restriction)
            best, files = self._best_score_per_file(scores[0], ids[0], exclude_file_id, limit)
            # Fewer than asked for: the filter let no more through.
            if files >= limit or wanted >= total or ids.shape[1] < wanted:
                break
            wanted = min(total, wanted * 4)
        return best

    def _best_score_per_file(
        self, scores: np.ndarray, ids: np.ndarray, exclude_file_id: int | None, limit: int
    ) -> tuple[list[tuple[int, float]], int]:
        """(file id, its best window's score) of the ``limit`` best files, best first (as the
        store ranks), and how many files the windows are of."""
        file_of = self._window_files.of(ids, self.catalog.file_ids_of_windows)
        kept = (file_of >= 0) & (file_of != (-1 if exclude_file_id is None else exclude_file_id))
        # Scores arrive best first, so a file's first window is its best.
        files, first = np.unique(file_of[kept], return_index=True)
        # The first windows' places, in order, cut before they become Python objects: 3,000
        # files met for a page of 500 made that the ranking's dearest step.
        chosen = np.sort(first)[:limit]
        return list(zip(file_of[kept][chosen].tolist(), scores[kept][chosen].tolist())), len(files)

    def _sorted(self, ranked: list[tuple[int, float, bool]], sort: str) -> list[tuple[int, float, bool]]:
        if sort == "relevance" or not ranked:
            return ranked
        keys = self.catalog.sort_keys([file_id for file_id, _, _ in ranked], sort)
        if sort == "name":
            return sorted(ranked, key=lambda item: keys[item[0]][1])
        return sorted(ranked, key=lambda item: keys[item[0]], reverse=CATALOG_SORTS[sort][1])

    def _hits(self, ranked: list, vector: np.ndarray | None, keyword_matches: set[int],
              placing: Callable[[float], float | None] | None = None) -> list[Hit]:
        """Hits for ``ranked`` files in that order, each at its best window for ``vector``
        (the first window without one), its score placed by ``placing`` (a calibration's
        ``relevance``) if given: the files in one query, their vectors in one call."""
        file_ids = [item[0] for item in ranked]
        records = self.catalog.files_with_windows(file_ids)
        scored = [window.id for record in records.values() for window in record.windows] if vector is not None else []
        scores = dict(zip(scored, (self.store.reconstruct(np.array(scored, dtype=np.int64)) @ vector).tolist())) \
            if scored else {}
        hits = []
        for file_id in file_ids:
            record = records.get(file_id)
            matched = file_id in keyword_matches
            if record is not None and vector is None and record.status == PENDING:
                hits.append(Hit.of_file(record, matched))
            elif record is not None and record.windows:
                if vector is None:
                    hits.append(Hit.of_file(record, matched, window=record.windows[0]))
                else:
                    best = max(record.windows, key=lambda window: scores[window.id])
                    share = placing(scores[best.id]) if placing else None
                    hits.append(Hit.of_file(record, matched, window=best, score=scores[best.id], relevance=share))
        return hits
