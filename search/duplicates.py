"""Duplicate files in a library: exact (same bytes) and near (same sound, other bytes).

Near duplicates are re-encodes, gain changes, resamples and trims: their embeddings are
nearly identical whatever the model's weights, while different sounds' are not. A pair's
score is the larger of two cosines: of the files' mean window vectors (re-encodes, gain,
resamples), and of each window of the shorter file with its best match in the longer one,
averaged (a trim keeps most windows of the original). Nothing is ever deleted: this lists.

Only a file's nearest files by mean vector are scored with it. They come from a FAISS index
of the means, not from comparing every file with every other, and windows are read from the
store a batch at a time, never the whole library's at once.

The library keeps the result (``update``): the pairs scoring KEPT_FROM or more in the catalog
(what the page, the API and ``clapdex duplicates`` show, any threshold from KEPT_FROM up being
a filter of them), and each file's nearest files in ``near_duplicates.npz`` in the home (what
the next update starts from). After an index run, an update scores only the files whose
windows or path changed and the files whose nearest they enter or leave, so it gives what a
whole pass over the new library gives (exactly so with the exact index of the means; beyond
EXACT_UP_TO files both passes are as approximate as the inverted file).
"""

from __future__ import annotations

import array
import dataclasses
import functools
import itertools
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np
from search.catalog import GENERATION, Catalog
from search.store import VectorStore, ivf_lists_for, write_atomically

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.98
# Candidate partners per file compared window by window; the rest are too far by their means.
NEIGHBOURS = 10
# Up to this many files their nearest are found exactly (IndexFlatIP), beyond it by an
# inverted file. Measured on 2 cores over random 1024-d means: exact takes 2.1 s for 10^4
# files, 8.3 s for 2 * 10^4 and 51 s for 5 * 10^4, growing with the square; the inverted file
# (PROBES) 1.3, 3.7 and 12 s, but finding 99-100 % of the planted trims (below), not all.
EXACT_UP_TO = 20_000
# Inverted lists probed per file. The same measurement with planted partners, at 10^5 files
# (256 lists): 8, 16 and 32 probes took 23, 46 and 84 s and found 93.5, 98.2 and 99.8 % of the
# trims (means at cosine 0.82), and every re-encode (0.999); at 2 * 10^5 (512 lists) 92, 97 and
# 99.7 % of the trims. Random vectors are an inverted file's worst case; a library's embeddings
# cluster.
PROBES = 16
# Windows read from the store at once (4 KB each at 1024 dims), and as many again of the
# partners they are compared with.
BATCH_WINDOWS = 16_384
# Pairs are kept from this score up: the page's slider starts here, and a higher threshold is a
# filter of them. Only a lower one needs a pass of its own (``near_duplicates``).
KEPT_FROM = 0.90
# Nearest files by mean an update looks at, per changed file, to find the files whose own
# nearest it enters (all of them with the exact index).
REVERSE_NEIGHBOURS = 100
# What a reader of the kept pairs is told when they are not the catalog's current ones.
NOT_KEPT = ("near duplicates have not been looked for in this library yet: `clapdex duplicates` finds them (a whole "
            "pass: about 30 minutes at a million files on 2 busy cores), and every `clapdex index` after keeps them "
            "current")
STALE = ("the library changed since near duplicates were last looked for: these are from before; `clapdex index` or "
         "`clapdex duplicates` brings them up to date (only the changed files are compared)")
# What an update starts from: each kept file's nearest files, in the home.
GRAPH_FILE = "near_duplicates.npz"
# Beside it, beyond EXACT_UP_TO files, the inverted file of their means, named by the pass's token.
MEANS_FILE = "near_duplicates-{token}.faiss"
# Closeness by mean below a file's farthest nearest by no more than this still counts as
# entering them: the same cosine computed in another batch can differ in its last bits.
_ROUNDING = 1e-5


@dataclasses.dataclass(frozen=True)
class NearPair:
    first: str
    second: str
    score: float


