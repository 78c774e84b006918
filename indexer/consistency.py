"""Checking that the catalog, the vector store and the disk agree, and making them agree again.

They can disagree after a crash between writing one and the other, or after either was
edited, restored or lost on its own (a catalog row deleted by hand, a vectors file copied
back from a backup). The catalog is the authority on which files and windows exist;
vectors are what can be recomputed:

- orphan vectors (no window names them) are removed;
- orphan windows (their file's row is gone) and orphan tags are removed, with the windows'
  vectors;
- windows whose vector is missing send their file back to 'pending', to be embedded again;
- indexed files without windows go back to 'pending' too;
- files waiting to be embedded (an interrupted run) are embedded;
- files gone from disk are forgotten (with their vectors), and files changed on disk since
  they were indexed are indexed again, when asked to look at the disk;
- but the files under a library folder that is not there, or is empty, are kept as they are:
  sound libraries live on external disks, and a disk not plugged in (or a share not mounted)
  must not cost its files. Such folders are listed; ``clapdex forget`` (``indexer.forgetting``)
  forgets one on request.

Every index run repairs the catalog and store before it starts, so an interrupted run
resumes from a consistent state; ``clapdex doctor`` (``indexer.doctor``) reports, and with
``--fix`` repairs, all of it.
"""

from __future__ import annotations

import dataclasses
import os
import numpy as np

from search.catalog import ERROR, Catalog
from search.library import MissingFolder, folders_away
from search.store import VectorStore


@dataclasses.dataclass
class Findings:
    orphan_vectors: np.ndarray  # ids in the store that no window has
    orphan_windows: list[int]  # ids of windows whose file row is gone
    orphan_tags: int  # tag rows whose file row is gone
    files_missing_vectors: list[str]  # paths of files with a window whose vector is absent
    indexed_without_windows: list[str]
    waiting: list[str] = dataclasses.field(default_factory=list)  # pending: catalogued, not embedded yet
    missing_on_disk: list[str] = dataclasses.field(default_factory=list)
    changed_on_disk: list[str] = dataclasses.field(default_factory=list)  # size or mtime not as catalogued
    missing_folders: list[MissingFolder] = dataclasses.field(default_factory=list)  # left alone by ``repair``

    @property
    def healthy(self) -> bool:
        return not (self.repairable or self.missing_folders)

    @property
    def repairable(self) -> bool:
        """Whether ``repair`` has anything to do: all but the missing folders, which only their user can settle."""
        return bool(len(self.orphan_vectors) or self.orphan_windows or self.orphan_tags or self.files_missing_vectors
                    or self.indexed_without_windows or self.waiting or self.missing_on_disk or self.changed_on_disk)

    def lines(self) -> list[str]:
        counted = [
            (len(self.orphan_vectors), "vectors belong to no window"),
            (len(self.orphan_windows), "windows belong to no file (its catalog row was deleted)"),
            (self.orphan_tags, "tags belong to no file"),
            (len(self.waiting), "files are catalogued but not embedded yet (an interrupted run)"),
        ]
        return (
            [f"{count} {what}" for count, what in counted if count]
            + [f"missing vectors: {path}" for path in self.files_missing_vectors]
            + [f"indexed without windows: {path}" for path in self.indexed_without_windows]
            + [f"missing on disk: {path}" for path in self.missing_on_disk]
            + [f"changed on disk since indexed: {path}" for path in self.changed_on_disk]
            + [folder.line() for folder in self.missing_folders]
        )


def examine(catalog: Catalog, store: VectorStore, full: bool = False) -> Findings:
    """What disagrees between catalog and store; with ``full`` (doctor), also the files waiting
    to be embedded and the disk, which an index run deals with on its own."""
    # Sorted and unique by hand: numpy's unique hashes, several seconds at 3 x 10^6 ids.
    stored = _sorted_unique(store.ids())
    windows = _sorted_unique(catalog.window_id_array())
    orphan_windows = catalog.orphan_window_ids()
    # Windows of no file (orphans) drop out here: file_ids_of_windows names only catalogued files.
    missing_ids = np.setdiff1d(windows, stored, assume_unique=True)
    findings = Findings(
        orphan_vectors=np.setdiff1d(stored, windows, assume_unique=True), orphan_windows=orphan_windows,
        orphan_tags=catalog.orphan_tag_count(),
        files_missing_vectors=catalog.paths_of(catalog.file_ids_of_windows(missing_ids.tolist()).values()),
        indexed_without_windows=catalog.indexed_without_windows(),
    )
    if not full:
        return findings
    findings.waiting = catalog.pending_paths()
    away = {path: (why, 0) for path, why in folders_away(root for root, _ in catalog.roots())}
    below = {path.rstrip(os.sep) + os.sep: path for path in away}  # what a path under each begins with
    inside = tuple(below)
    for path, size, mtime, status in catalog.sizes_and_times():
        if inside and path.startswith(inside):
            folder = next(below[prefix] for prefix in inside if path.startswith(prefix))
            why, count = away[folder]
            away[folder] = (why, count + 1)
            continue
        try:
            found = os.stat(path)
        except FileNotFoundError:
            findings.missing_on_disk.append(path)
            continue
        except OSError:
            continue  # unreadable now (permissions, a mount away): the next index run reports it
        # Unreadable files are `clapdex status`'s to report, and the next index run's to try again once changed.
        if status != ERROR and (found.st_size, found.st_mtime) != (size, mtime):
            findings.changed_on_disk.append(path)
    findings.missing_folders = [MissingFolder(path, count, why) for path, (why, count) in away.items()]
    return findings


def repair(catalog: Catalog, store: VectorStore, findings: Findings) -> None:
    """Make catalog and store agree as ``findings`` says; the caller checkpoints both.

    Files sent back to 'pending' need an embedding run to be searchable again, and files
    changed on disk an index run (``findings.changed_on_disk``). The files under missing
    folders are left as they are."""
    if len(findings.orphan_vectors):
        store.remove(findings.orphan_vectors)
    if findings.orphan_windows:
        store.remove(np.array(findings.orphan_windows, dtype=np.int64))
        catalog.delete_windows(findings.orphan_windows)
    if findings.orphan_tags:
        catalog.delete_orphan_tags()
    gone = set(findings.missing_on_disk)
    away = tuple(folder.path.rstrip(os.sep) + os.sep for folder in findings.missing_folders)
    for path in findings.files_missing_vectors + findings.indexed_without_windows:
        # Not embedded again while its folder is away: it would only fail, unreadable.
        if path not in gone and not (away and path.startswith(away)):
            store.remove(np.array(catalog.mark_pending(catalog.file(path)), dtype=np.int64))
    for path in findings.missing_on_disk:
        store.remove(np.array(catalog.delete_file(catalog.file(path)), dtype=np.int64))


def _sorted_unique(ids: np.ndarray) -> np.ndarray:
    ids = np.sort(np.asarray(ids, dtype=np.int64))
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))] if len(ids) else ids
