"""files -> catalog (scan) -> audio -> windows -> embeddings -> catalog + vectors (embed).

An index run has two stages, overlapped. The scan walks the roots and catalogues every
audio file with its metadata, as 'pending' when it is new or changed: cheap, and the files
are findable by name and metadata at once. Unchanged files (same size and mtime) are
skipped; a changed size or mtime is confirmed by the content hash, which also recognises a
moved or renamed file, re-pointed without embedding it again. Files gone from a scanned
folder are forgotten. Embedding takes each pending file as the scan catalogues it: it
decodes the files as streams, pools their windows into full batches for the model, and
stores each file's windows and vectors. Both stages run in worker processes started before
the model loads, and the catalog has one writer, this process's main thread.

Consistency under kill -9: the catalog is committed in checkpoints, each after the vector
store has been saved (atomically), so a crash leaves at worst vectors the catalog does not
name, or (after removals) windows whose vectors are gone. Each run starts by repairing both
(``indexer.doctor``), then redoes whatever was not committed: the result equals an
uninterrupted run's.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import shlex
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np
from tqdm import tqdm

from encoders.audio import AudioInfo
from encoders.batches import BatchEmbedder
from encoders.decoding import decode_windows, start_workers
from indexer.consistency import examine, repair
from indexer.metadata import read_metadata
from indexer.progress import ProgressFile
from indexer.scan import Contents, Found, read_batches, scan, start_readers
from search.catalog import ERROR, INDEXED, PENDING, Embedded, File, Known, Metadata, NewFile
from search.filters import Filters
from search.library import Library, folder_away
from search.store import VectorStore

log = logging.getLogger(__name__)

# Windows start every half window (3.5 s for MS-CLAP's 7-s windows, 2.5 s for the compact
# model's 5 s): every event shorter than half a window lies wholly inside one window, and
# each moment of audio is seen by two windows, at twice the vectors of hop = window.
HOP_SHARE = 0.5
# An interrupted run loses at most this much work; FAISS rewrites its whole file at each
# checkpoint that follows a change to the vectors.
CHECKPOINT_SECONDS = 30.0
CHECKPOINT_FILES = 500
# Until vectors change, a checkpoint only commits the catalog (cheap), so the scan's come
# more often: files are findable by name soon after they are found.
SCAN_CHECKPOINT_SECONDS = 5.0
SCAN_CHECKPOINT_FILES = 1000
# The scan's new files' keyword texts are written together after its end, and at the first
# checkpoint after this long since they were last written (``Catalog.owe_texts``): keyword
# search finds a new file that much later than filters do.
SCAN_TEXT_SECONDS = 30.0
# After the scan, the texts are written this many at a time whenever the decoders' pieces leave
# this thread nothing else to do (about 6 ms of work, less than a decoder takes for a clip): written
# all at once, they held up the hand-out of files, and the decoders, for half a second.
TEXTS_AT_ONCE = 128
# Files the scan looks up, reads and writes together: one query and one flush for all. They are
# read by the worker processes ``start_index_workers`` starts; without them, the first batch's
# worth of files to read is read in this process, the rest by workers started then.
SCAN_BATCH = 64
# Files looked up in the catalog at a time: an unchanged rescan does little else, and a query
# for 64 paths cost about as much as one for a thousand.
LOOK_UP_BATCH = 1024

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

    def summary(self) -> dict[str, int]:
        return {"indexed": self.indexed, "unchanged": self.unchanged, "moved": self.moved,
                "removed": self.removed, "errors": len(self.errors)}


class Embedding(Protocol):
    """Where the decode and embed stage runs, when not in this process's decoders and model
    (``indexer.cluster.RayEmbedding``): ``embed`` does what ``IndexRun.embed`` does, handing each
    file back to the run's ``store_ready``, so the run stays the only writer."""

    def embed(self, run: IndexRun, files: Iterable[tuple[int, str]], total: int | None = None) -> None: ...