@dataclasses.dataclass(frozen=True)
class _Library:
    """The indexed files that have windows, in path order, known by their place in it: file
    ``f``'s windows, in time order, are ``window_ids[starts[f]:starts[f + 1]]``."""

    ids: np.ndarray  # the files' catalog ids
    paths: list[str]
    hashes: list[str | None]
    window_ids: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    @functools.cached_property
    def versions(self) -> np.ndarray:
        """What changes when a file's windows or its path do: its first window's id (ids are
        never reused) and its path's CRC-32, one number."""
        crcs = np.fromiter((zlib.crc32(path.encode()) for path in self.paths), np.int64, len(self.paths))
        return (self.window_ids[self.starts[:-1]] << 32) | crcs


def exact_duplicates(catalog: Catalog) -> list[list[str]]:
    return [[record.path for record in group] for group in catalog.exact_duplicates()]


def groups(pairs: list[NearPair]) -> list[list[str]]:
    """Pairs joined into groups of files that sound the same, directly or through another; the
    largest groups first, each in path order."""
    leader: dict[str, str] = {}

    def find(path: str) -> str:
        while leader.setdefault(path, path) != path:
            leader[path] = leader[leader[path]]
            path = leader[path]
        return path

    for pair in pairs:
        leader[find(pair.first)] = find(pair.second)
    grouped: dict[str, list[str]] = {}
    for path in leader:
        grouped.setdefault(find(path), []).append(path)
    return sorted((sorted(group) for group in grouped.values()), key=lambda group: (-len(group), group))


def near_duplicates(catalog: Catalog, store: VectorStore, threshold: float = DEFAULT_THRESHOLD, *,
                    exact_up_to: int = EXACT_UP_TO) -> list[NearPair]:
    """Pairs of indexed files with different content that sound the same, best first: a whole
    pass, nothing kept.

    A pair is scored when either file is among the other's ``NEIGHBOURS`` nearest by mean
    vector: exactly so up to ``exact_up_to`` files, by an inverted file beyond.
    """
    library = _indexed_files(catalog)
    found = _whole_pass(library, store, exact_up_to, threshold).pairs
    return _sorted(NearPair(library.paths[a], library.paths[b], score) for a, b, score in found)


@dataclasses.dataclass(frozen=True)
class Kept:
    """The near duplicates the library keeps: ``current`` when the catalog has not changed since
    they were found; ``pairs`` None when none were ever kept."""

    current: bool
    pairs: list[NearPair] | None


def kept(catalog: Catalog, threshold: float = DEFAULT_THRESHOLD) -> Kept:
    """What the last ``update`` kept, scoring ``threshold`` or more: two small queries and the pairs."""
    if threshold < KEPT_FROM:
        raise ValueError(f"near duplicates are kept from a similarity of {KEPT_FROM}; {threshold} is below it")
    state = _state(catalog)
    if state is None:
        return Kept(False, None)
    current = state["generation"] == catalog.generation()
    return Kept(current, _sorted(NearPair(*row) for row in catalog.near_pairs(threshold)))


Progress = Callable[[str, float], None]  # what is being done, and the part of it done (0 to 1)


