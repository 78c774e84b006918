"""The catalog: which files are in the library, their windows, and which model indexed them.

A window's primary key is its vector's id in the vector store, so a search hit maps straight
back to a file and a time span. SQLite (WAL) by default; any SQLAlchemy URL works, PostgreSQL
included, because everything here goes through the ORM with bound parameters.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import (
    BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, func, select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

PENDING, INDEXED, ERROR = "pending", "indexed", "error"

# SQLite only autoincrements (never reuses ids) on a column declared exactly INTEGER.
_ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class File(Base):
    __tablename__ = "files"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)  # absolute
    root: Mapped[str] = mapped_column(Text)  # the library folder it was found under
    folder: Mapped[str] = mapped_column(Text, index=True)
    name: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    duration: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    indexed_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))

    windows: Mapped[list[Window]] = relationship(
        back_populates="file", cascade="all, delete-orphan", order_by="Window.start"
    )


class Window(Base):
    __tablename__ = "windows"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(_ID, primary_key=True)  # the vector id
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    start: Mapped[float] = mapped_column(Float)  # seconds
    end: Mapped[float] = mapped_column(Float)

    file: Mapped[File] = relationship(back_populates="windows")


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """What makes two embeddings comparable: the same model with the same weights."""

    name: str
    weights_id: str
    dim: int

    @classmethod
    def of(cls, encoder) -> ModelIdentity:
        return cls(encoder.name, encoder.weights_id, encoder.dim)

    def __str__(self) -> str:
        return f"{self.name} (weights {self.weights_id}, {self.dim} dims)"


class ModelMismatchError(Exception):
    """The index was built by one model and is being used with another."""

    def __init__(self, indexed: ModelIdentity, requested: ModelIdentity):
        self.indexed, self.requested = indexed, requested
        super().__init__(
            f"this index was built with {indexed} but the current model is {requested}; "
            "use the same model and weights, or a new --home to index again"
        )


class Catalog:
    """One unit of work on the catalog: changes are visible to others after ``commit()``."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _tune_sqlite)
        Base.metadata.create_all(self.engine)
        self.session = Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        """Drop uncommitted changes; also ends a read, so the next one sees newer commits."""
        self.session.rollback()

    # --- which model the vectors belong to

    def model(self) -> ModelIdentity | None:
        meta = {key: value for key, value in self.session.execute(select(Meta.key, Meta.value))}
        if "model" not in meta:
            return None
        return ModelIdentity(meta["model"], meta["weights_id"], int(meta["dim"]))

    def check_model(self, requested: ModelIdentity) -> None:
        """Raise ModelMismatchError unless the index is empty or was built by ``requested``."""
        indexed = self.model()
        if indexed is not None and indexed != requested:
            raise ModelMismatchError(indexed, requested)

    def claim_model(self, requested: ModelIdentity) -> None:
        """Record ``requested`` as the index's model on first use; refuse any other after."""
        self.check_model(requested)
        if self.model() is None:
            created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for key, value in dict(
                model=requested.name, weights_id=requested.weights_id, dim=str(requested.dim), created=created
            ).items():
                self.session.add(Meta(key=key, value=value))
            self.session.flush()

    # --- writing files and windows

    def file(self, path: str) -> File | None:
        return self.session.scalar(select(File).where(File.path == path))

    def upsert_file(self, path: str, *, root: str, size: int, mtime: float) -> File:
        """The record for ``path``, created if new, with its size and mtime as seen now."""
        record = self.file(path)
        if record is None:
            record = File(path=path, root=root, folder=str(Path(path).parent), name=Path(path).name)
            self.session.add(record)
        record.root, record.size, record.mtime = root, size, mtime
        return record

    def replace_windows(
        self,
        record: File,
        spans: Sequence[tuple[float, float]],
        *,
        duration: float,
        sample_rate: int,
        channels: int,
        codec: str,
    ) -> tuple[list[int], list[int]]:
        """Give ``record`` new windows and mark it indexed; returns (removed ids, new ids)."""
        removed = self._drop_windows(record)
        new = [Window(start=start, end=end) for start, end in spans]
        record.windows = new
        record.duration, record.sample_rate, record.channels, record.codec = duration, sample_rate, channels, codec
        record.status, record.error = INDEXED, None
        record.indexed_at = datetime.datetime.now(datetime.timezone.utc)
        self.session.flush()  # assigns the new windows' ids
        return removed, [window.id for window in new]

    def mark_error(self, record: File, reason: str) -> list[int]:
        """Mark ``record`` unreadable; returns the ids of the windows it had (now stale)."""
        removed = self._drop_windows(record)
        record.status, record.error, record.indexed_at = ERROR, reason, None
        self.session.flush()
        return removed

    def _drop_windows(self, record: File) -> list[int]:
        removed = [window.id for window in record.windows]
        record.windows.clear()
        self.session.flush()
        return removed

    # --- reading

    def windows_by_id(self, ids: Iterable[int]) -> dict[int, Window]:
        """Windows (with their files loaded) for those ``ids`` that exist."""
        wanted = sorted({int(i) for i in ids})
        found: dict[int, Window] = {}
        # Chunked so the IN list stays within every backend's bound-parameter limit.
        for offset in range(0, len(wanted), 500):
            chunk = wanted[offset : offset + 500]
            rows = self.session.scalars(select(Window).where(Window.id.in_(chunk)).join(Window.file))
            found.update((window.id, window) for window in rows)
        return found

    def window_ids(self) -> list[int]:
        return list(self.session.scalars(select(Window.id)))

    def errors(self) -> list[File]:
        return list(self.session.scalars(select(File).where(File.status == ERROR).order_by(File.path)))

    def counts(self) -> dict[str, int]:
        """Files per status, and windows."""
        counts = {PENDING: 0, INDEXED: 0, ERROR: 0}
        per_status = self.session.execute(select(File.status, func.count()).group_by(File.status))
        counts.update({status: count for status, count in per_status})
        counts["windows"] = self.session.scalar(select(func.count()).select_from(Window)) or 0
        return counts


def _tune_sqlite(connection, _record) -> None:
    # WAL lets searches read while an index run writes; SQLite leaves foreign keys off unless asked.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
