"""Vector stores: unit-length window embeddings keyed by the catalog's window ids.

Every store answers the same few calls, so the indexer and the engine never know which one
they hold; ``open_store`` picks it from ``settings.store``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from search.config import ConfigError, Settings


class VectorStore(Protocol):
    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and ids, each (len(queries), min(k, candidates)), best first.

        ``allowed_ids`` restricts the search to those windows (the catalog's answer to a
        filter); the restriction is applied inside the search, not to its results.
        """
        ...

    def reconstruct(self, ids: np.ndarray) -> np.ndarray: ...

    def ids(self) -> np.ndarray: ...

    def save(self) -> None: ...

    def __len__(self) -> int: ...


def open_store(settings: Settings, dim: int) -> VectorStore:
    if settings.store == "faiss":
        return FaissStore(settings.vectors_dir / "windows.faiss", dim)
    raise ConfigError(f"unknown vector store {settings.store!r}; known: 'faiss'")


class FaissStore:
    """Exact inner-product search (cosine, as the vectors are unit length) in one FAISS file."""

    def __init__(self, path: Path, dim: int):
        self.path = path
        self.dim = dim
        if path.exists():
            self.index = faiss.read_index(str(path))
            if self.index.d != dim:
                raise ConfigError(f"{path} holds {self.index.d}-dim vectors, not {dim}")
        else:
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids))) if len(ids) else 0

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        params = None
        candidates = len(self)
        if allowed_ids is not None:
            allowed_ids = np.asarray(allowed_ids, dtype=np.int64)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed_ids))
            candidates = min(candidates, len(allowed_ids))
        k = min(k, candidates)
        if k == 0:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        scores, ids = self.index.search(queries, k, params=params)
        # Fewer allowed ids than k in the index leave -1 slots; drop them from every row alike.
        keep = (ids >= 0).all(axis=0)
        return scores[:, keep], ids[:, keep]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.empty((0, self.dim), np.float32)
        return np.stack([self.index.reconstruct(int(i)) for i in ids])

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def save(self) -> None:
        """Write the whole index atomically: readers see the old file or the new one, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self.index, temp)
            os.replace(temp, self.path)
        except BaseException:
            os.unlink(temp)
            raise
