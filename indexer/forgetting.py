"""``clapdex forget``: files leave the catalog because their user says they are gone for good.

A library folder that is not there may be a disk that is not plugged in, so nothing forgets
the files under one on its own (``clapdex doctor`` lists such folders, ``indexer.consistency``):
this forgets the files under the folders (or the files) named, with their windows and
vectors. Files on disk are never touched.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import numpy as np

from search.filters import Filters
from search.library import Library, read_progress


@dataclasses.dataclass(frozen=True)
class Forgotten:
    path: str  # as named, made absolute
    files: int
    windows: int


class NothingIndexed(LookupError):
    """A path named to forget has no catalogued file under it (a typo, most likely)."""


class IndexRunning(RuntimeError):
    """An index run of the library is going on: it holds the vectors and would save them back."""


def forget(library: Library, paths: Iterable[str | os.PathLike]) -> list[Forgotten]:
    """Forget every catalogued file under each of ``paths`` (folders, or files), in the catalog and
    the vector store. Raises NothingIndexed, forgetting nothing, when a path has none; IndexRunning
    while an index run of the library is going on."""
    run = read_progress(library.settings.home)
    if run is not None and run["running"]:
        raise IndexRunning(f"an index run of this library is going on (process {run.get('pid')}); "
                           "forget once it has finished")
    catalog = library.catalog
    # Opened before anything changes, and used throughout: a reading library may open a saved file anew.
    store = library.store
    chosen: dict[str, list[int]] = {}
    taken: set[int] = set()  # a path inside another one named: its files are the first one's
    for path in dict.fromkeys(os.path.abspath(path) for path in paths):
        ids = catalog.file_ids_matching(Filters(folders=(path,))).tolist()
        record = catalog.file(path)
        if record is not None:
            ids.append(record.id)
        if not ids:
            folders = ", ".join(f"{root} ({count} files)" for root, count in catalog.roots())
            catalog.rollback()
            raise NothingIndexed(f"nothing is indexed under {path}; the library's folders: {folders or 'none'}")
        chosen[path] = [file_id for file_id in ids if file_id not in taken]
        taken.update(ids)
    forgotten, windows = [], []
    for path, ids in chosen.items():
        removed = catalog.delete_files(ids)
        forgotten.append(Forgotten(path, len(ids), len(removed)))
        windows += removed
    # The catalog first: dying before the store is saved leaves vectors that no window names, which
    # the next index run (or `clapdex doctor --fix`) removes; the other way round would leave
    # windows without vectors, whose files would be sent to be embedded again from a folder gone.
    catalog.commit()
    if windows:
        store.remove(np.array(windows, dtype=np.int64))
        store.save()
    return forgotten
