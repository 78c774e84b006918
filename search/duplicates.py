"""Duplicate files in a library: exact (same bytes) and near (same sound, other bytes).

Near duplicates are re-encodes, gain changes, resamples and trims: their embeddings are
nearly identical whatever the model's weights, while different sounds' are not. A pair's
score is the larger of two cosines: of the files' mean window vectors (re-encodes, gain,
resamples), and of each window of the shorter file with its best match in the longer one,
averaged (a trim keeps most windows of the original). Nothing is ever deleted: this lists.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from search.catalog import INDEXED, Catalog
from search.store import VectorStore, unit_vector

DEFAULT_THRESHOLD = 0.98
# Candidate partners per file compared window by window; the rest are too far by their means.
NEIGHBOURS = 10


@dataclasses.dataclass(frozen=True)
class NearPair:
    first: str
    second: str
    score: float


def exact_duplicates(catalog: Catalog) -> list[list[str]]:
    return [[record.path for record in group] for group in catalog.exact_duplicates()]


def near_duplicates(catalog: Catalog, store: VectorStore, threshold: float = DEFAULT_THRESHOLD) -> list[NearPair]:
    """Pairs of indexed files with different content that sound the same, best first."""
    files = [record for record in catalog.files(INDEXED) if record.windows]
    if len(files) < 2:
        return []
    window_vectors = [store.reconstruct(np.array([w.id for w in record.windows], dtype=np.int64)) for record in files]
    means = np.stack([unit_vector(vectors.mean(axis=0)) for vectors in window_vectors])
    pairs: list[NearPair] = []
    for row in range(0, len(files), 1024):
        similarities = means[row : row + 1024] @ means.T
        for offset, scores in enumerate(similarities):
            i = row + offset
            scores[: i + 1] = -np.inf  # each pair once, never a file with itself
            count = min(NEIGHBOURS, len(files) - i - 1)
            if count <= 0:
                continue
            for j in np.argpartition(-scores, count - 1)[:count]:
                if files[i].content_hash is not None and files[i].content_hash == files[j].content_hash:
                    continue  # an exact duplicate, listed as such
                score = max(float(scores[j]), _containment(window_vectors[i], window_vectors[j]))
                if score >= threshold:
                    pairs.append(NearPair(files[i].path, files[j].path, round(score, 6)))
    return sorted(pairs, key=lambda pair: (-pair.score, pair.first, pair.second))


def _containment(first: np.ndarray, second: np.ndarray) -> float:
    shorter, longer = (first, second) if len(first) <= len(second) else (second, first)
    return float((shorter @ longer.T).max(axis=1).mean())

