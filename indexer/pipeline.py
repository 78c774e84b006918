"""files -> catalog (scan) -> audio -> windows -> embeddings -> catalog + vectors (embed).

An index run has two phases. The scan walks the roots and catalogues every audio file with
its metadata, as 'pending' when it is new or changed: cheap, and the files are findable by
name and metadata at once. Unchanged files (same size and mtime) are skipped; a changed
size or mtime is confirmed by the content hash, which also recognises a moved or renamed
file, re-pointed without embedding it again. Files gone from a scanned folder are
forgotten. The embedding phase then decodes the pending files as streams, pools their
windows into full batches for the model, and stores each file's windows and vectors.

Consistency under kill -9: the catalog is committed in checkpoints, each after the vector
store has been saved (atomically), so a crash leaves at worst vectors the catalog does not
name, or (after removals) windows whose vectors are gone. Each run starts by repairing both
(``indexer.doctor``), then redoes whatever was not committed: the result equals an
uninterrupted run's.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from encoders.audio import AudioInfo, Window
from encoders.decoding import decode_windows
from indexer.doctor import examine, repair
from indexer.metadata import read_metadata
from search.progress import ProgressFile
from indexer.scan import Found, content_hash, scan
from search.catalog import ERROR, INDEXED, PENDING, Catalog, File, Metadata, ModelIdentity
from search.config import Settings
from search.engine import open_encoder
from search.store import VectorStore, open_store

# Every event shorter than window - hop = 3.5 s lies wholly inside some window (a window
# starts at most 3.5 s before it), and each moment of audio is seen by two windows, at
# twice the vectors of hop = window.
HOP_SECONDS = 3.5
# An interrupted run loses at most this much work; FAISS rewrites its whole file at each.
CHECKPOINT_SECONDS = 30.0
CHECKPOINT_FILES = 500
# The scan only writes the catalog (cheap), so it commits more often.
SCAN_CHECKPOINT_SECONDS = 5.0
SCAN_CHECKPOINT_FILES = 1000

# Called once per file with its path and what became of it: "pending", "moved", "unchanged",
# "indexed" or "error" (a file can be "pending" in the scan and "indexed" after).
Progress = Callable[[str, str], None]


@dataclasses.dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)
    notice: str | None = None  # about the model chosen for the user, when it is not the obvious one

    def summary(self) -> dict[str, int]:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "moved": self.moved,
                "removed": self.removed, "errors": len(self.errors)}


def index_paths(
    settings: Settings,
    paths: Iterable[str | os.PathLike],
    encoder=None,
    progress: Progress | None = None,
    checkpoint_files: int = CHECKPOINT_FILES,
    show_progress: bool = False,
) -> IndexReport:
    """Bring the index up to date with the audio files under ``paths`` (folders or files).

    Bad files are recorded with status 'error' and their reason, and the run goes on.
    Raises FileNotFoundError, before touching anything, when a path does not exist.
    """
    paths = [os.path.abspath(path) for path in paths]
    found = scan(paths)
    with _IndexRun(settings, encoder, progress, checkpoint_files, show_progress) as run:
        run.scan(found, folders=[path for path in paths if os.path.isdir(path)])
        run.embed_pending()
        return run.finish()


def embed_pending(settings: Settings, encoder=None, progress: Progress | None = None, show_progress: bool = False) -> IndexReport:
    """Embed the files the catalog holds as 'pending' (after ``clapdex doctor --fix``)."""
    with _IndexRun(settings, encoder, progress, CHECKPOINT_FILES, show_progress) as run:
        run.embed_pending()
        return run.finish()


@dataclasses.dataclass(eq=False)
class _FileJob:
    """A pending file on its way through the model."""

    record: File
    windows: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    vectors: list[np.ndarray] = dataclasses.field(default_factory=list)
    info: AudioInfo | None = None
    error: str | None = None
    decoded: bool = False  # every window has been cut (or decoding failed)

    @property
    def ready(self) -> bool:
        return self.decoded and (self.error is not None or len(self.vectors) == len(self.windows))


class _IndexRun:
    def __init__(self, settings: Settings, encoder, progress: Progress | None, checkpoint_files: int,
                 show_progress: bool):
        self.tracker = ProgressFile(settings.home)
        self.tracker.start("starting", None)  # before the model loads: status stops showing the last run
        self.checkpoint_files = max(1, checkpoint_files)
        self.notify = progress or (lambda path, outcome: None)
        self.show_progress = show_progress
        self.report = IndexReport()
        self.catalog = Catalog(settings.catalog_url)
        try:
            self.encoder, self.report.notice = (encoder, None) if encoder else open_encoder(settings, self.catalog.model())
            self.batch_size = settings.batch_size or self.encoder.batch_size
            self.catalog.claim_model(ModelIdentity.of(self.encoder))
            self.catalog.set_meta("window_seconds", str(self.encoder.window_seconds))
            self.catalog.set_meta("hop_seconds", str(HOP_SECONDS))
            self.store: VectorStore = open_store(settings, self.encoder.dim)
            repair(self.catalog, self.store, examine(self.catalog, self.store))
            self.checkpoint()
        except BaseException:
            self.catalog.close()
            if hasattr(self, "store"):
                self.store.close()
            raise

    def __enter__(self) -> _IndexRun:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is not None:
            self.catalog.rollback()
        self.catalog.close()
        self.store.close()

    def checkpoint(self) -> None:
        # Vectors first: dying between the two leaves vectors the catalog does not name, or
        # windows whose vectors were removed; the next run's repair handles both.
        self.store.save()
        self.catalog.commit()

    def finish(self) -> IndexReport:
        self.checkpoint()
        self.tracker.finish(self.report.summary())
        return self.report

    # --- phase 1: the scan

    def scan(self, found: Iterator[Found], folders: list[str]) -> None:
        seen: set[int] = set()
        self.tracker.start("scanning", None)
        last_checkpoint, since_checkpoint = time.monotonic(), 0
        with tqdm(desc="scanning", unit=" files", disable=None if self.show_progress else True) as bar:
            for path, root in found:
                record = self.catalogue(path, root)
                if record is not None:
                    seen.add(record.id)
                bar.update()
                since_checkpoint += 1
                self.tracker.advance(len(seen), len(self.report.errors))
                if since_checkpoint >= SCAN_CHECKPOINT_FILES or time.monotonic() - last_checkpoint >= SCAN_CHECKPOINT_SECONDS:
                    self.checkpoint()
                    last_checkpoint, since_checkpoint = time.monotonic(), 0
        for folder in folders:
            for file_id, path in list(self.catalog.paths_under(folder)):
                if file_id not in seen:
                    self.remove(self.catalog.file_by_id(file_id))
        self.checkpoint()

    def catalogue(self, path: str, root: str) -> File | None:
        """Record ``path`` as found now; returns its catalog record."""
        record = self.catalog.file(path)
        try:
            found = os.stat(path)  # follows symlinks: a loop raises ELOOP here
            if not stat.S_ISREG(found.st_mode):
                raise _NotAudio("not a regular file")
            if record is not None and record.status != ERROR and (record.size, record.mtime) == (found.st_size, found.st_mtime):
                return self.unchanged(record)
            if found.st_size == 0:
                raise _NotAudio("empty file")
            digest = content_hash(path)
        except OSError as exc:
            return self.failed(self.catalog.upsert_file(path, root=root, size=0, mtime=0.0), exc.strerror or str(exc))
        except _NotAudio as exc:
            size = found.st_size if stat.S_ISREG(found.st_mode) else 0
            return self.failed(self.catalog.upsert_file(path, root=root, size=size, mtime=found.st_mtime), str(exc))
        if record is not None and record.status != ERROR and record.content_hash == digest:
            record.size, record.mtime = found.st_size, found.st_mtime  # touched, not changed
            return self.unchanged(record)
        if record is None:
            moved = self.moved_from(digest)
            if moved is not None:
                return self.move(moved, path, root, found.st_mtime)
        if record is not None:
            self.store.remove(np.array(self.catalog.mark_pending(record), dtype=np.int64))
        record = self.catalog.upsert_file(path, root=root, size=found.st_size, mtime=found.st_mtime, content_hash=digest)
        record.status, record.error = PENDING, None
        self.catalog.set_metadata(record, _metadata_of(path))
        self.catalog.session.flush()
        self.notify(path, "pending")
        return record

    def unchanged(self, record: File) -> File:
        if record.status == INDEXED and record.hop != HOP_SECONDS:
            # Windows cut with another hop (an index from an older clapdex): cut and embed again.
            self.store.remove(np.array(self.catalog.mark_pending(record), dtype=np.int64))
        self.report.unchanged += 1
        self.notify(record.path, "unchanged")
        return record

    def moved_from(self, digest: str) -> File | None:
        """A catalogued file with this content whose path no longer exists: moved or renamed."""
        for candidate in self.catalog.files_with_hash(digest):
            if candidate.status != ERROR and not os.path.lexists(candidate.path):
                return candidate
        return None

    def move(self, record: File, path: str, root: str, mtime: float) -> File:
        self.catalog.move_file(record, path, root=root, mtime=mtime)
        # The name can carry metadata (UCS); what decoding measured stays.
        self.catalog.set_metadata(record, _metadata_of(path), header=record.status != INDEXED)
        self.catalog.session.flush()
        self.sync_payload(record)
        self.report.moved += 1
        self.notify(path, "moved")
        return record

    def remove(self, record: File) -> None:
        self.store.remove(np.array(self.catalog.delete_file(record), dtype=np.int64))
        self.report.removed += 1

    def failed(self, record: File, reason: str) -> File:
        self.store.remove(np.array(self.catalog.mark_error(record, reason), dtype=np.int64))
        self.report.errors.append((record.path, reason))
        self.notify(record.path, "error")
        return record

    def sync_payload(self, record: File) -> None:
        # Stores that keep file metadata beside the vectors (Qdrant) filter on it; FAISS does not.
        if hasattr(self.store, "set_payload") and record.windows:
            self.store.set_payload(np.array([w.id for w in record.windows], dtype=np.int64), record)

    # --- phase 2: embedding

    def embed_pending(self) -> None:
        pending = self.catalog.pending_files()
        self.tracker.start("embedding", len(pending))
        pool: list[tuple[_FileJob, Window]] = []
        waiting: collections.deque[_FileJob] = collections.deque()
        self.done = self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        with tqdm(total=len(pending), desc="embedding", unit=" files", disable=None if self.show_progress else True) as bar:
            self.bar = bar
            for job, window in self.cut(pending):
                if window is None:
                    waiting.append(job)
                else:
                    pool.append((job, window))
                if len(pool) >= self.batch_size:
                    self.embed(pool)
                    pool.clear()
                self.store_ready(waiting)
            self.embed(pool)
            self.store_ready(waiting)

    def cut(self, pending: list[File]) -> Iterator[tuple[_FileJob, Window | None]]:
        """Each pending file's windows as they are decoded (by worker processes, files
        interleaved), then (job, None) when it is done."""
        jobs = [_FileJob(record) for record in pending]
        paths = [record.path for record in pending]
        for piece in decode_windows(paths, self.encoder.sample_rate, self.encoder.window_seconds, HOP_SECONDS):
            job = jobs[piece.number]
            for start, end, samples in zip(piece.starts, piece.ends, piece.samples):
                job.windows.append((start, end))
                yield job, Window(start, end, samples)
            if piece.done:
                job.info, job.error, job.decoded = piece.info, piece.error, True
                yield job, None

    def embed(self, pool: list[tuple[_FileJob, Window]]) -> None:
        if not pool:
            return
        vectors = self.encoder.embed_audio([window.samples for _, window in pool], batch_size=self.batch_size)
        for (job, _), vector in zip(pool, vectors):
            job.vectors.append(vector)

    def store_ready(self, waiting: collections.deque[_FileJob]) -> None:
        while waiting and waiting[0].ready:
            job = waiting.popleft()
            if job.error is not None:
                self.failed(job.record, job.error)
            else:
                self.store_file(job)
            self.done += 1
            self.since_checkpoint += 1
            self.bar.update()
            self.tracker.advance(self.done, len(self.report.errors))
            if self.since_checkpoint >= self.checkpoint_files or time.monotonic() - self.last_checkpoint >= CHECKPOINT_SECONDS:
                self.checkpoint()
                self.since_checkpoint, self.last_checkpoint = 0, time.monotonic()

    def store_file(self, job: _FileJob) -> None:
        info = job.info
        removed, added = self.catalog.replace_windows(
            job.record, job.windows, duration=info.duration, sample_rate=info.sample_rate, channels=info.channels,
            codec=info.codec, bit_depth=info.bit_depth, hop=HOP_SECONDS,
        )
        self.store.remove(np.array(removed, dtype=np.int64))
        self.store.add(np.array(added, dtype=np.int64), np.stack(job.vectors))
        self.sync_payload(job.record)
        self.report.indexed += 1
        self.notify(job.record.path, "indexed")


class _NotAudio(Exception):
    """A path the scan found that cannot hold audio at all."""


def _metadata_of(path: str) -> Metadata:
    try:
        return read_metadata(path)
    except Exception:  # metadata is optional; a file with unreadable tags is still indexed
        return Metadata()