def update(catalog: Catalog, store: VectorStore, home: Path, progress: Progress | None = None, *,
           exact_up_to: int = EXACT_UP_TO) -> str:
    """Bring the kept near duplicates up to date with the catalog and commit them: "current" when
    they were, "updated" when only the changed files were compared, "whole" for a whole pass
    (nothing kept, or what was kept is not this catalog's)."""
    progress = progress or (lambda what, done: None)
    generation = catalog.generation()
    if generation is None:  # a catalog from before generations; from now on its changes are seen
        generation = os.urandom(8).hex()
        catalog.set_meta(GENERATION, generation)
        catalog.commit()
    state = _state(catalog)
    if state is not None and state["generation"] == generation:
        return "current"
    started = time.perf_counter()
    progress("listing the indexed files", 0.0)
    library = _indexed_files(catalog)
    graph = _read_graph(home / GRAPH_FILE, state)
    if graph is None:
        result, replacing, how = _whole_pass(library, store, exact_up_to, KEPT_FROM, progress), None, "whole"
    else:
        result, replacing = _changed_pass(library, store, home, graph, exact_up_to, progress)
        how = "updated"
    token = os.urandom(8).hex()
    neighbours = np.where(result.neighbours >= 0, library.ids[np.maximum(result.neighbours, 0)], -1)
    by_id = np.argsort(library.ids)
    arrays = {"token": np.array(token), "ids": library.ids[by_id], "versions": library.versions[by_id],
              "neighbours": neighbours[by_id], "farthest": result.farthest[by_id]}
    # The graph first: if the catalog's commit then fails, their tokens differ and the next
    # update makes a whole pass instead of starting from a graph the pairs do not match.
    kept_means = home / MEANS_FILE.format(token=token)
    if result.means is not None and not result.means.exact:
        write_atomically(kept_means, lambda temp: faiss.write_index(result.means.index, temp))
    elif result.means is None and graph is not None and (unchanged := home / MEANS_FILE.format(token=graph.token)).is_file():
        os.replace(unchanged, kept_means)  # nothing changed in the library: the same means
    write_atomically(home / GRAPH_FILE, lambda temp: _save(temp, arrays))
    pairs = [(int(library.ids[a]), int(library.ids[b]), score) for a, b, score in result.pairs]
    catalog.keep_near_pairs(pairs, json.dumps({"generation": generation, "token": token, "from": KEPT_FROM}),
                            replacing=None if replacing is None else library.ids[replacing].tolist() + graph.gone)
    catalog.commit()
    for older in home.glob(MEANS_FILE.format(token="*")):
        if older != kept_means:
            older.unlink()
    log.info("near duplicates %s: %d files, %d pairs scored %s or more written in %.1f s", how, len(library),
             len(pairs), KEPT_FROM, time.perf_counter() - started)
    progress("done", 1.0)
    return how


def start_again(catalog: Catalog, home: Path) -> None:
    """Drop the kept pairs, scored in another model's space, and what an update starts from; the
    library still keeps near duplicates, so its next ``update`` makes a whole pass (the caller commits)."""
    if _state(catalog) is None:
        return
    catalog.keep_near_pairs([], json.dumps({"generation": None, "token": None, "from": KEPT_FROM}))
    for kept_file in [home / GRAPH_FILE, *home.glob(MEANS_FILE.format(token="*"))]:
        kept_file.unlink(missing_ok=True)


def _sorted(pairs: Iterable[NearPair]) -> list[NearPair]:
    return sorted(pairs, key=lambda pair: (-pair.score, pair.first, pair.second))


def _state(catalog: Catalog) -> dict | None:
    value = catalog.near_state()
    return json.loads(value) if value else None


def _save(path: str, arrays: dict) -> None:
    with open(path, "wb") as out:
        np.savez(out, **arrays)


@dataclasses.dataclass(frozen=True)
class _Graph:
    """Each file's nearest files, as the last pass left them (file ids)."""

    token: str
    ids: np.ndarray  # sorted
    versions: np.ndarray
    neighbours: np.ndarray
    farthest: np.ndarray  # each file's closeness by mean to the farthest of its nearest
    gone: list[int] = dataclasses.field(default_factory=list)  # ids kept whose file is gone or changed


def _read_graph(path: Path, state: dict | None) -> _Graph | None:
    if state is None or state.get("from") != KEPT_FROM or state["token"] is None:  # None: ``start_again``
        return None
    try:
        with np.load(path) as saved:
            if str(saved["token"]) != state["token"]:
                log.warning("%s is not from the pass the catalog keeps; finding near duplicates again", path)
                return None
            graph = _Graph(state["token"], saved["ids"], saved["versions"], saved["neighbours"], saved["farthest"])
            return graph if len(graph.ids) else None  # nothing to start from: a whole pass is as quick
    except FileNotFoundError:
        log.warning("%s is missing; finding near duplicates again", path)
        return None


@dataclasses.dataclass(frozen=True)
class _Result:
    pairs: list[tuple[int, int, float]]  # (place, place, score), the first place the lower
    neighbours: np.ndarray  # each file's nearest by place, -1 where there are fewer
    farthest: np.ndarray
    means: _Means | None = None  # what the next update starts from