def index_paths(
    library: Library,
    paths: Iterable[str | os.PathLike],
    progress: Progress | None = None,
    checkpoint_files: int = CHECKPOINT_FILES,
    show_progress: bool = False,
    embedding: Embedding | None = None,
) -> IndexReport:
    """Bring ``library`` (opened with ``create=True``) up to date with the audio files under
    ``paths`` (folders or files); ``embedding``: where files are decoded and embedded, if not here.

    Bad files are recorded with status 'error' and their reason, and the run goes on.
    Raises FileNotFoundError, before touching anything, when a path does not exist.
    """
    paths = [os.path.abspath(path) for path in paths]
    found = scan(paths)
    start_index_workers(decoders=embedding is None)
    with IndexRun(library, progress, checkpoint_files, show_progress) as run:
        files = run.scan(found, folders=[path for path in paths if os.path.isdir(path)])
        if embedding:
            embedding.embed(run, files)
        else:
            run.embed(files)
        return run.finish()


def embed_pending(library: Library, progress: Progress | None = None, checkpoint_files: int = CHECKPOINT_FILES,
                  show_progress: bool = False, embedding: Embedding | None = None) -> IndexReport:
    """Embed the files the catalog holds as 'pending' (after ``clapdex doctor --fix``, or a change of model)."""
    start_index_workers(decoders=embedding is None)
    with IndexRun(library, progress, checkpoint_files, show_progress) as run:
        pending = run.pending_besides(set())
        run.tracker.start("embedding", len(pending))
        if embedding:
            embedding.embed(run, pending, total=len(pending))
        else:
            run.embed(pending, total=len(pending))
        return run.finish()


def start_index_workers(decoders: bool = True) -> None:
    """Start the scan's readers and (unless ``decoders`` is False: a run that decodes elsewhere)
    the decoders, unless running already. Call it before the model loads (the index verb does):
    forked from a process holding a model on a GPU, each of them costs about 47 ms to start, a
    second or more for a machine's worth."""
    start_readers()
    if decoders:
        start_workers()


@dataclasses.dataclass(eq=False)
class FileJob:
    """A pending file on its way through the model."""

    file_id: int
    path: str
    windows: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    vectors: list[np.ndarray] = dataclasses.field(default_factory=list)
    info: AudioInfo | None = None
    error: str | None = None
    decoded: bool = False  # every window has been cut (or decoding failed)

    @property
    def ready(self) -> bool:
        return self.decoded and (self.error is not None or len(self.vectors) == len(self.windows))


