"""Duplicate files in a library: exact (same bytes) and near (same sound, other bytes).

Near duplicates are re-encodes, gain changes, resamples and trims: their embeddings are
nearly identical whatever the model's weights, while different sounds' are not. A pair's
score is the larger of two cosines: of the files' mean window vectors (re-encodes, gain,
resamples), and of each window of the shorter file with its best match in the longer one,
averaged (a trim keeps most windows of the original). Nothing is ever deleted: this lists.

Only a file's nearest files by mean vector are scored with it. They come from a FAISS index
of the means, not from comparing every file with every other, and windows are read from the
store a batch at a time, never the whole library's at once.
"""

from __future__ import annotations

import array
import dataclasses
import itertools
from collections.abc import Iterable, Iterator

import faiss
import numpy as np
from search.catalog import Catalog
from search.store import VectorStore, ivf_lists_for

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


@dataclasses.dataclass(frozen=True)
class NearPair:
    first: str
    second: str
    score: float


@dataclasses.dataclass(frozen=True)
class _Library:
    """The indexed files that have windows, in path order, known by their place in it: file
    ``f``'s windows, in time order, are ``window_ids[starts[f]:starts[f + 1]]``."""

    paths: list[str]
    hashes: list[str | None]
    window_ids: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


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
    """Pairs of indexed files with different content that sound the same, best first.

    A pair is scored when either file is among the other's ``NEIGHBOURS`` nearest by mean
    vector: exactly so up to ``exact_up_to`` files, by an inverted file beyond.
    """
    library = _indexed_files(catalog)
    if len(library) < 2:
        return []
    index = _mean_index(library, store, exact_up_to)
    # Each file's nearest, filled in as its batch is searched: a pair that both files propose
    # is then scored once, when the first of them is searched.
    neighbours = np.full((len(library), NEIGHBOURS), -1, np.int64)
    pairs: list[NearPair] = []
    for batch, vectors, means in _batches(library, store, np.arange(len(library))):
        sounds = dict(zip(batch.tolist(), zip(vectors, means)))
        nearest = neighbours[batch] = _nearest(index, means, batch)
        rows, columns = np.nonzero(nearest >= 0)
        proposer, partner = batch[rows], nearest[rows, columns]
        scored_already = (partner < proposer) & (neighbours[partner] == proposer[:, None]).any(axis=1)
        proposals = zip(proposer[~scored_already].tolist(), partner[~scored_already].tolist())
        pairs.extend(_scored(library, store, sounds, proposals, threshold))
    return sorted(pairs, key=lambda pair: (-pair.score, pair.first, pair.second))


def _indexed_files(catalog: Catalog) -> _Library:
    paths: list[str] = []
    hashes: list[str | None] = []
    window_ids = array.array("q")
    starts = array.array("q")
    for path, content_hash, window_id in catalog.indexed_windows():
        if not paths or paths[-1] != path:
            paths.append(path)
            hashes.append(content_hash)
            starts.append(len(window_ids))
        window_ids.append(window_id)
    starts.append(len(window_ids))
    return _Library(paths, hashes, np.frombuffer(window_ids, np.int64), np.frombuffer(starts, np.int64))


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


def _mean_index(library: _Library, store: VectorStore, exact_up_to: int) -> faiss.Index:
    """Every file's mean vector, numbered by its place in ``library``."""
    if len(library) <= exact_up_to:
        index = faiss.IndexFlatIP(store.dim)
    else:
        # k-means wants about 40 points a list: a small library gets fewer lists.
        lists = max(1, min(ivf_lists_for(len(library)), len(library) // 39))
        # The index only proposes partners; their scores are computed again from the windows,
        # so 8-bit codes change nothing reported, in a quarter of the memory of float32.
        index = faiss.index_factory(store.dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(lists, PROBES)
        sample = np.sort(np.random.default_rng(0).permutation(len(library))[: 64 * lists])
        index.train(np.concatenate([means for _, _, means in _batches(library, store, sample)]))
    for _, _, means in _batches(library, store, np.arange(len(library))):
        index.add(means)
    return index


def _nearest(index: faiss.Index, means: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """The NEIGHBOURS files nearest to each of ``batch`` by mean vector, -1 where there are fewer.

    The nearest k, whatever their cosine, and the threshold applied to their full score after,
    rather than a range search for the files within the threshold: a trim's mean can lie far
    below the threshold (0.82 for 4 windows of 6) while its windows match the original's, which
    only the window comparison tells.
    """
    _, found = index.search(means, NEIGHBOURS + 1)
    others = found != batch[:, None]
    # A file finds itself, unless exact copies tie with it and push it out: then the last goes.
    others[others.all(axis=1), -1] = False
    return found[others].reshape(len(batch), NEIGHBOURS)


def _scored(library: _Library, store: VectorStore, sounds: dict[int, tuple[np.ndarray, np.ndarray]],
            proposals: Iterable[tuple[int, int]], threshold: float) -> Iterator[NearPair]:
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
                yield NearPair(library.paths[first], library.paths[second], round(score, 6))


def _containment(first: np.ndarray, second: np.ndarray) -> float:
    shorter, longer = (first, second) if len(first) <= len(second) else (second, first)
    return float((shorter @ longer.T).max(axis=1).mean())
