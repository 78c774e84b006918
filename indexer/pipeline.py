"""files -> audio -> windows -> embeddings -> catalog + vectors.

Windows from several files are pooled so the model runs on full batches of
``settings.batch_size`` windows. The catalog and the vector store are checkpointed together every so often and at the
end; an interrupted run loses only the work since the last checkpoint, and the next run picks
up from there because unchanged indexed files are skipped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable

import numpy as np

from encoders.audio import AudioDecodeError, AudioInfo, Window, read_audio, windows
from indexer.scan import Found, scan
from search.catalog import INDEXED, Catalog, File, ModelIdentity
from search.config import Settings
from search.engine import open_encoder
from search.store import VectorStore, open_store

CHECKPOINT_SECONDS = 60.0

# Called once per file with its path and what became of it: "indexed", "unchanged" or "error".
Progress = Callable[[str, str], None]


@dataclasses.dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)


@dataclasses.dataclass
class _Decoded:
    record: File
    info: AudioInfo
    windows: list[Window]


def index_paths(
    settings: Settings,
    paths: Iterable[str | os.PathLike],
    encoder=None,
    progress: Progress | None = None,
) -> IndexReport:
    """Index the audio files under ``paths`` (folders or files) into the library of ``settings``.

    Files whose size and mtime are unchanged since they were indexed are skipped; changed ones
    get new windows in place of the old. A file that cannot be decoded is recorded with status
    'error' and its reason, and the run goes on.
    """
    found = scan(paths)
    encoder = encoder or open_encoder(settings)
    with Catalog(settings.catalog_url) as catalog:
        catalog.claim_model(ModelIdentity.of(encoder))
        store = open_store(settings, encoder.dim)
        _drop_orphan_vectors(catalog, store)
        run = _IndexRun(catalog, store, encoder, settings.batch_size, progress or (lambda path, outcome: None))
        try:
            run.index(found)
        except BaseException:
            catalog.rollback()
            raise
        return run.report


class _IndexRun:
    def __init__(self, catalog: Catalog, store: VectorStore, encoder, batch_size: int, notify: Progress):
        self.catalog, self.store, self.encoder = catalog, store, encoder
        self.batch_size, self.notify = batch_size, notify
        self.report = IndexReport()

    def index(self, found: Iterable[Found]) -> None:
        pool: list[_Decoded] = []
        last_checkpoint = time.monotonic()
        for path, root in found:
            decoded = self.decode_if_changed(path, root)
            if decoded is not None:
                pool.append(decoded)
            if sum(len(d.windows) for d in pool) >= self.batch_size:
                self.embed_and_store(pool)
                pool.clear()
            if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                _checkpoint(self.catalog, self.store)
                last_checkpoint = time.monotonic()
        self.embed_and_store(pool)
        _checkpoint(self.catalog, self.store)

    def decode_if_changed(self, path: str, root: str) -> _Decoded | None:
        try:
            stat = os.stat(path)
        except OSError as exc:
            self.failed(path, exc.strerror or str(exc))
            return None
        record = self.catalog.file(path)
        seen = record is not None and (record.size, record.mtime) == (stat.st_size, stat.st_mtime)
        if seen and record.status == INDEXED:
            self.report.unchanged += 1
            self.notify(path, "unchanged")
            return None
        record = self.catalog.upsert_file(path, root=root, size=stat.st_size, mtime=stat.st_mtime)
        try:
            samples, info = read_audio(path, self.encoder.sample_rate)
        except AudioDecodeError as exc:
            self.store.remove(np.array(self.catalog.mark_error(record, exc.reason), dtype=np.int64))
            self.failed(path, exc.reason)
            return None
        return _Decoded(record, info, windows(samples, self.encoder.sample_rate, self.encoder.window_seconds))

    def failed(self, path: str, reason: str) -> None:
        self.report.errors.append((path, reason))
        self.notify(path, "error")

    def embed_and_store(self, pool: list[_Decoded]) -> None:
        pieces = [window.samples for decoded in pool for window in decoded.windows]
        if not pieces:
            return
        vectors = self.encoder.embed_audio(pieces, batch_size=self.batch_size)
        offset = 0
        for decoded in pool:
            removed, added = self.catalog.replace_windows(
                decoded.record,
                [(window.start, window.end) for window in decoded.windows],
                duration=decoded.info.duration,
                sample_rate=decoded.info.sample_rate,
                channels=decoded.info.channels,
                codec=decoded.info.codec,
            )
            self.store.remove(np.array(removed, dtype=np.int64))
            self.store.add(np.array(added, dtype=np.int64), vectors[offset : offset + len(added)])
            offset += len(added)
            self.report.indexed += 1
            self.notify(decoded.record.path, "indexed")


def _checkpoint(catalog: Catalog, store: VectorStore) -> None:
    # Vectors first: if we die between the two writes, the store holds vectors the catalog
    # does not name (dropped by the next run) rather than the catalog naming missing vectors.
    store.save()
    catalog.commit()


def _drop_orphan_vectors(catalog: Catalog, store: VectorStore) -> None:
    orphans = np.setdiff1d(store.ids(), np.array(catalog.window_ids(), dtype=np.int64))
    if len(orphans):
        store.remove(orphans)