def _whole_pass(library: _Library, store: VectorStore, exact_up_to: int, threshold: float,
                progress: Progress | None = None) -> _Result:
    neighbours = np.full((len(library), NEIGHBOURS), -1, np.int64)
    farthest = np.full(len(library), -np.inf, np.float32)
    if len(library) < 2:
        return _Result([], neighbours, farthest)
    progress = progress or (lambda what, done: None)
    progress("indexing the files' mean vectors", 0.0)
    index = _mean_index(library, store, exact_up_to)
    # Each file's nearest, filled in as its batch is searched: a pair that both files propose
    # is then scored once, when the first of them is searched.
    pairs: list[tuple[int, int, float]] = []
    for batch, vectors, means in _batches(library, store, np.arange(len(library))):
        progress("comparing each file with its nearest", batch[0] / len(library))
        sounds = dict(zip(batch.tolist(), zip(vectors, means)))
        nearest, farthest[batch] = _nearest(index, means, batch)
        neighbours[batch] = nearest
        rows, columns = np.nonzero(nearest >= 0)
        proposer, partner = batch[rows], nearest[rows, columns]
        scored_already = (partner < proposer) & (neighbours[partner] == proposer[:, None]).any(axis=1)
        proposals = zip(proposer[~scored_already].tolist(), partner[~scored_already].tolist())
        pairs.extend(_scored(library, store, sounds, proposals, threshold))
    return _Result(pairs, neighbours, farthest, index)


def _changed_pass(library: _Library, store: VectorStore, home: Path, graph: _Graph, exact_up_to: int,
                  progress: Progress) -> tuple[_Result, np.ndarray]:
    """What a whole pass would find, from ``graph``: the result (every file's nearest; the pairs
    of the files scored again) and the places of the files scored again, whose kept pairs it replaces.

    Scored again: the files whose version changed (new, embedded again, moved), and those whose
    nearest change (a changed or removed file was among them, or a changed file enters them).
    Every other file's nearest are as the graph says, and so are its pairs with the others.
    """
    n = len(library)
    rows = np.searchsorted(graph.ids, library.ids)
    known = (rows < len(graph.ids)) & (graph.ids[np.minimum(rows, len(graph.ids) - 1)] == library.ids)
    unchanged = known.copy()
    unchanged[known] = graph.versions[rows[known]] == library.versions[known]
    changed = np.flatnonzero(~unchanged)
    graph.gone.extend(graph.ids[~np.isin(graph.ids, library.ids[unchanged])].tolist())
    # The graph's nearest as places now; a file no longer there (or changed) as -2.
    place_of = np.full(len(graph.ids), -2, np.int64)
    place_of[rows[unchanged]] = np.flatnonzero(unchanged)
    neighbours = np.full((n, NEIGHBOURS), -1, np.int64)
    farthest = np.full(n, -np.inf, np.float32)
    old = graph.neighbours[rows[unchanged]]
    neighbours[unchanged] = np.where(old >= 0, place_of[np.searchsorted(graph.ids, np.maximum(old, 0))], -1)
    farthest[unchanged] = graph.farthest[rows[unchanged]]
    affected = unchanged & (neighbours == -2).any(axis=1)
    if not len(changed) and not graph.gone:
        return _Result([], neighbours, farthest), np.empty(0, np.int64)
    if n < 2:
        return _Result([], np.full((n, NEIGHBOURS), -1, np.int64), farthest), np.arange(n)
    progress("indexing the files' mean vectors", 0.0)
    index = _kept_means(home, graph, library, store, exact_up_to, changed)
    reverse = n if index.exact else min(n, REVERSE_NEIGHBOURS)
    progress("finding the changed files' nearest", 0.5)
    for batch, _, means in _batches(library, store, changed):
        neighbours[batch], farthest[batch] = _nearest(index, means, batch)
        for first in range(0, len(batch), 256):  # (queries x reverse) cosines at a time
            closeness, near = index.search(means[first : first + 256], reverse)
            held = near >= 0
            entered = held & (closeness >= farthest[np.maximum(near, 0)] - _ROUNDING)
            affected[near[entered]] = True
    affected &= unchanged
    again = np.flatnonzero(affected)
    progress(f"finding the nearest of {len(again)} files they changed", 0.7)
    for batch, _, means in _batches(library, store, again):
        neighbours[batch], farthest[batch] = _nearest(index, means, batch)
    rescored = np.union1d(changed, again)
    # Every pair a whole pass would score that names a file scored again: its nearest, and the
    # files that have it among their nearest.
    proposals: set[tuple[int, int]] = set()
    for place in rescored.tolist():
        proposals.update((place, int(other)) for other in neighbours[place] if other >= 0)
    choosers, columns = np.nonzero(np.isin(neighbours, rescored))
    proposals.update(zip(choosers.tolist(), neighbours[choosers, columns].tolist()))
    progress(f"scoring {len(proposals)} pairs", 0.8)
    return _Result(_score_pairs(library, store, proposals), neighbours, farthest, index), rescored


