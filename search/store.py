"""Vector stores: unit-length window embeddings keyed by the catalog's window ids.

Every store implements ``VectorStore``, so the indexer and the engine never know which one
they hold; ``open_store`` picks it from ``settings.store``.
"""

from __future__ import annotations

import abc
import logging
import math
import mmap
import os
import sys
import tempfile
from pathlib import Path
from typing import ClassVar

import faiss
import numpy as np

from encoders.threads import threads_limited
from search.config import ConfigError, Settings
from search.filters import Filters


class VectorStore(abc.ABC):
    """Window vectors under the catalog's window ids; cosine search, best first.

    What a store can do beyond that is a class attribute, read where it matters, never probed:
    ``keeps_payload`` stores hold each window's file metadata beside its vector, so a search
    can take the ``Filters`` themselves and apply them inside the store (Qdrant); the others
    (FAISS) take the catalog's answer to the filters, the ids of the windows it lets through.
    """

    dim: int
    keeps_payload: ClassVar[bool]

    @abc.abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abc.abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Forget the vectors of ``ids``; returns how many were held."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None,
               filters: Filters | None = None, exact: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and ids, each (len(queries), min(k, candidates)), best first.

        ``allowed_ids`` restricts the search to those windows, and ``filters`` (only where
        ``keeps_payload``) to the windows of files that pass them; either restriction is
        applied inside the search, not to its results. ``exact`` is how many of the best hits
        the caller needs in their exact order (None: the store's own choice); a store that
        ranks by compressed codes re-scores its candidates for that many from the exact vectors.
        """

    @abc.abstractmethod
    def set_payload(self, ids: np.ndarray, record) -> None:
        """Describe the windows ``ids`` by their file ``record`` (catalog.File), after it was
        embedded or moved; nothing to do for a store that keeps no payload."""

    @abc.abstractmethod
    def reconstruct(self, ids: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def ids(self) -> np.ndarray: ...

    @abc.abstractmethod
    def save(self) -> None:
        """Make every change durable; afterwards a crash loses none of them."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release memory maps, files and connections (Qdrant's local mode lets one client open a folder)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


def open_store(settings: Settings, dim: int) -> VectorStore:
    """``settings.store``: "faiss" (files in the home), or a Qdrant URL: ``qdrant://host:6333``
    for a server, ``qdrant+local:///folder`` for qdrant-client's local mode."""
    if settings.store == "faiss":
        return FaissStore(faiss_file(settings), dim)
    if settings.store.startswith(("qdrant://", "qdrant+local://")):
        from search.qdrant_store import QdrantStore  # qdrant-client is an optional dependency

        return QdrantStore(settings.store, dim)
    raise ConfigError(
        f"unknown vector store {settings.store!r}; known: 'faiss', 'qdrant://HOST:PORT', 'qdrant+local:///FOLDER'"
    )


def discard_vectors(settings: Settings) -> None:
    """Delete every vector of the library, whatever their dimension (its model is changing): the
    next ``open_store`` starts empty."""
    if settings.store == "faiss":
        index = faiss_file(settings)
        # The index first: without it no vector is held, whatever rows are left behind by a kill.
        for path in (index, _ExactRows.ids_file(index), _ExactRows.rows_file(index)):
            path.unlink(missing_ok=True)
        return
    from search.qdrant_store import drop_collection

    drop_collection(settings.store)


def faiss_file(settings: Settings) -> Path:
    """Where a home's FAISS index is saved; a save replaces the file (``write_atomically``)."""
    return settings.vectors_dir / "windows.faiss"


log = logging.getLogger(__name__)

# Measured on 2 CPU cores (docs/benchmarks.md): exact search takes about 1.5 ms a query at
# 10^4 windows and 20 ms at 10^5, growing with the count; an inverted file answers in under
# 1 ms at 10^5 with recall@10 0.998. Past 5 * 10^4 (about 10 ms exact) the inverted file wins.
EXACT_UP_TO = 50_000
# Inverted lists probed per query: a share of all lists, and at least a few (measured,
# docs/benchmarks.md).
PROBE_SHARE = 1 / 64
MIN_PROBES = 8
# From here "auto" keeps 8-bit codes in memory: at 10^6 windows on 2 cores it answered with
# p95 14 ms against 59 ms for exact vectors in the lists, at the same recall@10 (0.998), in a
# quarter of the memory (docs/benchmarks.md).
COMPRESS_FROM = 250_000
# The compressed (SQ8) index re-scores exactly RERANK_FACTOR approximate candidates per wanted
# hit, for the best RERANKED_HITS: its candidates are rows read from disk (about 0.13 ms each
# when the page cache has lost them), and re-scoring 4x every hit read 16,000 for the 4,000
# windows the engine asks of a library at first, 0.4 to 4 s at 10^6 (docs/benchmarks.md,
# section 6). Deeper hits agreed with full re-scoring on 99% of their windows there.
RERANK_FACTOR = 4
RERANKED_HITS = 50
# From here (bytes of 8-bit codes: 2 * 10^6 windows of 512 dimensions, 10^6 of 1024) "auto" keeps
# 4-bit codes instead, half the memory: at 3 * 10^6 windows the 8-bit codes alone were 1.46 GB of
# the page process's 2.56 GB. 4-bit scores are coarser, so that kind re-scores its best
# RERANKED_HITS_4BIT among RERANK_FACTOR_4BIT times as many, and never fewer than
# RERANK_POOL_4BIT candidates (a search for a few hits): 1,000 rows for the 4,000 windows the
# engine asks kept recall@10 to @500 at 1.000 / 1.000 / 0.999 / 0.975 against the 8-bit kind's
# 1.000 / 1.000 / 0.983 / 0.985 (docs/benchmarks.md, section 6); its rows are asked of the disk
# all at once (``_ExactRows._read``).
SMALL_CODES_FROM_BYTES = 2**30
RERANK_FACTOR_4BIT = 2
RERANKED_HITS_4BIT = 500
RERANK_POOL_4BIT = 100
# A filter is searched by probing every inverted list where its scaled probes would reach this
# share of them (1/4: at most 4x the scaled probes' cost, and a 5% folder at 10^6 is scored
# whole), and by reading its windows' exact vectors where it allows no more than the compressed
# index would re-score anyway (reading 3,000 rows from a cold disk took 0.4 s, probing every
# list 16 ms).
EVERY_LIST_FROM = 4
EXACT_ALLOWED_UP_TO = RERANK_FACTOR * RERANKED_HITS
# Exact rows read one system call each up to this many at once; more through a memory map.
READ_ROW_BY_ROW_UP_TO = 50_000
KINDS = ("auto", "flat", "ivf", "ivf-sq8", "ivf-sq4")
# glibc's malloc settings for a process that searches a large compressed index (the page, read
# by ``with_huge_pages``): the inverted lists' codes in the heap (lists up to 32 MB; glibc maps
# each list of 0.75 MB at 10^6 files on its own by default), one heap for every thread (glibc
# gives huge pages to its main heap only, and the page opens its library in Streamlit's script
# thread), and the heap in transparent huge pages. A filtered search reads scattered codes
# across all lists, each a TLB miss on 4 kB pages: on this VM the every-list scan of a folder
# took 282-344 ms against 185-216 with huge pages (docs/benchmarks.md, section 6). Read by the
# C library when a process starts, never after.
HUGE_PAGE_TUNABLES = ("glibc.malloc.hugetlb=1", f"glibc.malloc.mmap_threshold={32 * 2**20}", "glibc.malloc.arena_max=1")


def with_huge_pages(environment: dict[str, str]) -> dict[str, str]:
    """``environment`` for a process to start with ``HUGE_PAGE_TUNABLES`` added to whatever
    ``GLIBC_TUNABLES`` it already sets (those win where both name a setting)."""
    given = [item for item in environment.get("GLIBC_TUNABLES", "").split(":") if item]
    named = {item.partition("=")[0] for item in given}
    added = [item for item in HUGE_PAGE_TUNABLES if item.partition("=")[0] not in named]
    return {**environment, "GLIBC_TUNABLES": ":".join(given + added)}


def ivf_lists_for(count: int) -> int:
    """About sqrt(count) lists, a power of two: list scans and the coarse search cost alike."""
    return 2 ** max(6, round(math.log2(math.sqrt(max(count, 1)))))


class FaissStore(VectorStore):
    """Inner-product search (cosine, as the vectors are unit length) in one FAISS file.

    ``kind`` "flat" searches exactly; "ivf" is an inverted file over exact vectors; "ivf-sq8"
    keeps 8-bit codes in memory (a quarter of the vectors' size) and re-scores its candidates
    exactly against the float32 vectors read from disk beside the index, so memory holds 1 KB
    per 1024-d window instead of 4; "ivf-sq4" keeps 4-bit codes (half that) and re-scores more
    candidates. "auto" is exact up to ``exact_up_to`` vectors and rebuilds itself when saved
    beyond that: as "ivf", as "ivf-sq8" from ``COMPRESS_FROM`` vectors (at any size with
    ``compress``), and as "ivf-sq4" once 8-bit codes would take ``SMALL_CODES_FROM_BYTES``
    (converted from the 8-bit codes, without reading the vectors again). Each kind is a class
    of its own below (``_Flat``, ``_Ivf``, ``_IvfSq8``, ``_IvfSq4``); this one chooses,
    delegates and rebuilds.
    Every kind applies ``allowed_ids`` inside the search. With ``gpu`` (default: when CUDA is
    present and torch loaded) exact search runs as one matrix product on the GPU.
    """

    keeps_payload = False

    def __init__(self, path: Path, dim: int, kind: str = "auto", exact_up_to: int = EXACT_UP_TO,
                 compress: bool = False, gpu: bool | None = None):
        if kind not in KINDS:
            raise ConfigError(f"unknown FAISS index kind {kind!r}; known: {', '.join(KINDS)}")
        self.path = path
        self.dim = dim
        self.kind = kind
        self.exact_up_to = exact_up_to
        self.compress = compress
        self.nprobe: int | None = None  # None: PROBE_SHARE of the lists, at least MIN_PROBES
        exact_rows = _ExactRows(path, dim)
        if path.exists():
            self._index = _opened(faiss.read_index(str(path)), exact_rows)
            if self._index.faiss.d != dim:
                raise ConfigError(f"{path} holds {self._index.faiss.d}-dim vectors, not {dim}")
        else:
            # IVF kinds need vectors to train on: they start flat and are built at the first save.
            self._index = _Flat(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), exact_rows)
        # Decided at the first search: by then a query's model has imported torch where it needs it.
        self._use_gpu = gpu
        self._gpu: _GpuExact | None = None

    @property
    def built_kind(self) -> str:
        return self._index.kind

    @property
    def index(self) -> faiss.Index:
        return self._index.faiss

    @property
    def exact_rows(self) -> _ExactRows:
        return self._index.exact_rows

    def close(self) -> None:
        self.exact_rows.release()
        self._gpu = None

    def __len__(self) -> int:
        return self._index.faiss.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add(np.asarray(ids, dtype=np.int64),
                        np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim))
        self._changed()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        removed = self._index.remove(ids)
        self._changed()
        return removed

    def set_payload(self, ids: np.ndarray, record) -> None:
        """FAISS keeps vectors only: filters reach it as the catalog's allowed ids."""

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None,
               filters: Filters | None = None, exact: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if filters:
            raise ValueError("FaissStore keeps no payload to filter on: pass the catalog's allowed_ids")
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        candidates = len(self)
        if allowed_ids is not None:
            allowed_ids = np.asarray(allowed_ids, dtype=np.int64)
            candidates = min(candidates, len(allowed_ids))
        k = min(k, candidates)
        if k == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        if self._use_gpu is None:
            self._use_gpu = _GpuExact.available()
        if self._use_gpu and self.built_kind == "flat":
            self._gpu = self._gpu or _GpuExact()
            scores, ids = self._gpu.search(self._index, queries, k, allowed_ids)
        else:
            with threads_limited(len(queries)):
                scores, ids = self._index.search(queries, k, allowed_ids, self.nprobe, exact)
        # Fewer allowed ids than k in the index leave -1 slots; drop them from every row alike.
        keep = (ids >= 0).all(axis=0)
        return scores[:, keep], ids[:, keep]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.empty((0, self.dim), np.float32)
        return self._index.reconstruct(ids)

    def ids(self) -> np.ndarray:
        return self._index.ids()

    def save(self) -> None:
        """Write the whole index atomically: readers see the old file or the new one, never half."""
        self.build()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._index.save(self.path)

    def build(self) -> None:
        """Turn the index into the kind it should be at its size (``save`` calls this).

        An IVF index is trained on what it holds then, and retrained once it has grown so
        much that its lists are four times too few.
        """
        count = len(self)
        wanted = self.kind
        if self.kind == "auto":
            # Once compressed, stays so: a library shrinking past the line is not rebuilt for it;
            # once in 4-bit codes, likewise.
            compress = self.compress or count >= COMPRESS_FROM or self.built_kind in ("ivf-sq8", "ivf-sq4")
            small = count * self.dim >= SMALL_CODES_FROM_BYTES or self.built_kind == "ivf-sq4"
            wanted = "flat" if count <= self.exact_up_to else ("ivf-sq4" if small else "ivf-sq8") if compress else "ivf"
        if wanted == "flat" or count == 0:
            return
        lists_fit = self.built_kind != "flat" and ivf_lists_for(count) < 4 * self._index.faiss.nlist
        if wanted == self.built_kind and lists_fit:
            return
        if wanted == "ivf-sq4" and self.built_kind == "ivf-sq8" and lists_fit:
            log.info("converting the vector index's %d 8-bit codes to 4-bit codes", count)
            self._index = self._index.in_4bit_codes()
            self._changed()
            return
        log.info("building the vector index as %s over %d vectors", wanted, count)
        # The vectors may view the old index's memory: keep it until the new one is filled.
        ids, vectors = self._index.contents()
        kind = {"ivf-sq8": _IvfSq8, "ivf-sq4": _IvfSq4}.get(wanted, _Ivf)
        fresh = kind(_trained_ivf(self.dim, wanted, vectors), self._index.exact_rows)
        fresh.exact_rows.clear()
        fresh.add(ids, vectors)
        self._index = fresh
        self._changed()

    def _changed(self) -> None:
        if self._gpu is not None:
            self._gpu.stale = True


