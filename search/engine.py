"""Queries to ranked files: embed the query, find the nearest windows, rank files by their best.

The vector store holds one vector per window; a file is as relevant as its best-matching
window, and a hit says where in the file that window is.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from encoders import list_models, load_encoder
from encoders.audio import load_audio, resample, to_mono, windows
from search.catalog import INDEXED, Catalog, ModelIdentity, Window
from search.config import ConfigError, Settings
from search.store import open_store

# Windows fetched per wanted file at first; files with many close windows need more.
OVERSAMPLE = 8


@dataclasses.dataclass(frozen=True)
class Hit:
    path: str  # absolute
    score: float  # cosine similarity of the best window, in [-1, 1]
    start: float  # seconds: where the best window is in the file
    end: float
    duration: float | None
    file_id: int
    window_id: int
    name: str
    folder: str
    root: str
    size: int
    sample_rate: int | None
    channels: int | None
    codec: str | None

    @classmethod
    def of(cls, window: Window, score: float) -> Hit:
        file = window.file
        return cls(
            path=file.path, score=score, start=window.start, end=window.end, duration=file.duration,
            file_id=file.id, window_id=window.id, name=file.name, folder=file.folder, root=file.root,
            size=file.size, sample_rate=file.sample_rate, channels=file.channels, codec=file.codec,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def open_encoder(settings: Settings):
    if settings.model not in list_models():
        raise ConfigError(f"unknown model {settings.model!r}; available: {', '.join(list_models())}")
    return load_encoder(settings.model, weights=settings.weights or None, device=settings.device)


class Searcher:
    """The query side of one library: the encoder is loaded once and checked against the index."""

    def __init__(self, settings: Settings, encoder=None):
        self.settings = settings
        self.encoder = encoder or open_encoder(settings)
        self.catalog = Catalog(settings.catalog_url)
        try:
            self.catalog.check_model(ModelIdentity.of(self.encoder))
            self.store = open_store(settings, self.encoder.dim)
        except BaseException:
            self.catalog.close()
            raise
        self.catalog.rollback()

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def search_text(self, text: str, top: int = 10) -> list[Hit]:
        return self.search_vector(self.encoder.embed_text([text])[0], top)

    def search_audio(self, samples: np.ndarray, sample_rate: int, top: int = 10) -> list[Hit]:
        """Files that sound like ``samples`` (mono, or (frames, channels)) at ``sample_rate``."""
        return self.search_vector(self.embed_clip(samples, sample_rate), top)

    def search_audio_file(
        self, source: str | os.PathLike | BinaryIO, top: int = 10, max_seconds: float | None = None
    ) -> list[Hit]:
        """Files that sound like the audio file ``source`` (a path or an open upload), of which
        only the first ``max_seconds`` count."""
        rate = self.encoder.sample_rate
        samples = load_audio(source, rate)
        if max_seconds is not None:
            samples = samples[: round(max_seconds * rate)]
        return self.search_audio(samples, rate, top)

    def library_file(self, path: str | os.PathLike) -> Path:
        """``path``, resolved, if it is an indexed file inside its library root; else PermissionError.

        Everything a user can reach through a query result goes through here, so no parameter
        can name a file outside the indexed roots (no ``..``, no symlink out of a root).
        """
        record = self.catalog.file(os.path.abspath(path))
        self.catalog.rollback()
        refused = PermissionError(f"{path} is not a file of this library")
        if record is None or record.status != INDEXED:
            raise refused
        resolved = Path(record.path).resolve()
        # Configured roots are the authority; without them, the root the file was indexed under.
        allowed = [Path(root).resolve() for root in self.settings.roots or (record.root,)]
        if not any(resolved.is_relative_to(root) for root in allowed):
            raise refused
        return resolved

    def similar(self, path: str | os.PathLike, top: int = 10) -> list[Hit]:
        """Files that sound like the file at ``path``, not counting that file itself."""
        path = os.path.abspath(path)
        record = self.catalog.file(path)
        if record is None or record.status != INDEXED or not record.windows:
            rate = self.encoder.sample_rate
            return self.search_audio(load_audio(path, rate), rate, top)
        stored = self.store.reconstruct(np.array([window.id for window in record.windows], dtype=np.int64))
        return self.search_vector(_unit(stored.mean(axis=0)), top, exclude_file_id=record.id)

    def embed_clip(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """One unit vector for a clip of any length: the mean of its windows' embeddings."""
        rate = self.encoder.sample_rate
        mono = resample(to_mono(samples), sample_rate, rate)
        if len(mono) == 0:
            raise ValueError("the query clip is empty")
        pieces = [window.samples for window in windows(mono, rate, self.encoder.window_seconds)]
        embedded = self.encoder.embed_audio(pieces, batch_size=self.settings.batch_size)
        return _unit(embedded.mean(axis=0))

    def search_vector(self, query: np.ndarray, top: int = 10, exclude_file_id: int | None = None) -> list[Hit]:
        """The ``top`` files whose best window is nearest ``query``, best first."""
        total = len(self.store)
        wanted = min(total, top * OVERSAMPLE)
        best: dict[int, Hit] = {}
        try:
            while wanted > 0:
                scores, ids = self.store.search(query[np.newaxis], wanted)
                best = self._best_window_per_file(scores[0], ids[0], exclude_file_id)
                if len(best) >= top or wanted >= total:
                    break
                wanted = min(total, wanted * 4)
        finally:
            self.catalog.rollback()
        return sorted(best.values(), key=lambda hit: hit.score, reverse=True)[:top]

    def _best_window_per_file(
        self, scores: np.ndarray, ids: np.ndarray, exclude_file_id: int | None
    ) -> dict[int, Hit]:
        known = self.catalog.windows_by_id(ids)
        best: dict[int, Hit] = {}
        # Scores arrive best first, so a file's first window is its best.
        for score, window_id in zip(scores.tolist(), ids.tolist()):
            window = known.get(window_id)
            if window is None or window.file_id == exclude_file_id or window.file_id in best:
                continue
            best[window.file_id] = Hit.of(window, score)
        return best


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)