def _score_pairs(library: _Library, store: VectorStore, proposals: set[tuple[int, int]]) -> list[tuple[int, int, float]]:
    """``proposals`` (two places) scoring KEPT_FROM or more, each pair once."""
    by_first: dict[int, list[int]] = {}
    for pair in {tuple(sorted(pair)) for pair in proposals}:
        by_first.setdefault(pair[0], []).append(pair[1])
    pairs = []
    for batch, vectors, means in _batches(library, store, np.array(sorted(by_first), np.int64)):
        sounds = dict(zip(batch.tolist(), zip(vectors, means)))
        pairs.extend(_scored(library, store, sounds, ((a, b) for a in batch.tolist() for b in by_first[a]), KEPT_FROM))
    return pairs


def _indexed_files(catalog: Catalog) -> _Library:
    ids = array.array("q")
    paths: list[str] = []
    hashes: list[str | None] = []
    window_ids = array.array("q")
    starts = array.array("q")
    for file_id, path, content_hash, window_id in catalog.indexed_windows():
        if not paths or paths[-1] != path:
            ids.append(file_id)
            paths.append(path)
            hashes.append(content_hash)
            starts.append(len(window_ids))
        window_ids.append(window_id)
    starts.append(len(window_ids))
    return _Library(np.frombuffer(ids, np.int64), paths, hashes, np.frombuffer(window_ids, np.int64),
                    np.frombuffer(starts, np.int64))


def _batches(library: _Library, store: VectorStore,
             wanted: np.ndarray) -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """The ``wanted`` files (places in ``library``) a batch of about BATCH_WINDOWS windows at a
    time (a longer file alone): the batch's places, each file's window vectors, and the files'
    mean vectors scaled to length 1, one a row."""
    sizes = library.starts[wanted + 1] - library.starts[wanted]
    ends = np.cumsum(sizes)
    first = 0
    while first < len(wanted):
        last = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + BATCH_WINDOWS, side="right")))
        batch = wanted[first:last]
        vectors = store.reconstruct(
            np.concatenate([library.window_ids[library.starts[f] : library.starts[f + 1]] for f in batch])
        )
        per_file = np.split(vectors, np.cumsum(sizes[first:last])[:-1])
        means = np.stack([windows.mean(axis=0) for windows in per_file])
        # A mean of zero (windows that cancel out) stays zero rather than dividing by it.
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        yield batch, per_file, means
        first = last


