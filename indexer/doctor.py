"""Checking that the catalog and the vector store agree, and making them agree again.

They can disagree after a crash between writing one and the other, or after either was
edited, restored or lost on its own. The catalog is the authority on which files and
windows exist; vectors are what can be recomputed:

- orphan vectors (no window names them) are removed;
- windows whose vector is missing send their file back to 'pending', to be embedded again;
- indexed files without windows go back to 'pending' too;
- files gone from disk are forgotten (with their vectors), when asked to look at the disk.

Every index run repairs the first three before it starts, so an interrupted run resumes
from a consistent state; ``clapdex doctor`` reports (and with ``--fix`` repairs) all four.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from search.catalog import Catalog
from search.store import VectorStore


@dataclasses.dataclass
class Findings:
    orphan_vectors: np.ndarray  # ids in the store that no window has
    files_missing_vectors: list[str]  # paths of files with a window whose vector is absent
    indexed_without_windows: list[str]
    missing_on_disk: list[str]

    @property
    def healthy(self) -> bool:
        return not (len(self.orphan_vectors) or self.files_missing_vectors or self.indexed_without_windows
                    or self.missing_on_disk)

    def lines(self) -> list[str]:
        return (
            [f"{len(self.orphan_vectors)} vectors belong to no window"]
            * bool(len(self.orphan_vectors))
            + [f"missing vectors: {path}" for path in self.files_missing_vectors]
            + [f"indexed without windows: {path}" for path in self.indexed_without_windows]
            + [f"missing on disk: {path}" for path in self.missing_on_disk]
        )


def examine(catalog: Catalog, store: VectorStore, check_disk: bool = False) -> Findings:
    stored = np.unique(store.ids())
    named = np.unique(np.array(catalog.window_ids(), dtype=np.int64))
    missing_ids = np.setdiff1d(named, stored)
    files_missing_vectors = catalog.paths_of(catalog.file_ids_of_windows(missing_ids.tolist()).values())
    missing_on_disk = [path for _, path in catalog.paths_under(os.sep) if not os.path.exists(path)] if check_disk else []
    return Findings(np.setdiff1d(stored, named), files_missing_vectors, catalog.indexed_without_windows(), missing_on_disk)


def repair(catalog: Catalog, store: VectorStore, findings: Findings) -> None:
    """Make catalog and store agree as ``findings`` says; the caller checkpoints both.

    Files sent back to 'pending' need an embedding run to be searchable again."""
    if len(findings.orphan_vectors):
        store.remove(findings.orphan_vectors)
    gone = set(findings.missing_on_disk)
    for path in findings.files_missing_vectors + findings.indexed_without_windows:
        if path not in gone:
            store.remove(np.array(catalog.mark_pending(catalog.file(path)), dtype=np.int64))
    for path in findings.missing_on_disk:
        store.remove(np.array(catalog.delete_file(catalog.file(path)), dtype=np.int64))