class _Flat:
    """Exact search: every vector scored, in an id map over a flat index."""

    kind = "flat"

    def __init__(self, index: faiss.Index, exact_rows: _ExactRows):
        self.faiss = index
        self.exact_rows = exact_rows  # unused by this kind; kept for the kind it may be rebuilt as

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.faiss.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        return int(self.faiss.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None, nprobe: int | None,
               exact: int | None = None):
        # Exact already: ``exact`` asks nothing more of this kind, nor of an inverted file of vectors.
        if allowed_ids is None:
            return self.faiss.search(queries, k)
        selector = _Selector(allowed_ids)
        return self.faiss.search(queries, k, params=faiss.SearchParameters(sel=selector.faiss))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return self.faiss.reconstruct_batch(ids)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.faiss.id_map).astype(np.int64)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        flat = faiss.downcast_index(self.faiss.index)
        return self.ids(), faiss.rev_swig_ptr(flat.get_xb(), self.faiss.ntotal * self.faiss.d).reshape(-1, self.faiss.d)

    def save(self, path: Path) -> None:
        write_atomically(path, lambda temp: faiss.write_index(self.faiss, temp))


class _Ivf(_Flat):
    """An inverted file over exact vectors: the lists nearest the query are scanned."""

    kind = "ivf"

    def remove(self, ids: np.ndarray) -> int:
        # The id hash of an IVF index takes only an explicit array.
        return int(self.faiss.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None, nprobe: int | None,
               exact: int | None = None):
        nlist = self.faiss.nlist
        nprobe = min(nlist, nprobe or max(MIN_PROBES, round(nlist * PROBE_SHARE)))
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if allowed_ids is not None:
            if len(allowed_ids) <= EXACT_ALLOWED_UP_TO:
                return _exact_top(queries, *self.exact_vectors(allowed_ids), k)
            # Probing 1/share times more lists meets as many allowed windows as an unfiltered
            # search meets windows, so a selective filter still fills the page. Where that means
            # a good share of the lists, every list is probed: each allowed window is scored
            # (exactly here, by its code in the compressed kind), at a cost that grows with the
            # lists probed (measured in docs/benchmarks.md, section 6).
            nprobe = math.ceil(nprobe * self.faiss.ntotal / max(len(allowed_ids), 1))
            if nprobe * EVERY_LIST_FROM >= nlist:
                nprobe = nlist
            selector = _Selector(allowed_ids)
            params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector.faiss)
        return self.faiss.search(queries, k, params=params)

    def exact_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact vectors of those of ``ids`` that the store holds, and their ids."""
        try:
            return self.reconstruct(ids), ids
        except (RuntimeError, KeyError):  # an id with no vector: score those that have one
            held = self.held_ids()
            present = ids[np.isin(ids, held[held >= 0])]
            return self.reconstruct(present), present

    def held_ids(self) -> np.ndarray:
        return self.ids()

    def ids(self) -> np.ndarray:
        return _ivf_contents(self.faiss, with_vectors=False)[0]

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        return _ivf_contents(self.faiss, with_vectors=True)


class _IvfSq8(_Ivf):
    """An inverted file of 8-bit codes, its candidates re-scored against exact rows on disk."""

    kind = "ivf-sq8"

    def __init__(self, index: faiss.Index, exact_rows: _ExactRows):
        # Its vectors come from the exact rows, so FAISS's hash from id to place (about 130 MB at
        # 3 * 10^6 windows, in files written before this) is not needed: removing scans the lists.
        if index.direct_map.type != faiss.DirectMap.NoMap:
            index.set_direct_map_type(faiss.DirectMap.NoMap)
        super().__init__(index, exact_rows)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.exact_rows.add(ids, vectors)
        super().add(ids, vectors)

    def remove(self, ids: np.ndarray) -> int:
        self.exact_rows.remove(ids)
        return super().remove(ids)

    def reranking(self, exact: int | None) -> tuple[int, int, int]:
        """How many best hits are chosen exactly, among how many times as many candidates, and
        at least how many candidates. 8-bit codes order the deeper hits as the exact vectors
        would 99% of the time (docs/benchmarks.md, section 6): a caller's ``exact`` changes nothing."""
        return RERANKED_HITS, RERANK_FACTOR, 0

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None, nprobe: int | None,
               exact: int | None = None):
        # The best hits are chosen exactly: the candidates best by code, a few times as many as
        # those hits, are scored from their exact rows; deeper hits keep the scores of their
        # codes (8-bit: off by about 1e-3), all best first.
        hits, factor, least = self.reranking(exact)
        pool = max(min(k, hits) * factor, least)
        scores, candidates = super().search(queries, max(k, pool), allowed_ids, nprobe)
        rows = []
        for query, row_scores, ids in zip(queries, scores, candidates):
            # Without exact rows (a crash between the two files' writes) a candidate is skipped.
            held = self.exact_rows.holds(ids)
            row_scores, ids = row_scores[held], ids[held]
            vectors, scored = self.exact_vectors(ids[:pool])
            merged_scores = np.concatenate([vectors @ query, row_scores[len(scored):]])
            order = np.argsort(-merged_scores, kind="stable")[:k]  # best first, as every store answers
            rows.append((merged_scores[order], np.concatenate([scored, ids[len(scored):]])[order]))
        width = min(len(ids) for _, ids in rows)
        return np.stack([s[:width] for s, _ in rows]), np.stack([i[:width] for _, i in rows])

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return self.exact_rows.vectors(ids)

    def exact_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = ids[self.exact_rows.holds(ids)]
        return self.exact_rows.vectors(present), present

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self.ids()
        return ids, self.exact_rows.vectors(ids)

    def save(self, path: Path) -> None:
        # Exact rows first: a crash between the two writes leaves rows the index doesn't
        # name, which no search asks for.
        self.exact_rows.save()
        super().save(path)

    def in_4bit_codes(self) -> _IvfSq4:
        """The same lists, centroids and ids in 4-bit codes, each decoded from its 8-bit code and
        encoded again: seconds for millions of windows, where a rebuild reads every exact row
        (6 GB at 3 * 10^6 windows of 512 dimensions) and trains again. Memory holds both codes
        until the 8-bit index is dropped (1.5 times the 8-bit codes, once)."""
        old = self.faiss
        lists = old.invlists
        sizes = [lists.list_size(number) for number in range(old.nlist)]
        # The 4-bit quantizer learns its ranges from the decoded codes of up to 64 windows a list,
        # as many as a rebuild would train on.
        sample = np.concatenate([old.sq.decode(_list_codes(old, number)[:64])
                                 for number, size in enumerate(sizes) if size] or [np.empty((0, old.d), np.float32)])
        quantizer = faiss.clone_index(old.quantizer)
        index = faiss.IndexIVFScalarQuantizer(quantizer, old.d, old.nlist, faiss.ScalarQuantizer.QT_4bit,
                                              old.metric_type, old.by_residual)
        index.own_fields = True
        quantizer.this.disown()
        _fit_4bit_ranges(index)
        index.sq.train(sample)
        index.is_trained = True
        for number, size in enumerate(sizes):
            if size:
                ids = _list_ids(old, number)
                codes = np.ascontiguousarray(index.sq.compute_codes(old.sq.decode(_list_codes(old, number))))
                index.invlists.add_entries(number, size, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        index.ntotal = sum(sizes)
        return _IvfSq4(index, self.exact_rows)


class _IvfSq4(_IvfSq8):
    """An inverted file of 4-bit codes: half the 8-bit kind's memory, more candidates re-scored."""

    kind = "ivf-sq4"

    def reranking(self, exact: int | None) -> tuple[int, int, int]:
        # 4-bit codes order deep hits coarsely (windows 1,000-4,000 deep found 0.93 of the time
        # with the best 500 chosen exactly): a caller that shows them asks for them exactly, one
        # that shows a first page asks for fewer rows than the default reads.
        return RERANKED_HITS_4BIT if exact is None else exact, RERANK_FACTOR_4BIT, RERANK_POOL_4BIT


class _Selector:
    """``allowed_ids`` as a FAISS selector, alive as long as the arrays FAISS reads.

    A bitmap over the ids (one bit an id up to the largest: 0.4 MB at 10^6 files) where that is
    no bigger than FAISS's hash set would be; testing a bit is cheaper than a hash lookup, and a
    filtered search tests every window of every list it probes."""

    BITMAP_BYTES_PER_ID = 32  # about what the hash set (and its Bloom filter) takes an id

    def __init__(self, ids: np.ndarray):
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        top = int(ids.max(initial=-1)) + 1
        if ids.min(initial=0) >= 0 and top <= 8 * self.BITMAP_BYTES_PER_ID * max(len(ids), 1):
            bits = np.zeros(top, dtype=bool)
            bits[ids] = True
            self.array = np.packbits(bits, bitorder="little")
            self.faiss = faiss.IDSelectorBitmap(len(self.array), faiss.swig_ptr(self.array))
        else:
            self.array = ids
            self.faiss = faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))


