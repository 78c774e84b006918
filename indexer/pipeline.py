"""files -> audio -> windows -> embeddings -> catalog + vectors.

Windows from several files are pooled so each encoder call gets ``settings.batch_size`` of
them. The catalog and the vector store are checkpointed together every so often and at the
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
from indexer.scan import scan
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
    report = IndexReport()
    notify = progress or (lambda path, outcome: None)
    with Catalog(settings.catalog_url) as catalog:
        catalog.claim_model(ModelIdentity.of(encoder))
        store = open_store(settings, encoder.dim)
        _drop_orphan_vectors(catalog, store)
        pool: list[_Decoded] = []
        last_checkpoint = time.monotonic()
        try:
            for path, root in found:
                decoded = _decode_if_changed(catalog, store, encoder, path, root, report, notify)
                if decoded is not None:
                    pool.append(decoded)
                if sum(len(d.windows) for d in pool) >= settings.batch_size:
                    _embed_and_store(catalog, store, encoder, pool, settings.batch_size, report, notify)
                    pool.clear()
                if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                    _checkpoint(catalog, store)
                    last_checkpoint = time.monotonic()
            _embed_and_store(catalog, store, encoder, pool, settings.batch_size, report, notify)
            _checkpoint(catalog, store)
        except BaseException:
            catalog.rollback()
            raise
    return report


def _decode_if_changed(catalog, store, encoder, path, root, report, notify) -> _Decoded | None:
    try:
        stat = os.stat(path)
    except OSError as exc:
        report.errors.append((path, exc.strerror or str(exc)))
        notify(path, "error")
        return None
    record = catalog.file(path)
    if record is not None and record.status == INDEXED and (record.size, record.mtime) == (stat.st_size, stat.st_mtime):
        report.unchanged += 1
        notify(path, "unchanged")
        return None
    record = catalog.upsert_file(path, root=root, size=stat.st_size, mtime=stat.st_mtime)
    try:
        samples, info = read_audio(path, encoder.sample_rate)
    except AudioDecodeError as exc:
        store.remove(np.array(catalog.mark_error(record, exc.reason), dtype=np.int64))
        report.errors.append((path, exc.reason))
        notify(path, "error")
        return None
    return _Decoded(record, info, windows(samples, encoder.sample_rate, encoder.window_seconds))


def _embed_and_store(catalog, store: VectorStore, encoder, pool: list[_Decoded], batch_size: int, report, notify) -> None:
    pieces = [window.samples for decoded in pool for window in decoded.windows]
    if not pieces:
        return
    vectors = np.concatenate(
        [encoder.embed_audio(pieces[start : start + batch_size]) for start in range(0, len(pieces), batch_size)]
    )
    offset = 0
    for decoded in pool:
        removed, added = catalog.replace_windows(
            decoded.record,
            [(window.start, window.end) for window in decoded.windows],
            duration=decoded.info.duration,
            sample_rate=decoded.info.sample_rate,
            channels=decoded.info.channels,
            codec=decoded.info.codec,
        )
        store.remove(np.array(removed, dtype=np.int64))
        store.add(np.array(added, dtype=np.int64), vectors[offset : offset + len(added)])
        offset += len(added)
        report.indexed += 1
        notify(decoded.record.path, "indexed")


def _checkpoint(catalog: Catalog, store: VectorStore) -> None:
    # Vectors first: if we die between the two writes, the store holds vectors the catalog
    # does not name (dropped by the next run) rather than the catalog naming missing vectors.
    store.save()
    catalog.commit()


def _drop_orphan_vectors(catalog: Catalog, store: VectorStore) -> None:
    orphans = np.setdiff1d(store.ids(), np.array(catalog.window_ids(), dtype=np.int64))
    if len(orphans):
        store.remove(orphans)