class IndexRun:
    """One run over a library: the only writer of its catalog and vectors while it lasts, whether
    its files are decoded and embedded here or on a Ray cluster (`indexer.cluster`)."""

    def __init__(self, library: Library, progress: Progress | None, checkpoint_files: int, show_progress: bool):
        self.tracker = ProgressFile(library.settings.home)
        self.tracker.start("starting", None)  # before the model loads: status stops showing the last run
        self.checkpoint_files = max(1, checkpoint_files)
        self.notify = progress or (lambda path, outcome: None)
        self.show_progress = show_progress
        self.report = IndexReport()
        self.done = 0  # files embedded (or failed in decoding) and stored
        self.seen: set[int] = set()  # ids of the files the scan found, so far
        self.library, self.catalog = library, library.catalog
        try:
            self.encoder = library.encoder
            self.hop = self.encoder.window_seconds * HOP_SHARE
            self.catalog.claim_model(library.identity)
            self.store: VectorStore = library.store
            findings = examine(self.catalog, self.store)
            repair(self.catalog, self.store, findings)
            self.catalog.pay_texts()  # those a killed run owed
            self.texts_paid = time.monotonic()
            # What the repair did is saved before anything else; an empty store, to make its file.
            self.vectors_changed = not findings.healthy or len(self.store) == 0
            self.embedded_since_checkpoint = self.scanned_since_checkpoint = 0
            self.last_checkpoint = time.monotonic()
            self.checkpoint()
        except BaseException:
            self.catalog.rollback()
            raise
        library.indexed = self.catalog.model()

    def __enter__(self) -> IndexRun:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is not None:
            self.catalog.rollback()

    def checkpoint(self) -> None:
        # Vectors first: dying between the two leaves vectors the catalog does not name, or
        # windows whose vectors were removed; the next run's repair handles both.
        started = time.perf_counter()
        if self.vectors_changed:
            self.store.save()
            self.vectors_changed = False
        if self.catalog.owes_texts and time.monotonic() - self.texts_paid >= SCAN_TEXT_SECONDS:
            self.pay_texts()
        self.catalog.commit()
        self.embedded_since_checkpoint = self.scanned_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        log.debug("checkpoint: %d vectors and the catalog committed in %.2f s", len(self.store),
                  time.perf_counter() - started)

    def pay_texts(self) -> None:
        started = time.perf_counter()
        paid = self.catalog.pay_texts()
        self.texts_paid = time.monotonic()
        log.debug("keyword texts of %d files written in %.2f s", paid, time.perf_counter() - started)

    def counted(self, scanned: int = 0, embedded: int = 0) -> None:
        """Files done by the scan or by embedding: a checkpoint when it is time. Once vectors have
        changed, a checkpoint saves them whole, so only embedded files and time bring it on."""
        self.embedded_since_checkpoint += embedded
        self.scanned_since_checkpoint += scanned
        elapsed = time.monotonic() - self.last_checkpoint
        if self.vectors_changed:
            due = self.embedded_since_checkpoint >= self.checkpoint_files or elapsed >= CHECKPOINT_SECONDS
        else:
            due = self.scanned_since_checkpoint >= SCAN_CHECKPOINT_FILES or elapsed >= SCAN_CHECKPOINT_SECONDS
        if due:
            self.checkpoint()

    def add_vectors(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.store.add(ids, vectors)
        self.vectors_changed = True

    def drop_vectors(self, ids: list[int]) -> None:
        if ids:
            self.store.remove(np.array(ids, dtype=np.int64))
            self.vectors_changed = True

    def finish(self) -> IndexReport:
        if self.catalog.owes_texts:
            self.pay_texts()
        self.checkpoint()
        self.tracker.finish(self.report.summary())
        return self.report

    # --- the scan

    def scan(self, found: Iterator[Found], folders: list[str]) -> Iterator[tuple[int, str]]:
        """Catalogue the files ``found``, yielding (id, path) of each to embed once the batch after
        its own is catalogued; then forget the files gone from ``folders``, and yield the files
        left pending elsewhere (by an interrupted run, or ``doctor --fix``).

        The batch held back means the scan's end is known (and with it how many files there are
        to embed) before the last batch's files are asked for."""
        seen = self.seen = set()
        to_embed: set[int] = set()
        held: list[tuple[int, str]] = []
        self.tracker.start("scanning", None)
        self.catalog.owe_texts()
        to_read = ((batch, [(item.path, item.known_digest) for item in batch if item.to_read])
                   for batch in self.look_up(found))
        with tqdm(desc="scanning", unit=" files", position=0,
                  disable=None if self.show_progress else True) as bar:
            for batch, contents in read_batches(to_read, _metadata_of, alone=SCAN_BATCH):
                ids, pending = self.catalogue(batch, contents)
                seen.update(ids)
                bar.update(len(batch))
                self.tracker.advance(len(seen), len(self.report.errors))
                self.counted(scanned=len(batch))
                to_embed.update(file_id for file_id, _ in pending)
                yield from held
                held = pending
        for folder in folders:
            # Ids alone, through the driver's cursor: every file of the library, a million at 10^6.
            catalogued = self.catalog.file_ids_matching(Filters(folders=(folder,))).tolist()
            gone = [file_id for file_id in catalogued if file_id not in seen]
            if gone and len(gone) == len(catalogued) and folder_away(folder) == "empty":
                # The mount point of a disk not mounted (a watched one unplugged, too) must not cost its files.
                log.warning("%s is empty, but %d files are indexed under it: kept, as a disk may not be mounted "
                            "there; `clapdex forget %s` forgets them", folder, len(gone), shlex.quote(folder))
                continue
            for file_id in gone:
                self.remove(self.catalog.file_by_id(file_id))
        self.catalog.owe_texts(False)  # the texts owed are written while embedding (``embed``) or by ``finish``
        self.checkpoint()
        rest = self.pending_besides(to_embed)
        self.tracker.start("embedding", len(to_embed) + len(rest), done=self.done)
        self.bar.total = len(to_embed) + len(rest)  # until now a count: the scan was still finding files
        self.bar.refresh()
        yield from held
        yield from rest

    def pending_besides(self, taken: set[int]) -> list[tuple[int, str]]:
        """(id, path) of the pending files not in ``taken``."""
        return [(file_id, path) for file_id, path in self.catalog.pending() if file_id not in taken]

    def look_up(self, found: Iterator[Found]) -> Iterator[list[_Seen]]:
        """The files found, in batches, each with what the catalog knows of it and what its stat
        says; and, for those to be written (changed or unreadable), its record."""
        while found_now := list(itertools.islice(found, LOOK_UP_BATCH)):
            known = self.catalog.known_at(path for path, _ in found_now)
            for start in range(0, len(found_now), SCAN_BATCH):
                seen = [_Seen.stat(path, root, known.get(path)) for path, root in found_now[start : start + SCAN_BATCH]]
                to_write = [item.known.id for item in seen if item.known and (item.to_read or item.problem)]
                records = self.catalog.files_by_id(to_write) if to_write else {}
                for item in seen:
                    item.record = records.get(item.known.id) if item.known else None
                yield seen

    def catalogue(self, batch: list[_Seen], contents: list[Contents]) -> tuple[list[int], list[tuple[int, str]]]:
        """Record ``batch`` as found now, given the contents of those of its files that were read
        (in order); returns their ids in the catalog, and (id, path) of those now pending."""
        for item, read in zip([item for item in batch if item.to_read], contents, strict=True):
            item.contents = read
        # Only a new file whose content is catalogued already can have been moved.
        new = {item.contents.digest for item in batch if item.known is None and item.contents and item.contents.digest}
        same_content = self.catalog.files_with_hashes(new) if new else {}
        ids, fresh, pending = [], [], []
        for item in batch:
            record = self.catalogue_one(item, same_content, fresh)
            if record is not None:
                ids.append(record.id)
                if record.status == PENDING:
                    pending.append((record.id, record.path))
        self.catalog.flush()
        fresh_ids = self.catalog.add_files(fresh)
        for file in fresh:
            self.notify(file.path, "pending")
        return ids + fresh_ids, pending + [(file_id, file.path) for file_id, file in zip(fresh_ids, fresh)]

    def catalogue_one(self, item: _Seen, same_content: dict[str, list[tuple[int, str, str]]],
                      fresh: list[NewFile]) -> File | None:
        """Record ``item``, or add it to ``fresh`` when it is new; ``same_content``: content hash ->
        the catalogued files with that content (``Catalog.files_with_hashes``)."""
        record, path, root = item.record, item.path, item.root
        if item.problem is not None:
            record = self.catalog.set_file(record, path, root=root, size=item.size, mtime=item.mtime)
            return self.failed(record, item.problem)
        if item.contents is None:
            return self.unchanged(item.known)
        digest, metadata, error = item.contents
        if error is not None:
            # Recorded with no size or mtime a stat could find, so it is read again at every run: what
            # kept it from being read (permissions, an I/O error) can end without the file changing.
            return self.failed(self.catalog.set_file(record, path, root=root, size=0, mtime=0.0), error)
        if digest == item.known_digest:
            record.size, record.mtime = item.size, item.mtime  # touched, not changed
            return self.unchanged(record)
        if item.known is None:
            moved = self.moved_from(same_content.get(digest, []))
            if moved is not None:
                return self.move(moved, path, root, item.mtime, metadata)
            fresh.append(NewFile(path, root, item.size, item.mtime, digest, metadata))
            return None
        self.drop_vectors(self.catalog.mark_pending(record))
        record = self.catalog.set_file(record, path, root=root, size=item.size, mtime=item.mtime, content_hash=digest)
        record.status, record.error = PENDING, None
        self.catalog.set_metadata(record, metadata)
        self.notify(path, "pending")
        return record

    def unchanged(self, record: File | Known) -> File | Known:
        if record.status == INDEXED and record.hop != self.hop:
            # Windows cut with another hop (an index from an older clapdex): cut and embed again.
            if isinstance(record, Known):
                record = self.catalog.file_by_id(record.id)
            self.drop_vectors(self.catalog.mark_pending(record))
        if record.status == PENDING:
            # Left waiting by an interrupted run, or to be cut again: counted once embedded.
            self.notify(record.path, "pending")
            return record
        self.report.unchanged += 1
        self.notify(record.path, "unchanged")
        return record

    def moved_from(self, same_content: list[tuple[int, str, str]]) -> File | None:
        """Of the catalogued files with a new file's content ((id, path, status) as the batch
        began), one whose path no longer exists: moved or renamed."""
        for file_id, path, status in same_content:
            # A file this scan found is where the catalog says: no need to look (a library of
            # many copies has many files of one content).
            if file_id not in self.seen and status != ERROR and not os.path.lexists(path):
                candidate = self.catalog.file_by_id(file_id)
                if not os.path.lexists(candidate.path):  # not moved by a file before in this batch
                    return candidate
        return None

    def move(self, record: File, path: str, root: str, mtime: float, metadata: Metadata) -> File:
        self.catalog.move_file(record, path, root=root, mtime=mtime)
        # The name can carry metadata (UCS); what decoding measured stays.
        self.catalog.set_metadata(record, metadata, header=record.status != INDEXED)
        self.catalog.flush()
        self.sync_payload(record)
        if record.status == PENDING:  # its vectors were gone already: counted once embedded
            self.notify(path, "pending")
            return record
        self.report.moved += 1
        self.notify(path, "moved")
        return record

    def remove(self, record: File) -> None:
        self.drop_vectors(self.catalog.delete_file(record))
        self.report.removed += 1

    def failed(self, record: File, reason: str) -> File:
        self.drop_vectors(self.catalog.mark_error(record, reason))
        self.report.errors.append((record.path, reason))
        self.notify(record.path, "error")
        return record

    def sync_payload(self, record: File, window_ids: list[int] | None = None) -> None:
        """Stores that keep file metadata beside the vectors (Qdrant) filter on it; FAISS does not.
        ``window_ids``: the record's windows, when the caller knows them."""
        if self.store.keeps_payload:
            ids = [window.id for window in record.windows] if window_ids is None else window_ids
            if ids:
                self.store.set_payload(np.array(ids, dtype=np.int64), record)

    # --- embedding

    def embed(self, files: Iterable[tuple[int, str]], total: int | None = None) -> None:
        """Decode, embed and store ``files`` ((id, path) of pending files; ``total`` of them, when
        known), taking each when a decoder has room for it: an iterator still being filled by the
        scan is welcome."""
        started: dict[int, FileJob] = {}  # by the number decode_windows gives each file
        waiting: collections.deque[FileJob] = collections.deque()  # decoded, stored in this order once embedded
        embedding: collections.deque[FileJob] = collections.deque()  # the file of each window given to the model

        # The scan runs ahead of the decoders whenever this thread has nothing else to do, so a
        # library is catalogued (findable by name and metadata) at the scan's pace, not the model's.
        files = iter(files)
        ahead: collections.deque[tuple[int, str]] = collections.deque()

        def scan_ahead() -> bool:
            found = next(files, None)
            if found is not None:
                ahead.append(found)
            return found is not None

        def idle() -> bool:  # the scan first, then its texts
            return scan_ahead() or (self.catalog.owes_texts and self.catalog.pay_texts(TEXTS_AT_ONCE) > 0)

        def paths() -> Iterator[str]:
            number = 0
            while ahead or scan_ahead():
                file_id, path = ahead.popleft()
                started[number] = FileJob(file_id, path)
                number += 1
                yield path

        with (tqdm(total=total, desc="embedding", unit=" files", position=1,
                   disable=None if self.show_progress else True) as bar,
              BatchEmbedder(self.encoder) as batches):
            self.bar = bar
            # Worker processes decode the files, interleaved; a file's windows come in order.
            for piece in decode_windows(paths(), self.encoder.sample_rate, self.encoder.window_seconds, self.hop,
                                        idle=idle):
                job = started[piece.number]
                if piece.samples:
                    # A copy (the samples are the decoder's memory), of the piece's audio once.
                    batches.add_windows(piece.span, piece.offsets, [len(window) for window in piece.samples])
                job.windows += zip(piece.starts, piece.ends)
                embedding.extend([job] * len(piece.samples))
                if piece.done:
                    job.info, job.error, job.decoded = piece.info, piece.error, True
                    waiting.append(started.pop(piece.number))
                _hand_back(batches.ready(), embedding)
                self.store_ready(waiting)
            _hand_back(batches.finish(), embedding)
            self.store_ready(waiting)

    def store_ready(self, waiting: collections.deque[FileJob]) -> None:
        """Store the jobs at the head of ``waiting`` that are ready, together, up to each checkpoint."""
        while waiting and waiting[0].ready:
            jobs = []
            while waiting and waiting[0].ready and (not jobs or self.embedded_since_checkpoint + len(jobs) < self.checkpoint_files):
                jobs.append(waiting.popleft())
            self.store_files(jobs)
            self.done += len(jobs)
            self.bar.update(len(jobs))
            self.tracker.advance(self.done, len(self.report.errors))
            self.counted(embedded=len(jobs))

    def store_files(self, jobs: list[FileJob]) -> None:
        """The windows and vectors of ``jobs`` (those decoded), in a few statements; the others' errors."""
        records = self.catalog.files_by_id(job.file_id for job in jobs)
        stored = [job for job in jobs if job.error is None]
        for job in jobs:
            if job.error is not None:
                record = records[job.file_id]
                if not os.access(job.path, os.R_OK):
                    # Gone or refused since the scan (a disk pulled out, permissions): recorded as never
                    # seen, so the next run tries it again, however unchanged it then looks.
                    record.size, record.mtime = 0, 0.0
                self.failed(record, job.error)
        if not stored:
            return
        removed, added = self.catalog.replace_windows_of([
            Embedded(records[job.file_id], job.windows, job.info.duration, job.info.sample_rate, job.info.channels,
                     job.info.codec, job.info.bit_depth, self.hop)
            for job in stored
        ])
        self.drop_vectors(removed)
        vectors = [vector for job in stored for vector in job.vectors]
        if vectors:
            self.add_vectors(np.array([i for ids in added for i in ids], dtype=np.int64), np.stack(vectors))
        for job, ids in zip(stored, added):
            self.sync_payload(records[job.file_id], ids)
            self.report.indexed += 1
            self.notify(job.path, "indexed")


@dataclasses.dataclass(eq=False)
class _Seen:
    """A file the scan found, on its way into the catalog."""

    path: str
    root: str
    known: Known | None  # what the catalog knows of it
    size: int = 0
    mtime: float = 0.0
    problem: str | None = None  # why it cannot hold audio at all
    to_read: bool = False  # new or changed, by size or mtime: its content is to be hashed
    contents: Contents | None = None  # once read
    record: File | None = None  # its catalog record, loaded for those to be written

    @classmethod
    def stat(cls, path: str, root: str, known: Known | None) -> _Seen:
        try:
            found = os.stat(path)  # follows symlinks: a loop raises ELOOP here
        except OSError as exc:
            # What the system refuses (a loop, permissions) can end without the file changing: tried every run.
            return cls(path, root, known, problem=exc.strerror or str(exc))
        regular = stat.S_ISREG(found.st_mode)
        seen = cls(path, root, known, found.st_size if regular else 0, found.st_mtime)
        if known is not None and (known.size, known.mtime) == (seen.size, seen.mtime):
            # Unchanged, unreadable ones too: a file that could not be decoded is tried again once it changes.
            return seen
        if not regular:
            seen.problem = "not a regular file"
        elif found.st_size == 0:
            seen.problem = "empty file"
        else:
            seen.to_read = True
        return seen

    @property
    def known_digest(self) -> str | None:
        """The content hash that tells a touched file from a changed one; none for an unreadable
        file, whose every change (a touch too) is a reason to try it again."""
        return self.known.content_hash if self.known is not None and self.known.status != ERROR else None


def _hand_back(vectors: Iterator[np.ndarray], embedding: collections.deque[FileJob]) -> None:
    """Give each vector to the file whose window it embeds (windows are embedded in order)."""
    for vector in vectors:
        embedding.popleft().vectors.append(vector)


def _metadata_of(path: str) -> Metadata:
    try:
        return read_metadata(path)
    except Exception:  # metadata is optional; a file with unreadable tags is still indexed
        log.warning("%s: its metadata could not be read; indexed without it", path, exc_info=True)
        return Metadata()