class _Means:
    """Every file's mean vector in a FAISS index, searched by place in ``library``: an exact index
    is numbered by place; an inverted file by file id, so that it can be kept between passes and
    changed file by file."""

    def __init__(self, index: faiss.Index, library: _Library):
        self.index = index
        self.exact = isinstance(index, faiss.IndexFlat)
        if not self.exact:
            self._order = np.argsort(library.ids)
            self._sorted = library.ids[self._order]

    def search(self, means: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        closeness, found = self.index.search(means, k)
        if self.exact:
            return closeness, found
        at = np.minimum(np.searchsorted(self._sorted, found), len(self._sorted) - 1)
        return closeness, np.where(found >= 0, self._order[at], -1)


def _mean_index(library: _Library, store: VectorStore, exact_up_to: int) -> _Means:
    """Every file's mean vector."""
    if len(library) <= exact_up_to:
        index = faiss.IndexFlatIP(store.dim)
        for _, _, means in _batches(library, store, np.arange(len(library))):
            index.add(means)
        return _Means(index, library)
    # k-means wants about 40 points a list: a small library gets fewer lists.
    lists = max(1, min(ivf_lists_for(len(library)), len(library) // 39))
    # The index only proposes partners; their scores are computed again from the windows,
    # so 8-bit codes change nothing reported, in a quarter of the memory of float32.
    index = faiss.index_factory(store.dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.nprobe = min(lists, PROBES)
    sample = np.sort(np.random.default_rng(0).permutation(len(library))[: 64 * lists])
    index.train(np.concatenate([means for _, _, means in _batches(library, store, sample)]))
    for batch, _, means in _batches(library, store, np.arange(len(library))):
        index.add_with_ids(means, library.ids[batch])
    return _Means(index, library)


def _kept_means(home: Path, graph: _Graph, library: _Library, store: VectorStore, exact_up_to: int,
                changed: np.ndarray) -> _Means:
    """The inverted file of means the last pass kept, with the changed files' means in place of
    what it held of them and of the files gone; made anew when there is none (or the library is
    small enough for the exact index)."""
    path = home / MEANS_FILE.format(token=graph.token)
    if len(library) <= exact_up_to or not path.is_file():
        return _mean_index(library, store, exact_up_to)
    index = faiss.read_index(str(path))
    index.nprobe = min(index.nlist, PROBES)  # a search setting: not in the file
    index.remove_ids(faiss.IDSelectorBatch(np.array(graph.gone, np.int64)))
    for batch, _, means in _batches(library, store, changed):
        index.add_with_ids(means, library.ids[batch])
    return _Means(index, library)


def _nearest(index: _Means, means: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The NEIGHBOURS files nearest to each of ``batch`` by mean vector, -1 where there are fewer,
    and each one's closeness by mean to the farthest of them (-inf where there are fewer).

    The nearest k, whatever their cosine, and the threshold applied to their full score after,
    rather than a range search for the files within the threshold: a trim's mean can lie far
    below the threshold (0.82 for 4 windows of 6) while its windows match the original's, which
    only the window comparison tells.
    """
    closeness, found = index.search(means, NEIGHBOURS + 1)
    others = found != batch[:, None]
    # A file finds itself, unless exact copies tie with it and push it out: then the last goes.
    others[others.all(axis=1), -1] = False
    found = found[others].reshape(len(batch), NEIGHBOURS)
    closeness = closeness[others].reshape(len(batch), NEIGHBOURS)[:, -1]
    return found, np.where(found[:, -1] >= 0, closeness, -np.inf).astype(np.float32)


def _scored(library: _Library, store: VectorStore, sounds: dict[int, tuple[np.ndarray, np.ndarray]],
            proposals: Iterable[tuple[int, int]], threshold: float) -> Iterator[tuple[int, int, float]]:
    """The ``proposals`` (places of a file in ``sounds`` and a partner) that score at least
    ``threshold``; partners not in ``sounds`` (windows and mean by place) are read in batches."""
    by_partner: dict[int, list[int]] = {}
    for proposer, partner in proposals:
        if library.hashes[proposer] is None or library.hashes[proposer] != library.hashes[partner]:
            by_partner.setdefault(partner, []).append(proposer)  # an exact duplicate is listed as such
    unread = np.array(sorted(by_partner.keys() - sounds.keys()), dtype=np.int64)
    held = ((partner, sounds[partner]) for partner in by_partner.keys() & sounds.keys())
    read = ((partner, sound) for batch, vectors, means in _batches(library, store, unread)
            for partner, sound in zip(batch.tolist(), zip(vectors, means)))
    for partner, (partner_windows, partner_mean) in itertools.chain(held, read):
        for proposer in by_partner[partner]:
            windows, mean = sounds[proposer]
            # In path order, as the window comparison of two files of equal length is not symmetric.
            in_order = (windows, partner_windows) if proposer < partner else (partner_windows, windows)
            score = max(float(mean @ partner_mean), _containment(*in_order))
            if score >= threshold:
                first, second = sorted((proposer, partner))
                yield first, second, round(score, 6)


def _containment(first: np.ndarray, second: np.ndarray) -> float:
    shorter, longer = (first, second) if len(first) <= len(second) else (second, first)
    return float((shorter @ longer.T).max(axis=1).mean())