def _opened(index: faiss.Index, exact_rows: _ExactRows) -> _Flat:
    """The kind of index FAISS read from a file."""
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return (_IvfSq4 if index.sq.qtype == faiss.ScalarQuantizer.QT_4bit else _IvfSq8)(index, exact_rows)
    return (_Ivf if isinstance(index, faiss.IndexIVF) else _Flat)(index, exact_rows)


def _trained_ivf(dim: int, kind: str, vectors: np.ndarray, count: int | None = None) -> faiss.IndexIVF:
    """An empty IVF index ("ivf", "ivf-sq8" or "ivf-sq4") for ``count`` vectors (default: as many
    as ``vectors``), trained on ``vectors``."""
    nlist = min(ivf_lists_for(count or len(vectors)), max(1, len(vectors) // 39))
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        bits = faiss.ScalarQuantizer.QT_4bit if kind == "ivf-sq4" else faiss.ScalarQuantizer.QT_8bit
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, bits, faiss.METRIC_INNER_PRODUCT)
        if kind == "ivf-sq4":
            _fit_4bit_ranges(index)
    index.own_fields = True
    quantizer.this.disown()
    # k-means needs about 40 points a list and a few rounds; more only lengthens training on a
    # few cores, and the recall measured with these settings is in docs/benchmarks.md.
    index.cp.niter = 10
    sample = vectors[np.sort(np.random.default_rng(0).permutation(len(vectors))[: 64 * nlist])]
    index.train(sample)
    if kind == "ivf":
        # A hash from id to place lets reconstruct find windows (the compressed kind reads them
        # from its exact rows: see _IvfSq8).
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def _list_ids(index: faiss.IndexIVF, number: int) -> np.ndarray:
    """The ids of one inverted list (a copy)."""
    return np.array(faiss.rev_swig_ptr(index.invlists.get_ids(number), index.invlists.list_size(number)), dtype=np.int64)


def _list_codes(index: faiss.IndexIVF, number: int) -> np.ndarray:
    """The codes of one inverted list, one row a vector (a view of the index's memory)."""
    size = index.invlists.list_size(number)
    return faiss.rev_swig_ptr(index.invlists.get_codes(number), size * index.code_size).reshape(size, index.code_size)


def _fit_4bit_ranges(index: faiss.IndexIVFScalarQuantizer) -> None:
    """Train 4-bit codes' range per dimension for the least squared error, not from the extremes:
    16 steps over the sample's whole range waste most on values that hardly occur. Windows 500
    deep came back 0.998 of the time against 0.990 (docs/benchmarks.md, section 6)."""
    index.sq.rangestat = faiss.ScalarQuantizer.RS_optim


def _ivf_contents(index: faiss.IndexIVF, with_vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
    ids, codes = [], []
    for number in range(index.nlist):
        if index.invlists.list_size(number):
            ids.append(_list_ids(index, number))
            if with_vectors:  # an inverted file of vectors: its codes are the float32 vectors' bytes
                codes.append(np.array(_list_codes(index, number)).view(np.float32))
    all_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    if not with_vectors:
        return all_ids, None
    return all_ids, np.concatenate(codes) if codes else np.empty((0, index.d), np.float32)


def unit_vector(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (as float32); the zero vector stays zero."""
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


def _exact_top(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of ``vectors`` (rows named by ``ids``) for each query, exactly."""
    k = min(k, len(ids))
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k else np.empty((len(queries), 0), np.int64)
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top_scores, order, axis=1).astype(np.float32), ids[np.take_along_axis(top, order, axis=1)]


def write_atomically(path: Path, write) -> None:
    """``write(temp)`` a file beside ``path``, then put it in place: readers see the old file or
    the new one, never half of one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


class _ExactRows:
    """Float32 vectors on disk for exact re-scoring: ``<index>.f32`` rows, ``<index>.ids.npy`` their ids.

    Rows are appended as they come; a removed row's id becomes -1 until the next rebuild. The
    ids file is the truth: rows past its length (from a run that died before saving) are cut.
    """

    def __init__(self, index_path: Path, dim: int):
        self.rows_path = self.rows_file(index_path)
        self.ids_path = self.ids_file(index_path)
        self.dim = dim
        self.row_ids = np.load(self.ids_path) if self.ids_path.exists() else np.empty(0, np.int64)
        if self.rows_path.exists():
            os.truncate(self.rows_path, len(self.row_ids) * dim * 4)
        self._lookup: tuple[np.ndarray, np.ndarray | None] | None = None  # sorted ids, their rows (None: in order)

    @staticmethod
    def rows_file(index_path: Path) -> Path:
        return index_path.with_name(index_path.name + ".f32")

    @staticmethod
    def ids_file(index_path: Path) -> Path:
        return index_path.with_name(index_path.name + ".ids.npy")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.rows_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.rows_path, "ab") as rows:
            np.ascontiguousarray(vectors, dtype=np.float32).tofile(rows)
        self.row_ids = np.concatenate([self.row_ids, ids])
        self._lookup = None

    def remove(self, ids: np.ndarray) -> None:
        self.row_ids[np.isin(self.row_ids, ids)] = -1
        self._lookup = None

    def release(self) -> None:
        self._lookup = None

    def clear(self) -> None:
        self.row_ids = np.empty(0, np.int64)
        self.rows_path.unlink(missing_ok=True)
        self._lookup = None

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Whether each of ``ids`` has a row."""
        return self._rows_of(ids)[1]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.empty((0, self.dim), np.float32)
        rows, found = self._rows_of(ids)
        if not found.all():
            raise KeyError(f"no stored vectors for ids {ids[~found][:5].tolist()}")
        return self._read(rows)

    def _rows_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The row of each of ``ids`` (its latest, for a re-added id), and whether it has one."""
        if self._lookup is None:
            if (np.diff(self.row_ids) > 0).all():  # rows added in id order, none removed: their own index
                self._lookup = (self.row_ids, None)
            else:
                order = np.argsort(self.row_ids, kind="stable")
                self._lookup = (self.row_ids[order], order)
        sorted_ids, order = self._lookup
        if not len(sorted_ids):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        at = np.searchsorted(sorted_ids, ids, side="right").clip(1) - 1
        found = (sorted_ids[at] == ids) & (ids >= 0)
        return (at if order is None else order[at]), found

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """The vectors at ``rows`` of the file. A few (a search's candidates) are read row by
        row, in file order; many (a rebuild's) through a memory map, dropped after. Mapped, every
        row read stayed in this process's RSS (6 GB at 10^6 windows), and each first touch of a
        page cost a fault (24 us on this VM, plus its neighbours mapped with it)."""
        vectors = np.empty((len(rows), self.dim), np.float32)
        ascending = np.argsort(rows, kind="stable")
        if len(rows) > READ_ROW_BY_ROW_UP_TO:
            with open(self.rows_path, "rb") as file, \
                    mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = np.frombuffer(mapped, dtype=np.float32).reshape(-1, self.dim)
                vectors[ascending] = view[rows[ascending]]
                del view  # the map closes only once nothing views it
            return vectors
        size = self.dim * 4
        descriptor = os.open(self.rows_path, os.O_RDONLY)
        try:
            in_order = rows[ascending].tolist()
            # Every row asked of the disk at once, then read: rows the page cache has lost arrive
            # together instead of one wait each (1,000 rows: 23 ms against 114-212 ms, 200: 3
            # against 17-50, on this VM's disk; docs/benchmarks.md, section 6).
            for row in in_order:
                os.posix_fadvise(descriptor, row * size, size, os.POSIX_FADV_WILLNEED)
            for at, row in zip(ascending.tolist(), in_order):
                if os.preadv(descriptor, [vectors[at]], row * size) != size:
                    raise KeyError(f"row {row} lies past the end of {self.rows_path}")
        finally:
            os.close(descriptor)
        return vectors

    def save(self) -> None:
        if self.rows_path.exists():
            with open(self.rows_path, "rb+") as rows:
                os.fsync(rows.fileno())
        write_atomically(self.ids_path, lambda temp: np.save(open(temp, "wb"), self.row_ids))


class _GpuExact:
    """Exact search as one matrix product on the GPU, over a float16 copy of a flat index."""

    @staticmethod
    def available() -> bool:
        """CUDA is there and torch already loaded: importing torch only to learn that a laptop has
        no GPU would cost a filter-only search seconds."""
        torch = sys.modules.get("torch")
        return torch is not None and torch.cuda.is_available()

    def __init__(self):
        self.stale = True

    def search(self, index: _Flat, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None):
        import torch

        if self.stale:
            ids, vectors = index.contents()
            self.ids = torch.from_numpy(ids).cuda()
            self.vectors = torch.from_numpy(vectors).cuda().half()
            self.stale = False
        vectors, ids = self.vectors, self.ids
        if allowed_ids is not None:
            rows = torch.isin(ids, torch.from_numpy(allowed_ids).cuda()).nonzero().squeeze(1)
            vectors, ids = vectors[rows], ids[rows]
        scores = torch.from_numpy(queries).cuda().half() @ vectors.T
        top, at = scores.float().topk(min(k, len(ids)), dim=1)
        return top.cpu().numpy(), ids[at].cpu().numpy()
