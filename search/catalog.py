"""The catalog: which files are in the library, their windows, and which model indexed them.

A window's primary key is its vector's id in the vector store, so a search hit maps straight
back to a file and a time span. SQLite (WAL) by default; any SQLAlchemy URL works, PostgreSQL
included, because everything here goes through the ORM with bound parameters.

A file is catalogued in two steps: the scan records it as 'pending' with what its header and
tags say (searchable by name and metadata at once), then embedding gives it windows and
marks it 'indexed', or 'error' with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import itertools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sqlalchemy import (
    ARRAY, BigInteger, ColumnElement, DateTime, Float, ForeignKey, Index, Integer, Select, String, Text, TypeDecorator,
    and_, any_, bindparam, case, cast, column, create_engine, delete, event, exists, false, func, insert, inspect,
    literal, not_, or_, select, tablesample, text, true, union_all, update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.sqltypes import NullType

from encoders.audio import AUDIO_EXTENSIONS
from search import ucs
from search.filters import Filters
from search.keyword import Keyword, KeywordQuery

log = logging.getLogger(__name__)

PENDING, INDEXED, ERROR = "pending", "indexed", "error"
# Values per IN list, within every backend's bound-parameter limit.
_CHUNK = 500
WINDOW_ROWS_AT_ONCE = 50_000  # rows fetched at a time when every window is read

# SQLite only autoincrements (never reuses ids) on a column declared exactly INTEGER.
_ID = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class File(Base):
    __tablename__ = "files"
    # Files in the order searches list them (name, then id), with their status: a keyword
    # search of a common word walks it and stops at its limit (``_walk_tiers``).
    # PostgreSQL: the paths again in byte order, for folder filters (``_starting``'s LIKE
    # 'prefix%'), which the unique index cannot serve under a database collation other than C:
    # a folder of 5% of 10^6 files was a sequential scan of every path (440 ms). With the ids,
    # so that a folder's files are read from the index alone: a publisher's files are spread
    # over the whole table, one page each (47,619 pages read for 47,619 ids, 210-520 ms).
    __table_args__ = (Index("ix_files_name_id_status", "name", "id", "status"),
                      Index("ix_files_path_pattern_id", "path", postgresql_ops={"path": "text_pattern_ops"},
                            postgresql_include=["id"]).ddl_if(dialect="postgresql"))

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
    bit_depth: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(8), index=True)  # encoders.audio.AUDIO_EXTENSIONS' values
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)  # BWF bext, else a comment tag, else iXML's note
    originator: Mapped[str | None] = mapped_column(Text)  # BWF bext, else the artist tag
    ucs_cat_id: Mapped[str | None] = mapped_column(String(64), index=True)  # "DOORWood"
    ucs_category: Mapped[str | None] = mapped_column(String(64), index=True)  # "DOOR"
    ucs_subcategory: Mapped[str | None] = mapped_column(String(64))  # "Wood"
    # Everything else the tags, bext and iXML chunks said, as JSON, for display.
    extra: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    hop: Mapped[float | None] = mapped_column(Float)  # seconds between window starts
    indexed_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))

    windows: Mapped[list[Window]] = relationship(
        back_populates="file", cascade="all, delete-orphan", order_by="Window.start"
    )
    tag_rows: Mapped[list[FileTag]] = relationship(cascade="all, delete-orphan", order_by="FileTag.tag")

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class FileTag(Base):
    """One keyword of a file (genre, keywords, category tags), lower case, for filtering."""

    __tablename__ = "file_tags"

    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class Window(Base):
    __tablename__ = "windows"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(_ID, primary_key=True)  # the vector id
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    start: Mapped[float] = mapped_column(Float)  # seconds
    end: Mapped[float] = mapped_column(Float)

    file: Mapped[File] = relationship(back_populates="windows")


class FileText(Base):
    """What keyword search reads of a file: its name, and everything else it says (``_file_text``).

    Kept by the catalog on every write (``_keep_text``, ``add_files``) and indexed by the
    database's own full-text index: an FTS5 trigram index on SQLite, pg_trgm on PostgreSQL
    (``_TEXT_INDEX``). Lower-cased by Python, so both backends fold case alike, Unicode too."""

    __tablename__ = "file_text"
    __table_args__ = (Index("ix_file_text_rank_key", "rank_key").ddl_if(dialect="sqlite"),)

    file_id: Mapped[int] = mapped_column(_ID, ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    about: Mapped[str] = mapped_column(Text)  # its fields joined by _SEPARATOR
    # SQLite: the file's row id in the FTS5 index, its place in name order (``_add_texts``);
    # NULL on PostgreSQL, whose trigram index cannot be read in an order.
    rank_key: Mapped[int | None] = mapped_column(BigInteger)




class Suggestion(Base):
    """What ``clapdex tag`` suggests for a file, kept apart from what the file says of itself:
    a UCS label (``kind`` "ucs", ranks 1 to 3: a CatID such as "DOORWood" where the tagger had
    the UCS list, else a category's short form such as "DOOR"; ``category`` is the short form
    either way) or a descriptive tag (``kind`` a descriptor group such as "material"), with its
    confidence, a probability (indexer/tagging.py)."""

    __tablename__ = "suggestions"

    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[str] = mapped_column(String(64), index=True)  # "DOORWood", "DOOR", "wood"
    category: Mapped[str | None] = mapped_column(String(16), index=True)  # a CatID's short form: "DOOR"
    confidence: Mapped[float] = mapped_column(Float)


class Tagging(Base):
    """That a file was tagged, from which embedding and with which vocabulary (a file embedded
    again, or a new vocabulary, is tagged again), and the CatID a person accepted, if any."""

    __tablename__ = "taggings"

    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    indexed_at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))  # the file's, copied
    vocabulary: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[str | None] = mapped_column(String(64), index=True)


class FileSuggestions(NamedTuple):
    """A file's suggestions as ``Catalog.suggestions_of`` reads them."""

    ucs: list[tuple[str, float]]  # (CatID, confidence), best first
    tags: dict[str, tuple[str, float]]  # descriptor group -> (tag, confidence)
    accepted: str | None


class Known(NamedTuple):
    """What the scan compares a file on disk with: its catalog row, without an ORM object (an
    unchanged rescan of a million files loads a million of these)."""

    id: int
    path: str
    size: int
    mtime: float
    status: str
    content_hash: str | None
    hop: float | None


class Span(NamedTuple):
    """A window, as a hit names it."""

    id: int
    start: float
    end: float


class Located(NamedTuple):
    """What serving a file, or searching like it, needs of its record (``Catalog.located``)."""

    id: int
    path: str
    root: str
    status: str
    name: str
    format: str | None
    duration: float | None
    sample_rate: int | None
    mtime: float


# The columns of a file a hit carries.
_LOCATED = (File.id, File.path, File.root, File.status, File.name, File.format, File.duration, File.sample_rate,
            File.mtime)
_LISTED = (File.id, File.path, File.root, File.folder, File.name, File.size, File.mtime, File.duration,
           File.sample_rate, File.channels, File.codec, File.bit_depth, File.format, File.title, File.description,
           File.ucs_cat_id, File.ucs_category, File.status)


@dataclasses.dataclass(frozen=True)
class Listed:
    """A file as a page of hits shows it (``Catalog.files_with_windows``): plain values, not
    ORM objects, so it outlives the reading it came from."""

    id: int
    path: str
    root: str
    folder: str
    name: str
    size: int
    mtime: float
    duration: float | None
    sample_rate: int | None
    channels: int | None
    codec: str | None
    bit_depth: int | None
    format: str | None
    title: str | None
    description: str | None
    ucs_cat_id: str | None
    ucs_category: str | None
    status: str
    windows: list[Span]  # by start
    tags: list[str]
    suggested: tuple[tuple[str, float], ...] = ()  # what ``clapdex tag`` suggests: (CatID, confidence), best first
    accepted: str | None = None  # the suggested CatID a person accepted
    suggested_tags: tuple[tuple[str, str, float], ...] = ()  # (group, tag, confidence): "material", "wood", 0.4


@dataclasses.dataclass
class Metadata:
    """What a file says about itself before it is decoded: header, tags, bext, iXML, UCS name."""

    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    bit_depth: int | None = None
    codec: str | None = None
    title: str | None = None
    description: str | None = None
    originator: str | None = None
    tags: tuple[str, ...] = ()
    ucs_cat_id: str | None = None
    ucs_category: str | None = None
    ucs_subcategory: str | None = None
    extra: dict[str, str] = dataclasses.field(default_factory=dict)


class NewFile(NamedTuple):
    """A file the scan found that the catalog does not know yet (``Catalog.add_files``)."""

    path: str
    root: str
    size: int
    mtime: float
    content_hash: str | None
    metadata: Metadata


class Embedded(NamedTuple):
    """A file's new windows and what decoding measured of it (``Catalog.replace_windows_of``)."""

    record: File
    spans: Sequence[tuple[float, float]]
    duration: float
    sample_rate: int
    channels: int
    codec: str
    bit_depth: int | None = None  # None: keep the header's
    hop: float | None = None


# The Meta key whose value changes with every commit that changes files, windows or tags:
# what is computed from them (facets, status, duplicates) is kept until it changes.
GENERATION = "generation"
_WATCHED_TABLES = frozenset({"files", "windows", "file_tags"})
# SQLite's statistics: gathered again at most this often (a full ANALYZE: 6 s at 10^6 files on
# 2 busy cores; a sampled one reads the first rows of each index, all of one status, and misleads).
STATISTICS_SECONDS = 300.0


class NearPairRow(Base):
    """A pair of indexed files that sound the same, as the last near-duplicate pass scored it
    (``search.duplicates``): ``first_id``'s path sorts before ``second_id``'s. Which catalog state
    the rows describe is the Meta key NEAR_STATE."""

    __tablename__ = "near_pairs"

    first_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    second_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True, index=True)
    score: Mapped[float] = mapped_column(Float)


# The Meta key that says which pass the near_pairs rows are from (JSON: search.duplicates writes it).
NEAR_STATE = "near_duplicates"


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class _Utc(TypeDecorator):
    """A moment, read back in UTC with its time zone on every backend (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.astimezone(datetime.timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        utc = datetime.timezone.utc
        return value.replace(tzinfo=utc) if value.tzinfo is None else value.astimezone(utc)


class ApiKey(Base):
    """A key of the HTTP API: its SHA-256 hash only, never the key (server/keys.py)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)  # a revoked key keeps its name
    role: Mapped[str] = mapped_column(String(16))  # "read" or "admin"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)  # SHA-256, hex
    created_at: Mapped[datetime.datetime] = mapped_column(_Utc)
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(_Utc)
    last_used_at: Mapped[datetime.datetime | None] = mapped_column(_Utc)


@dataclasses.dataclass(frozen=True)
class ModelIdentity:
    """What makes two embeddings comparable: the same model with the same weights.

    Where the weights were read from is kept too, so the index finds them again, but two
    identities with the same fingerprint are the same wherever their files lie."""

    name: str
    weights_id: str
    dim: int
    weights_path: str = dataclasses.field(default="", compare=False)  # "": shipped inside clapdex
    # The user named the file (--weights): if it goes missing, say so rather than look elsewhere.
    weights_named: bool = dataclasses.field(default=False, compare=False)

    @classmethod
    def of(cls, encoder, named: bool = False) -> ModelIdentity:
        return cls(encoder.name, encoder.weights_id, encoder.dim, encoder.weights_path, named)

    def __str__(self) -> str:
        return f"{self.name} (weights {self.weights_id}, {self.dim} dims)"


class ModelMismatchError(Exception):
    """The index was built by one model and is being used with another."""

    def __init__(self, indexed: ModelIdentity, requested: ModelIdentity):
        self.indexed, self.requested = indexed, requested
        built = f"{indexed}" + (f" from {indexed.weights_path}" if indexed.weights_path else "")
        if indexed.name == requested.name and indexed.weights_path and indexed.weights_path == requested.weights_path:
            advice = ("the file has changed since; put back the one it was built with, or index into a new "
                      "--home with these weights")
        else:
            advice = "use the same model and weights, or a new --home to index again"
        super().__init__(f"this index was built with {built} but the current model is {requested}; {advice}")


class CatalogMissing(LookupError):
    """Asked to open a catalog that was never created."""


class KeyNameTaken(ValueError):
    """An API key is to be made under a name another key, active or revoked, has already."""

    def __init__(self, name: str):
        super().__init__(f"a key named {name} exists already (revoked keys keep their names); choose another name")


@dataclasses.dataclass(frozen=True)
class Facets:
    """What the library holds, for offering filters: each list sorted, durations in seconds."""

    min_duration: float
    max_duration: float
    sample_rates: list[int]
    channels: list[int]
    formats: list[str]
    folders: list[str]
    tags: list[str]
    categories: list[str]
    roots: list[str]  # the library folders the files were found under


# Orders a search's files can be listed in beside relevance: the column, and whether descending.
SORTS = {"name": (File.name, False), "shortest": (File.duration, False), "longest": (File.duration, True),
         "folder": (File.folder, False)}


class Catalog:
    """One unit of work on the catalog: changes are visible to others after ``commit()``."""

    def __init__(self, url: str, create: bool = True):
        """``create=False`` opens only a catalog that exists, and raises CatalogMissing otherwise,
        creating nothing (no folder, no file, no table)."""
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not create and not path.is_file():
                raise CatalogMissing(url)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
        # A server's request threads each read through a session of their own (``reader``), and
        # each keeps its connection: one opened per request (SQLite reads its schema again on
        # every new connection) cost more than the queries. Connections open only when needed.
        self.engine = create_engine(url, pool_size=48, max_overflow=16)
        self._owns_engine = True
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _tune_sqlite)
        if create:
            try:
                self.create_tables()
            except BaseException:  # refused (KeywordIndexUnavailable): no connection left open
                self.engine.dispose()
                raise
        elif not inspect(self.engine).has_table(Meta.__tablename__):
            self.engine.dispose()
            raise CatalogMissing(url)
        self.session = _session(self.engine)
        _watch_changes(self.session)

    def create_tables(self) -> None:
        """Create the tables that are not there yet (all of them, for a new catalog), and the
        keyword index of a catalog made before there was one."""
        Base.metadata.create_all(self.engine)
        # create_all makes a table's indexes only along with the table: a catalog made before
        # one of them gets it here (the name order: seconds at 10^6 files, once).
        for index in File.__table__.indexes:
            index.create(self.engine, checkfirst=True)
        if self.engine.dialect.name == "postgresql":  # the paths' index without the ids, replaced above
            with self.engine.begin() as connection:
                connection.exec_driver_sql("DROP INDEX IF EXISTS ix_files_path_pattern")
        self._build_keyword_index()

    def _build_keyword_index(self) -> None:
        with self.engine.begin() as connection:
            # A catalog made before the rank keys (create_all adds no column to a table there);
            # on SQLite, where they are kept, below, as the index is built again for them.
            if connection.dialect.name == "postgresql" and not _has_rank_key(connection):
                connection.exec_driver_sql("ALTER TABLE file_text ADD COLUMN IF NOT EXISTS rank_key BIGINT")
            _create_text_index(connection)
            if _text_kept(connection):
                return
        with self.engine.begin() as connection:
            _lock_text(connection)
            if _text_kept(connection):  # another process built it while this one waited
                return
            files = connection.scalar(select(func.count()).select_from(File))
            if files:  # a new catalog has nothing to say
                log.info("building the keyword index of %d files", files)
            # Made whole from the filled table: several times faster than kept up row by row.
            for statement in _TEXT_INDEX_DROP.get(connection.dialect.name, ()):
                connection.exec_driver_sql(statement)
            if not _has_rank_key(connection):
                connection.exec_driver_sql("ALTER TABLE file_text ADD COLUMN rank_key BIGINT")
            for index in FileText.__table__.indexes:
                index.create(connection, checkfirst=True)
            connection.execute(delete(FileText))
            connection.execute(delete(Meta).where(Meta.key == _CHARACTERS_KEY))
            last = connection.scalar(select(func.max(File.id))) or 0
            keys = _name_keys(connection, last)
            for first in range(0, last + 1, _BUILD_STEP):
                _add_texts(connection, _texts(connection, File.id.between(first, first + _BUILD_STEP - 1), keys))
            _create_text_index(connection)
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("INSERT INTO file_text_index(file_text_index) VALUES ('rebuild')")
                # One segment instead of the dozens a rebuild leaves: each list is then read from
                # one place (at 2 x 10^5 files, a third less CPU for three words or AND/OR/NOT).
                connection.exec_driver_sql("INSERT INTO file_text_index(file_text_index) VALUES ('optimize')")
            connection.execute(delete(Meta).where(Meta.key == _TEXT_KEY))
            connection.execute(insert(Meta).values(key=_TEXT_KEY, value=_text_version(connection)))

    def reader(self) -> Catalog:
        """Another unit of work on the same database, sharing this one's connections: one per
        thread that reads while others do (a session is for one thread at a time)."""
        other = object.__new__(Catalog)
        other.engine, other._owns_engine = self.engine, False
        other.session = _session(self.engine)
        _watch_changes(other.session)
        return other

    def close(self) -> None:
        self.session.close()
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def commit(self) -> None:
        self.session.commit()

    def flush(self) -> None:
        """Send pending changes to the database inside the transaction (ids assigned, not committed)."""
        self.session.flush()

    def rollback(self) -> None:
        """Drop uncommitted changes; also ends a read, so the next one sees newer commits."""
        self.session.rollback()

    # --- which model the vectors belong to

    def model(self) -> ModelIdentity | None:
        meta = {key: value for key, value in self.session.execute(select(Meta.key, Meta.value))}
        if "model" not in meta:
            return None
        return ModelIdentity(meta["model"], meta["weights_id"], int(meta["dim"]), meta.get("weights_path", ""),
                             meta.get("weights_named") == "1")

    def generation(self) -> str | None:
        """A token that changes whenever a commit changes files, windows or tags (None until the
        first such commit of a catalog made before tokens were kept)."""
        # Every search asks (its kept rankings are of one generation): a fixed statement on the
        # driver's cursor, as the hits' rows, not the ORM's (5% of a search worker's samples).
        rows = self._compiled_rows("generation", lambda: select(Meta.value).where(Meta.key == bindparam("key")),
                                   {"key": GENERATION})
        return rows[0][0] if rows else None

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
        self.remember_weights(requested)

    def remember_weights(self, requested: ModelIdentity) -> None:
        """Record where ``requested``'s weights are, the index's own weights found in a new place
        (the caller commits)."""
        indexed = self.model()
        if indexed is None or indexed != requested:
            return
        if (indexed.weights_path, indexed.weights_named) != (requested.weights_path, requested.weights_named):
            self.set_meta("weights_path", requested.weights_path)
            self.set_meta("weights_named", "1" if requested.weights_named else "0")
        self.session.flush()

    # --- writing files and windows

    def file(self, path: str) -> File | None:
        return self.session.scalar(select(File).where(File.path == path))

    def known_at(self, paths: Iterable[str]) -> dict[str, Known]:
        """path -> what the catalog knows of it, for those of ``paths`` that are catalogued."""
        table = File.__table__
        query = select(*(table.c[name] for name in Known._fields)).where
        if self.engine.dialect.name == "postgresql":
            # The batch as one array: 500 bound values a statement cost psycopg and the server more
            # to render, send and parse than to answer (an unchanged rescan of 10^6 files, profiled).
            conditions = [table.c.path == any_(bindparam("paths", list(paths), type_=ARRAY(Text)))]
        else:
            conditions = [table.c.path.in_(chunk) for chunk in _chunks(paths)]
        return {row.path: Known(*row) for condition in conditions for row in self.session.execute(query(condition))}

    def files_at(self, paths: Iterable[str]) -> dict[str, File]:
        """path -> record, for those of ``paths`` that are catalogued."""
        query = select(File).where
        return {record.path: record for chunk in _chunks(paths)
                for record in self.session.scalars(query(File.path.in_(chunk)))}

    def set_file(self, record: File | None, path: str, *, root: str, size: int, mtime: float,
                 content_hash: str | None = None) -> File:
        """The record for ``path`` (``record``: as looked up; None: it has none, create it), with its
        size, mtime and hash as seen now."""
        if record is None:
            record = File(path=path, status=PENDING)
            self.session.add(record)
        self._place(record, path, root)
        record.size, record.mtime, record.content_hash = size, mtime, content_hash
        return record

    def move_file(self, record: File, path: str, *, root: str, mtime: float) -> None:
        """Re-point ``record`` (and so its windows) at ``path``, where its content now lives."""
        self._place(record, path, root)
        record.mtime = mtime
        self.session.flush()

    @staticmethod
    def _place(record: File, path: str, root: str) -> None:
        for name, value in _placed(path, root).items():
            setattr(record, name, value)

    def set_metadata(self, record: File, metadata: Metadata, header: bool = True) -> None:
        """Store what ``metadata`` says of ``record``; ``header=False`` keeps the duration, rate,
        channels, bit depth and codec already measured by decoding."""
        values, tags = _described(metadata, header)
        for name, value in values.items():
            setattr(record, name, value)
        if tags != record.tags:
            record.tag_rows = [FileTag(tag=tag) for tag in tags]

    def add_files(self, files: Sequence[NewFile]) -> list[int]:
        """Catalogue ``files``, none of them catalogued yet, as pending with their metadata; returns
        their ids. One INSERT (or a few) for all, without ORM objects: the scan of a new library
        does little else."""
        if not files:
            return []
        rows, tags = [], []
        for file in files:
            values, file_tags = _described(file.metadata)
            rows.append({**_placed(file.path, file.root), "size": file.size, "mtime": file.mtime,
                         "content_hash": file.content_hash, "status": PENDING, "error": None, **values})
            tags.append(file_tags)
        table = File.__table__
        added = self.session.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        ids = {file.path: file_id for file, file_id in zip(files, added, strict=True)}
        tag_rows = [{"file_id": ids[file.path], "tag": tag} for file, file_tags in zip(files, tags) for tag in file_tags]
        if tag_rows:
            self.session.execute(insert(FileTag.__table__), tag_rows)
        if _text_kept(self.session):
            _add_texts(self.session, [(row["name"], _file_text(ids[file.path], row, file_tags, None))
                                      for file, row, file_tags in zip(files, rows, tags)])
        return [ids[file.path] for file in files]

    def files_with_hashes(self, content_hashes: Iterable[str]) -> dict[str, list[tuple[int, str, str]]]:
        """content hash -> (id, path, status) of the files with that content, in id order, for those
        of ``content_hashes`` catalogued."""
        found: dict[str, list[tuple[int, str, str]]] = {}
        # The table's columns, not the entity's: plain rows, without the ORM's loading (a library
        # of many copies has thousands of rows a scan batch).
        table = File.__table__
        query = select(table.c.content_hash, table.c.id, table.c.path, table.c.status).order_by(table.c.id).where
        for chunk in _chunks(content_hashes):
            for content_hash, *row in self.session.execute(query(table.c.content_hash.in_(chunk))):
                found.setdefault(content_hash, []).append(tuple(row))
        return found

    def file_by_id(self, file_id: int) -> File | None:
        return self.session.get(File, file_id)

    def files_by_id(self, file_ids: Iterable[int]) -> dict[int, File]:
        """id -> record, for those of ``file_ids`` that are catalogued."""
        query = select(File).where
        return {record.id: record for chunk in _chunks(file_ids)
                for record in self.session.scalars(query(File.id.in_(chunk)))}

    def delete_file(self, record: File) -> list[int]:
        """Forget ``record``; returns the ids of its windows (vectors now to remove)."""
        removed = self._drop_windows(record)
        self.session.delete(record)
        self.session.flush()
        return removed

    def delete_files(self, file_ids: Iterable[int]) -> list[int]:
        """Forget the files ``file_ids``, a few statements for many; returns the ids of their windows
        (vectors now to remove). Windows, tags, text, suggestions and near-duplicate pairs go with
        each file by the foreign keys' ON DELETE CASCADE."""
        removed: list[int] = []
        for chunk in _chunks(file_ids):
            removed += self.session.scalars(select(Window.id).where(Window.file_id.in_(chunk)))
            self.session.execute(delete(File).where(File.id.in_(chunk)))
        return removed

    def roots(self) -> list[tuple[str, int]]:
        """(library folder, how many files were found under it) of every folder files were
        indexed from, by folder: a pass over every file."""
        query = select(File.root, func.count()).group_by(File.root).order_by(File.root)
        return [(root, count) for root, count in self.session.execute(query)]

    def mark_pending(self, record: File) -> list[int]:
        """Queue ``record`` for embedding again; returns the ids of its windows (now stale)."""
        removed = self._drop_windows(record)
        record.status, record.error, record.indexed_at = PENDING, None, None
        self.session.flush()
        return removed

    def pending(self) -> list[tuple[int, str]]:
        """(id, path) of the files waiting to be embedded, by path: plain rows, for after the scan
        of a new library, when that is nearly all of them."""
        table = File.__table__
        query = select(table.c.id, table.c.path).where(table.c.status == PENDING).order_by(table.c.path)
        return [(file_id, path) for file_id, path in self.session.execute(query)]

    def pending_paths(self) -> list[str]:
        return [path for _, path in self.pending()]

    def files(self, status: str | None = None) -> Iterator[File]:
        query = select(File).order_by(File.path).options(selectinload(File.windows), selectinload(File.tag_rows))
        if status is not None:
            query = query.where(File.status == status)
        yield from self.session.scalars(query)

    def paths_of(self, file_ids: Iterable[int]) -> list[str]:
        chunks = _chunks(sorted({int(i) for i in file_ids}))
        return sorted(path for chunk in chunks for path in self.session.scalars(select(File.path).where(File.id.in_(chunk))))

    def indexed_without_windows(self) -> list[str]:
        has_windows = exists().where(Window.file_id == File.id)
        return list(self.session.scalars(select(File.path).where(File.status == INDEXED, ~has_windows).order_by(File.path)))

    def exact_duplicates(self) -> list[list[File]]:
        """Groups of catalogued files with the same content, each in path order."""
        hashes = select(File.content_hash).where(File.content_hash.is_not(None)).group_by(File.content_hash)
        hashes = hashes.having(func.count() > 1)
        rows = self.session.scalars(select(File).where(File.content_hash.in_(hashes)).order_by(File.content_hash, File.path))
        groups: dict[str, list[File]] = {}
        for record in rows:
            groups.setdefault(record.content_hash, []).append(record)
        return sorted(groups.values(), key=lambda group: group[0].path)

    def set_meta(self, key: str, value: str) -> None:
        row = self.session.get(Meta, key)
        if row is None:
            self.session.add(Meta(key=key, value=value))
        else:
            row.value = value
        self.session.flush()

    def replace_windows_of(self, files: Sequence[Embedded]) -> tuple[list[int], list[list[int]]]:
        """Give each of ``files`` its new windows and mark it indexed, in a few statements: returns
        the ids of the windows they had (removed) and each file's new window ids (in the order of
        its spans)."""
        if not files:
            return [], []
        records = [entry.record for entry in files]
        removed = self._drop_windows_of(records)
        self.session.flush()
        now = datetime.datetime.now(datetime.timezone.utc)
        # One UPDATE statement for all, its values then given to the records as the database's:
        # through the ORM's unit of work, each record's changes cost more than its windows.
        updates = []
        for record, _, duration, sample_rate, channels, codec, bit_depth, hop in files:
            values = {"duration": duration, "sample_rate": sample_rate, "channels": channels, "codec": codec,
                      "bit_depth": bit_depth if bit_depth is not None else record.bit_depth,
                      "status": INDEXED, "error": None, "hop": hop, "indexed_at": now}
            updates.append({"record_id": record.id, **values})
            for name, value in values.items():
                set_committed_value(record, name, value)
        table = File.__table__
        statement = update(table).where(table.c.id == bindparam("record_id"))
        self.session.execute(statement.values({name: bindparam(name) for name in updates[0] if name != "record_id"}),
                             updates)
        rows = [{"file_id": entry.record.id, "start": start, "end": end} for entry in files for start, end in entry.spans]
        windows = Window.__table__
        # One INSERT (or a few) for all rows, the new ids in the rows' order.
        statement = insert(windows).returning(windows.c.id, sort_by_parameter_order=True)
        ids = list(self.session.scalars(statement, rows)) if rows else []
        added, at = [], 0
        for record, spans, *_ in files:
            added.append(ids[at : at + len(spans)])
            at += len(spans)
            # Inserted beside the ORM: the collection loads again when it is next read.
            self.session.expire(record, ["windows"])
        return removed, added

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

    def _drop_windows_of(self, records: Sequence[File]) -> list[int]:
        """``_drop_windows`` of each of ``records``; one question to the database finds those
        that have any (pending files have none)."""
        self.session.flush()
        query = select(Window.file_id).distinct().where
        holding = {file_id for chunk in _chunks(record.id for record in records)
                   for file_id in self.session.scalars(query(Window.file_id.in_(chunk)))}
        return [window_id for record in records if record.id in holding for window_id in self._drop_windows(record)]

    # --- suggestions (clapdex tag)

    def untagged(self, vocabulary: str) -> list[int]:
        """Ids of the indexed files not tagged since they were last embedded, or tagged with
        another vocabulary, by id."""
        tagged = exists().where(Tagging.file_id == File.id, Tagging.vocabulary == vocabulary,
                                Tagging.indexed_at == File.indexed_at)
        return list(self.session.scalars(select(File.id).where(File.status == INDEXED, ~tagged).order_by(File.id)))

    def windows_of_files(self, file_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(window ids, their file ids) of ``file_ids``, by file then start."""
        windows, files = [], []
        for chunk in _chunks(file_ids):
            query = select(Window.id, Window.file_id).where(Window.file_id.in_(chunk))
            for window_id, file_id in self.session.execute(query.order_by(Window.file_id, Window.start)):
                windows.append(window_id)
                files.append(file_id)
        return np.array(windows, np.int64), np.array(files, np.int64)

    def set_suggestions(self, file_id: int, ucs_ranked: Sequence[tuple[str, str, float]],
                        tags: dict[str, tuple[str, float]], vocabulary: str) -> None:
        """Replace what is suggested for ``file_id``: ``ucs_ranked`` (CatID, short form,
        confidence) best first, ``tags`` group -> (tag, confidence); an accepted CatID stays."""
        self.session.execute(delete(Suggestion).where(Suggestion.file_id == file_id))
        rows = [{"file_id": file_id, "kind": "ucs", "rank": rank, "value": cat_id, "category": short,
                 "confidence": confidence} for rank, (cat_id, short, confidence) in enumerate(ucs_ranked, 1)]
        rows += [{"file_id": file_id, "kind": group, "rank": 1, "value": tag, "category": None, "confidence": confidence}
                 for group, (tag, confidence) in tags.items()]
        if rows:
            self.session.execute(insert(Suggestion), rows)
        indexed_at = self.session.scalar(select(File.indexed_at).where(File.id == file_id))
        tagging = self.session.get(Tagging, file_id)
        if tagging is None:
            self.session.add(Tagging(file_id=file_id, indexed_at=indexed_at, vocabulary=vocabulary))
        else:
            tagging.indexed_at, tagging.vocabulary = indexed_at, vocabulary
        self.session.flush()

    def suggestions_of(self, file_ids: Iterable[int]) -> dict[int, FileSuggestions]:
        """file id -> its suggestions, for those of ``file_ids`` that were tagged."""
        found: dict[int, FileSuggestions] = {}
        if not self.tagged_ever():
            return found
        for chunk in _chunks(file_ids):
            for file_id, accepted in self._rows_among("taggings", _taggings_among, chunk):
                found[file_id] = FileSuggestions([], {}, accepted)
            for file_id, kind, value, confidence in self._rows_among("suggestions", _suggestions_among, chunk):
                if file_id not in found:
                    continue
                if kind == "ucs":
                    found[file_id].ucs.append((value, confidence))
                else:
                    found[file_id].tags[kind] = (value, confidence)
        return found

    def tagged_ever(self) -> bool:
        """Whether the tagger's tables exist: a catalog made before them, opened only to read
        (``create=False`` makes nothing), has none until `clapdex tag` makes them."""
        if not getattr(self, "_tagged", False):  # once there, they stay
            self._tagged = inspect(self.session.connection()).has_table(Tagging.__tablename__)
        return self._tagged

    def accept_suggestion(self, file_id: int, cat_id: str | None) -> bool:
        """Record that a person chose ``cat_id`` for the file (None: takes the choice back);
        False if the file was never tagged."""
        tagging = self.session.get(Tagging, file_id)
        if tagging is None:
            return False
        tagging.accepted = cat_id
        self.session.flush()
        return True

    def tagged_files(self) -> list[tuple[int, str, str | None]]:
        """(id, path, its own CatID) of every tagged file, by path."""
        query = select(File.id, File.path, File.ucs_cat_id).join(Tagging, Tagging.file_id == File.id)
        return [tuple(row) for row in self.session.execute(query.order_by(File.path))]

    # --- API keys

    def add_key(self, name: str, role: str, key_hash: str) -> ApiKey:
        """A new key called ``name``; KeyNameTaken if a key, active or revoked, has that name (if another
        process takes it first, this unit of work's uncommitted changes are dropped)."""
        if self.session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise KeyNameTaken(name)
        key = ApiKey(name=name, role=role, key_hash=key_hash, created_at=_utc_now())
        self.session.add(key)
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()
            raise KeyNameTaken(name) from None
        return key

    def keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, by name."""
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.name)))

    def revoke_key(self, name: str) -> bool:
        """Revoke the active key called ``name``; False if there is none."""
        key = self.session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
        if key is None:
            return False
        key.revoked_at = _utc_now()
        self.session.flush()
        return True

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The active key whose hash is ``key_hash``."""
        return self.session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))

    def touch_key(self, key: ApiKey) -> None:
        """Record that ``key`` was used now."""
        key.last_used_at = _utc_now()
        self.session.flush()

    # --- reading

    def file_ids_of_windows(self, ids: Iterable[int]) -> dict[int, int]:
        """window id -> file id, for those ``ids`` that exist and belong to a catalogued file."""
        found: dict[int, int] = {}
        query = select(Window.id, Window.file_id).join(File, File.id == Window.file_id).where
        for chunk in _chunks(sorted({int(i) for i in ids})):
            found.update(self.session.execute(query(Window.id.in_(chunk))).all())
        return found

    def window_files(self, after: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(window ids, their file ids) of every window of a catalogued file; with ``after``, of
        the windows whose id is greater (ids only grow: the windows added since)."""
        windows, files = Window.__table__, File.__table__
        query = select(windows.c.id, windows.c.file_id).join(files, files.c.id == windows.c.file_id)
        # Streamed into one array: three million rows held as a list of tuples took hundreds of
        # megabytes at once, which the page process kept after (Python's allocator returns little).
        # The driver's rows: SQLAlchemy's took 14.7 s of a page's start at 10^6 files.
        with self._driver_rows(query.where(windows.c.id > after) if after else query) as rows:
            pairs = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    def window_ids(self) -> list[int]:
        return self.window_id_array().tolist()

    def window_id_array(self) -> np.ndarray:
        """Every window's id, in order: plain rows (three million at a million files)."""
        column = Window.__table__.c.id
        return self._id_array(select(column).order_by(column))

    def orphan_window_ids(self) -> list[int]:
        """Windows whose file row is gone: deleted by hand, or by a tool that left foreign keys off."""
        has_file = exists().where(File.id == Window.file_id)
        return list(self.session.scalars(select(Window.id).where(~has_file).order_by(Window.id)))

    def delete_windows(self, ids: Iterable[int]) -> None:
        for chunk in _chunks(ids):
            self.session.execute(delete(Window).where(Window.id.in_(chunk)))
        self.session.flush()

    def orphan_tag_count(self) -> int:
        has_file = exists().where(File.id == FileTag.file_id)
        return self.session.scalar(select(func.count()).select_from(FileTag).where(~has_file)) or 0

    def delete_orphan_tags(self) -> None:
        has_file = exists().where(File.id == FileTag.file_id)
        self.session.execute(delete(FileTag).where(~has_file))
        self.session.flush()

    def sizes_and_times(self) -> Iterator[tuple[str, int, float, str]]:
        """(path, size, mtime, status) of every catalogued file as the catalog last saw it, streamed."""
        query = select(File.path, File.size, File.mtime, File.status).order_by(File.path)
        yield from self.session.execute(query.execution_options(yield_per=50_000))

    def window_count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Window)) or 0

    def indexed_windows(self) -> Iterator[tuple[int, str, str | None, int]]:
        """(file id, path, content hash, window id) for every window of every indexed file, in
        path and time order, streamed: columns alone, as records of half a million files and
        their windows would take gigabytes."""
        query = (
            select(File.id, File.path, File.content_hash, Window.id)
            .join(Window, Window.file_id == File.id)
            .where(File.status == INDEXED)
            .order_by(File.path, Window.start, Window.id)
            .execution_options(yield_per=50_000)
        )
        yield from self.session.execute(query)

    # --- near duplicates, as search.duplicates keeps them

    def near_state(self) -> str | None:
        return self.session.scalar(select(Meta.value).where(Meta.key == NEAR_STATE))

    def near_pairs(self, minimum: float) -> list[tuple[str, str, float]]:
        """(first path, second path, score) of the kept near-duplicate pairs scoring ``minimum`` or more."""
        first, second = File.__table__.alias("first"), File.__table__.alias("second")
        pairs = NearPairRow.__table__
        query = (
            select(first.c.path, second.c.path, pairs.c.score)
            .join(first, first.c.id == pairs.c.first_id)
            .join(second, second.c.id == pairs.c.second_id)
            .where(pairs.c.score >= minimum)
        )
        return [tuple(row) for row in self.session.execute(query)]

    def keep_near_pairs(self, pairs: Sequence[tuple[int, int, float]], state: str, *,
                        replacing: Iterable[int] | None = None) -> None:
        """Keep ``pairs`` (first file id, second file id, score) as the pass described by ``state``:
        in place of every kept pair, or (``replacing``) of those that name one of those file ids."""
        table = NearPairRow.__table__
        table.create(self.session.connection(), checkfirst=True)  # a catalog from before it was kept
        if replacing is None:
            self.session.execute(delete(table))
        else:
            for chunk in _chunks(sorted(set(replacing))):
                self.session.execute(delete(table).where(or_(table.c.first_id.in_(chunk), table.c.second_id.in_(chunk))))
        if pairs:
            self.session.execute(insert(table), [{"first_id": a, "second_id": b, "score": score} for a, b, score in pairs])
        self.set_meta(NEAR_STATE, state)

    # --- what searches ask

    def listed(self, filters: Filters, limit: int) -> list[int]:
        """Ids of the catalogued files (indexed or pending) that pass ``filters``, by name."""
        query = select(File.id).where(_passing(filters, pending=True)).order_by(File.name, File.id).limit(limit)
        return list(self.session.scalars(query))

    def keyword_ranked(self, query: KeywordQuery, filters: Filters = Filters(), *, pending: bool = False,
                       exclude_id: int | None = None, limit: int = 1000) -> list[int]:
        """Ids of the files ``query`` matches within ``filters`` (``pending``: files not embedded yet
        too), best first: a word in the name counts twice a word elsewhere; then by name.

        Read through the keyword index. A catalog made before there was one, opened only to
        read (writers build it), is scanned instead, its case folded as its database's lower()
        folds it (SQLite: ASCII only)."""
        # With suggestions, a word may match a file whose text lacks it: no index narrows the files down.
        if _text_kept(self.session):
            walked, matching = (None, []) if filters.suggested else _walk_tiers(
                self.session, query, filters, pending, exclude_id, limit)
            if walked is not None:
                return walked
            in_name, elsewhere = functools.partial(_holds, FileText.name), functools.partial(_holds, FileText.about)
            statement = select(File.id).join(FileText, FileText.file_id == File.id)
            if not filters.suggested:
                statement = statement.where(*(matching or _narrowing(query, self.engine.dialect.name)))
        else:
            in_name, elsewhere = functools.partial(_contains, File.name), _describes
            statement = select(File.id)
        if filters.suggested:
            elsewhere = functools.partial(_described_or_suggested, elsewhere)
        relevance = _relevance(query, in_name, elsewhere)
        statement = (
            statement
            .where(_keywords_match(query, lambda word: or_(in_name(word), elsewhere(word))),
                   _passing(filters, pending), true() if exclude_id is None else File.id != exclude_id)
            .order_by(relevance.desc(), File.name, File.id)
            .limit(limit)
        )
        return list(self.session.scalars(statement))

    def sort_keys(self, file_ids: Sequence[int], sort: str) -> dict[int, tuple]:
        """file id -> its key for ``sort`` (one of SORTS): (the column's value, the lower-case name)."""
        column, _ = SORTS[sort]
        keys: dict[int, tuple] = {}
        for chunk in _chunks(file_ids):
            rows = self.session.execute(select(File.id, column, File.name).where(File.id.in_(chunk)))
            keys.update((file_id, (key if key is not None else 0, name.lower())) for file_id, key, name in rows)
        return keys

    def files_with_windows(self, file_ids: Sequence[int]) -> dict[int, Listed]:
        """id -> what a page of hits shows of the file, with its windows and tags: a few fixed
        statements on the driver's cursor (``_rows_among``), neither ORM objects nor rows."""
        if not file_ids:
            return {}
        listed = {row[0]: (row, [], []) for row in self._rows_among("listed", _listed_among, file_ids)}
        for file_id, *span in self._rows_among("windows", _windows_among, file_ids):
            listed[file_id][1].append(Span(*span))
        for file_id, tag in self._rows_among("tags", _tags_among, file_ids):
            listed[file_id][2].append(tag)
        suggested = self.suggestions_of(listed)
        records = {}
        for file_id, (row, windows, tags) in listed.items():
            found = suggested.get(file_id)
            records[file_id] = Listed(*row, windows, tags) if found is None else Listed(
                *row, windows, tags, suggested=tuple(found.ucs), accepted=found.accepted,
                suggested_tags=tuple((group, tag, confidence) for group, (tag, confidence) in found.tags.items()))
        return records

    def located(self, path: str) -> Located | None:
        """The record of the file at ``path``, as serving it or searching like it needs, if catalogued:
        one fixed statement on the driver's cursor (``_compiled_rows``), not an ORM object (the
        audio and similar routes' lookups)."""
        rows = self._compiled_rows("located", lambda: select(*_LOCATED).where(File.path == bindparam("path")),
                                   {"path": path})
        return Located(*rows[0]) if rows else None

    def window_spans(self, file_id: int) -> list[Span]:
        """The windows of file ``file_id``, by start."""
        return [Span(*row) for row in self._compiled_rows(
            "window_spans", lambda: select(Window.id, Window.start, Window.end)
            .where(Window.file_id == bindparam("file_id")).order_by(Window.start), {"file_id": file_id})]

    def _rows_among(self, name: str, statement: Callable[[Callable], Select], ids: Sequence[int]) -> list[tuple]:
        """The rows of ``statement(among)``, where ``among(column)`` says "column is one of
        ``ids``" as one bound value (``_among``), by ``_compiled_rows``. For a page of 20 hits,
        building the statements and SQLAlchemy's rows took 3.2 ms (a third of a search's CPU); this, 0.5."""
        sqlite = self.session.connection().dialect.name == "sqlite"
        return self._compiled_rows(name, lambda: statement(lambda column: _among(column, (), sqlite)),
                                   {_AMONG: _among_value(ids, sqlite)})

    def _compiled_rows(self, name: str, statement: Callable[[], Select], values: dict) -> list[tuple]:
        """The rows of ``statement()`` with the parameters named in ``values`` bound to them (one
        made with ``unique=True`` named as before its number): compiled once per dialect and driver
        under ``name``, run on the driver's cursor in this session's transaction."""
        dialect = self.session.connection().dialect
        key = (dialect.name, dialect.driver, name)  # drivers differ in how parameters are written
        compiled = _COMPILED.get(key)
        if compiled is None:
            query = statement().compile(dialect=dialect)
            order = query.positiontup if query.positional else list(query.params)
            given = [next((value for value in values if re.fullmatch(rf"{re.escape(value)}(_\d+)?", parameter)), None)
                     for parameter in order]
            compiled = _COMPILED[key] = (str(query), query.positional, order, given, dict(query.params))
        sql, positional, order, given, constants = compiled
        bound = [values[named] if named is not None else constants[parameter] for parameter, named in zip(order, given)]
        with self._driver_cursor(sql, tuple(bound) if positional else dict(zip(order, bound))) as cursor:
            return cursor.fetchall()

    @contextlib.contextmanager
    def _driver_cursor(self, sql: str, values) -> Iterator:
        """The driver's own cursor, ``sql`` run on it in this session's transaction; closed after."""
        cursor = self.session.connection().connection.driver_connection.cursor()
        try:
            cursor.execute(sql, values)
            yield cursor
        finally:
            cursor.close()

    def indexed_paths_named(self, name: str, limit: int = 2) -> list[str]:
        """Paths of indexed files called ``name`` (a query naming a sound by its file name)."""
        query = select(File.path).where(File.name == name, File.status == INDEXED).order_by(File.path).limit(limit)
        return list(self.session.scalars(query))

    def facets(self) -> Facets:
        indexed = File.status == INDEXED
        low, high = self.session.execute(select(func.min(File.duration), func.max(File.duration)).where(indexed)).one()

        def distinct_values(column):
            return sorted(self.session.scalars(select(column).where(indexed, column.is_not(None)).distinct()))

        tags = self.session.scalars(select(FileTag.tag).join(File, File.id == FileTag.file_id).where(indexed).distinct())
        return Facets(
            min_duration=low or 0.0, max_duration=high or 0.0,
            sample_rates=distinct_values(File.sample_rate), channels=distinct_values(File.channels),
            formats=distinct_values(File.format), folders=distinct_values(File.folder),
            tags=sorted(tags), categories=distinct_values(File.ucs_category), roots=distinct_values(File.root),
        )

    def passing(self, file_ids: Sequence[int], filters: Filters) -> set[int]:
        """Those of ``file_ids`` that are indexed and pass ``filters``."""
        query = select(File.id).where(_passing(filters)).where
        return {file_id for chunk in _chunks(file_ids) for file_id in self.session.scalars(query(File.id.in_(chunk)))}

    def file_ids_matching(self, filters: Filters, at_most: int | None = None) -> np.ndarray | None:
        """Ids of the catalogued files that pass ``filters``, whatever their status (the windows'
        owners: only indexed files have windows), in no order; None if more than ``at_most`` pass
        (then only that many are read). Without the status a folder is read from the paths'
        index alone: 47,500 files under one publisher at 10^6 in 22-56 ms against 270-420 ms when
        each file's row was read for its status."""
        query = select(File.__table__.c.id).where(and_(true(), *file_conditions(filters)))
        ids = self._id_array(query if at_most is None else query.limit(at_most + 1), any_order=True)
        return None if at_most is not None and len(ids) > at_most else ids

    def _id_array(self, query, any_order: bool = False) -> np.ndarray:
        """The one integer column ``query`` selects, fetched through the driver's own cursor, in
        this session's transaction: SQLAlchemy's rows cost 136-238 ms for 47,600 ids at 10^6,
        the driver's 36-60 ms. The statement is still SQLAlchemy's, its values bound. With
        ``any_order``, SQLite hands them over as one text that numpy parses (9-14 ms against
        17-35 ms as rows, 47,619 ids; its ``group_concat`` promises no order before SQLite 3.44)."""
        if any_order and self.session.connection().dialect.name == "sqlite":
            listed = query.subquery()
            with self._driver_rows(select(func.group_concat(listed.c[0]))) as rows:
                text = next(rows)[0]
            return np.fromstring(text, dtype=np.int64, sep=",") if text else np.empty(0, np.int64)
        with self._driver_rows(query) as rows:
            return np.fromiter((row[0] for row in rows), dtype=np.int64)

    @contextlib.contextmanager
    def _driver_rows(self, query) -> Iterator[Iterator[tuple]]:
        """The rows of ``query``, a SQLAlchemy statement with its values bound, through the driver's
        own cursor (``_driver_cursor``)."""
        compiled = query.compile(dialect=self.session.connection().dialect, compile_kwargs={"render_postcompile": True})
        values = tuple(compiled.params[name] for name in compiled.positiontup) if compiled.positional \
            else compiled.params
        with self._driver_cursor(str(compiled), values) as cursor:
            # In batches: psycopg loads a batch in C, and hands rows out one by one in Python.
            yield (row for batch in iter(lambda: cursor.fetchmany(WINDOW_ROWS_AT_ONCE), []) for row in batch)

    def window_ids_matching(self, filters: Filters) -> np.ndarray:
        """Ids of the windows of indexed files that pass ``filters``, in id order."""
        # The files first, then their windows by file: a join let SQLite's planner walk every
        # window in id order, looking up each one's file (seconds at 10^6 files).
        query = select(Window.id).where(Window.file_id.in_(select(File.id).where(_passing(filters))))
        return np.fromiter(self.session.scalars(query.order_by(Window.id)), dtype=np.int64)

    def errors(self) -> list[File]:
        # Sorted here: ORDER BY path had SQLite walk the paths' index, every file (7 s at 10^6), for 1,000.
        return sorted(self.session.scalars(select(File).where(File.status == ERROR)), key=lambda record: record.path)

    def counts(self) -> dict[str, int]:
        """Files per status, and windows."""
        counts = {PENDING: 0, INDEXED: 0, ERROR: 0}
        per_status = self.session.execute(select(File.status, func.count()).group_by(File.status))
        counts.update({status: count for status, count in per_status})
        counts["windows"] = self.window_count()
        return counts


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _placed(path: str, root: str) -> dict:
    """The columns that say where a file is."""
    place = Path(path)
    return {"path": path, "root": root, "folder": str(place.parent), "name": place.name,
            "format": AUDIO_EXTENSIONS.get(place.suffix.lower())}


_HEADER = ("duration", "sample_rate", "channels", "bit_depth", "codec")
_DESCRIPTION = ("title", "description", "originator", "ucs_cat_id", "ucs_category", "ucs_subcategory")


def _described(metadata: Metadata, header: bool = True) -> tuple[dict, list[str]]:
    """The columns ``metadata`` fills (the header's too, with ``header``), and the file's tags."""
    values = {name: getattr(metadata, name) for name in _DESCRIPTION + _HEADER * header}
    values["extra"] = json.dumps(metadata.extra, ensure_ascii=False, sort_keys=True) if metadata.extra else None
    return values, sorted({tag.strip().lower()[:255] for tag in metadata.tags if tag.strip()})


def _chunks(values: Iterable) -> Iterator[list]:
    values = list(values)
    for offset in range(0, len(values), _CHUNK):
        yield values[offset : offset + _CHUNK]


def file_conditions(filters: Filters) -> list:
    """``filters`` as SQL conditions on File."""
    conditions = []
    if filters.min_duration is not None:
        conditions.append(File.duration >= filters.min_duration)
    if filters.max_duration is not None:
        conditions.append(File.duration <= filters.max_duration)
    if filters.sample_rates:
        conditions.append(File.sample_rate.in_([int(rate) for rate in filters.sample_rates]))
    if filters.channels:
        conditions.append(File.channels.in_([int(count) for count in filters.channels]))
    if filters.formats:
        conditions.append(File.format.in_([name.lower() for name in filters.formats]))
    if filters.folders:
        below = [_starting(File.path, os.path.abspath(folder).rstrip(os.sep) + os.sep) for folder in filters.folders]
        conditions.append(or_(*below))
    for tag in filters.tags:
        # The tag's files from its index, not a lookup for every file.
        conditions.append(File.id.in_(select(FileTag.file_id).where(FileTag.tag == tag.strip().lower())))
    if filters.categories:
        shorts, cat_ids = ucs_filter_values(filters.categories)
        own = [File.ucs_category.in_(shorts), File.ucs_cat_id.in_(cat_ids)]
        if filters.suggested:  # the tagger's best guess, or the one a person accepted
            best = select(Suggestion.file_id).where(Suggestion.kind == "ucs", Suggestion.rank == 1,
                                                    or_(Suggestion.category.in_(shorts), Suggestion.value.in_(cat_ids)))
            accepted = [_starting(Tagging.accepted, short) for short in shorts] + [Tagging.accepted.in_(cat_ids)]
            own += [File.id.in_(best), File.id.in_(select(Tagging.file_id).where(or_(*accepted)))]
        conditions.append(or_(*own))
    return conditions


def _starting(column, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as one bound LIKE pattern: SQLite (its LIKE
    case-sensitive, as set on connecting) then reads the column's index, not every row, as it
    does for ``startswith``'s pattern built in SQL."""
    escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return column.like(escaped + "%", escape="/")


def ucs_filter_values(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Category filter values as the catalog stores them: (CatID short forms, whole CatIDs).

    A value names a UCS category ("DOORS", "doors"), a CatID's short form ("DOOR") or a whole
    CatID ("DOORWood"); a library's own categories match as they are written."""
    shorts, cat_ids = [], []
    for value in values:
        shorts += ucs.short_forms(value) or (value.strip(),)
        cat_ids.append(value.strip())
    return shorts, cat_ids


def _passing(filters: Filters, pending: bool = False) -> ColumnElement[bool]:
    """A WHERE clause on File: indexed (or, with ``pending``, waiting to be embedded) and passing ``filters``."""
    return and_(File.status.in_((INDEXED, PENDING) if pending else (INDEXED,)), *file_conditions(filters))


def _relevance(query: KeywordQuery, in_name: Callable[[str], ColumnElement[bool]],
               elsewhere: Callable[[str], ColumnElement[bool]]) -> ColumnElement[int]:
    """A file's relevance to ``query``: 2 for each word wanted in its name, 1 for each elsewhere."""
    return sum((case((in_name(word), 2), else_=0) + case((elsewhere(word), 1), else_=0) for word in query.wanted),
               start=literal(0))


def _keywords_match(query: KeywordQuery, found: Callable[[str], ColumnElement[bool]]) -> ColumnElement[bool]:
    """A WHERE clause true for the files ``query`` matches, an OR of ANDs, ``found`` saying
    where a file holds a word."""
    if not query:
        return true()
    return or_(*(and_(*(_keyword_clause(keyword, found) for keyword in group)) for group in query.alternatives))


def _keyword_clause(keyword: Keyword, found: Callable[[str], ColumnElement[bool]]) -> ColumnElement[bool]:
    return not_(found(keyword.word)) if keyword.negated else found(keyword.word)


def _describes(word: str) -> ColumnElement[bool]:
    """``word`` is somewhere in what the catalog says about the file, other than its name."""
    # The folder below the root: every file shares the root's own path, so it says nothing.
    below_root = func.substr(File.folder, func.length(File.root) + 1)
    columns = (below_root, File.title, File.description, File.ucs_cat_id, File.ucs_category, File.ucs_subcategory)
    tagged = exists().where(FileTag.file_id == File.id, _contains(FileTag.tag, word))
    return or_(*(_contains(column, word) for column in columns), tagged)


def _described_or_suggested(described: Callable[[str], ColumnElement[bool]], word: str) -> ColumnElement[bool]:
    """``described(word)``, or ``word`` names the UCS label suggested first for the file or
    accepted for it: in its CatID ("wood" in "DOORWood") or its category's name ("door" in DOORS)."""
    shorts = ucs.shorts_naming(word)
    best = select(Suggestion.file_id).where(Suggestion.kind == "ucs", Suggestion.rank == 1,
                                            or_(Suggestion.category.in_(shorts), _contains(Suggestion.value, word)))
    accepted = select(Tagging.file_id).where(or_(_contains(Tagging.accepted, word),
                                                 *(_starting(Tagging.accepted, short) for short in shorts)))
    return or_(described(word), File.id.in_(best), File.id.in_(accepted))


def _contains(column, word: str) -> ColumnElement[bool]:
    # coalesce: a NULL column must read as "no match", not poison a NOT into NULL.
    return func.lower(func.coalesce(column, "")).contains(word, autoescape=True)


# --- the keyword index: file_text, its full-text index, and who keeps them

# Between a file's fields in FileText.about: parse_keywords splits words at it as at any white
# space, and a quoted phrase holding it is never found (``_holds``), so nothing spans two fields.
_SEPARATOR = "\x1f"
_ABOUT = ("title", "description", "ucs_cat_id", "ucs_category", "ucs_subcategory")
# FileText is made of these: a change to any of them (or to the tags) makes the file's text again.
_TEXT_FIELDS = ("name", "folder", "root", *_ABOUT)
# meta's key and value once every file has its text as _file_text makes it: a new version (a
# change to what the text holds) builds it again on the next open for writing.
_TEXT_KEY, _TEXT_VERSIONS = "keyword_text", {"sqlite": "3", "postgresql": "1"}
_BUILD_STEP = 20_000  # file ids per statement when building the text of a whole catalog

# A text holding a character beyond ASCII (PostgreSQL's regular expression; a constant of the
# SQL, so that the planner matches it to the index of that name).
_BEYOND_ASCII = "(name || about) ~ '[^\\x01-\\x7f]'"

# Substring matching is what keyword search promises ("door" finds "DOORWood", "oor" too), so
# trigram indexes, not word indexes (a tsvector finds words and stems, never parts of words):
# FTS5's trigram tokenizer on SQLite (3.34+), pg_trgm's GIN operator class on PostgreSQL.
# SQLite's index reads FileText as its external content, kept in step by triggers.
_TEXT_INDEX = {
    "sqlite": (
        "CREATE VIRTUAL TABLE IF NOT EXISTS file_text_index USING fts5(name, about, content='file_text', "
        "content_rowid='rank_key', tokenize='trigram case_sensitive 1')",
        # Its trigrams, for the words of two letters (``_fts_words``).
        "CREATE VIRTUAL TABLE IF NOT EXISTS file_text_terms USING fts5vocab(file_text_index, row)",
        "CREATE TRIGGER IF NOT EXISTS file_text_added AFTER INSERT ON file_text BEGIN "
        "INSERT INTO file_text_index(rowid, name, about) VALUES (new.rank_key, new.name, new.about); END",
        "CREATE TRIGGER IF NOT EXISTS file_text_removed AFTER DELETE ON file_text BEGIN "
        "INSERT INTO file_text_index(file_text_index, rowid, name, about) "
        "VALUES ('delete', old.rank_key, old.name, old.about); END",
        "CREATE TRIGGER IF NOT EXISTS file_text_changed AFTER UPDATE ON file_text BEGIN "
        "INSERT INTO file_text_index(file_text_index, rowid, name, about) "
        "VALUES ('delete', old.rank_key, old.name, old.about); "
        "INSERT INTO file_text_index(rowid, name, about) VALUES (new.rank_key, new.name, new.about); END",
    ),
    "postgresql": (
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE INDEX IF NOT EXISTS file_text_trigrams ON file_text USING gin (name gin_trgm_ops, about gin_trgm_ops)",
        # The few texts beyond ASCII, for two letters (``_pair_tiers``): an index of the expression
        # itself, whose statistics tell the planner how few they are (it guesses that a regular
        # expression keeps most rows, and read every text for a partial index's few).
        f"CREATE INDEX IF NOT EXISTS file_text_beyond_ascii ON file_text (({_BEYOND_ASCII}))",
    ),
}
_TEXT_INDEX_DROP = {
    "sqlite": ("DROP TRIGGER IF EXISTS file_text_added", "DROP TRIGGER IF EXISTS file_text_removed",
               "DROP TRIGGER IF EXISTS file_text_changed", "DROP TABLE IF EXISTS file_text_terms",
               "DROP TABLE IF EXISTS file_text_index"),
    "postgresql": ("DROP INDEX IF EXISTS file_text_trigrams", "DROP INDEX IF EXISTS file_text_beyond_ascii"),
}


class KeywordIndexUnavailable(RuntimeError):
    """The database cannot make the keyword index (PostgreSQL without the pg_trgm extension)."""


def _create_text_index(connection) -> None:
    try:
        for statement in _TEXT_INDEX.get(connection.dialect.name, ()):
            connection.exec_driver_sql(statement)
    except DBAPIError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        raise KeywordIndexUnavailable(
            f"the catalog's database cannot make the keyword index ({reason}); on PostgreSQL, have the "
            "database's owner run CREATE EXTENSION pg_trgm in it") from None


def _text_kept(connection) -> bool:
    """Every file has its text, as this version makes it (``connection``: or a session)."""
    return connection.scalar(select(Meta.value).where(Meta.key == _TEXT_KEY)) == _text_version(connection)


def _has_rank_key(connection) -> bool:
    return any(column["name"] == "rank_key" for column in inspect(connection).get_columns(FileText.__tablename__))


def _text_version(connection) -> str:
    return _TEXT_VERSIONS[_dialect(connection)]


def _dialect(connection) -> str:
    """The name of the database of ``connection`` (or of a session)."""
    return (connection.get_bind() if isinstance(connection, Session) else connection).dialect.name


def _lock_text(connection) -> None:
    # Two processes opening an old catalog at once build its text once: the second waits here
    # for the first to commit, then finds it built.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE file_text IN EXCLUSIVE MODE")
    else:  # a write as a transaction's first statement takes SQLite's write lock before anything is read
        connection.execute(update(Meta).where(Meta.key == _TEXT_KEY).values(value=Meta.value))


def _file_text(file_id: int, fields, tags: Iterable[str], rank_key: int | None) -> dict:
    """FileText's row for a file whose columns ``fields`` (a mapping) holds, with its ``tags``
    and, on SQLite, its ``rank_key``."""
    # The folder below the root: every file shares the root's own path, so it says nothing.
    about = [value.lower() for value in (fields["folder"][len(fields["root"]):], *(fields[name] for name in _ABOUT),
                                         *tags) if value]
    # Each ends with the separator, so that a word of two letters ending a field is still the
    # beginning of one of its trigrams (``_fts_words``).
    row = {"file_id": file_id, "name": fields["name"].lower() + _SEPARATOR,
           "about": _SEPARATOR.join(about) + _SEPARATOR if about else ""}
    return row if rank_key is None else {**row, "rank_key": rank_key}


def _texts(connection, which: ColumnElement[bool], keys: np.ndarray | None = None) -> list[tuple[str, dict]]:
    """FileText's rows for the files ``which`` selects, as they are now, each with its file's
    name (``keys``: on SQLite, each file's rank key, by id, when every file's text is made at once)."""
    tags: dict[int, list[str]] = {}
    for file_id, tag in connection.execute(select(FileTag.file_id, FileTag.tag).join(File).where(which)):
        tags.setdefault(file_id, []).append(tag)
    columns = [File.id, *(getattr(File, name) for name in _TEXT_FIELDS)]
    rows = connection.execute(select(*columns).where(which)).all()
    return [(row.name, _file_text(row.id, row._mapping, tags.get(row.id, ()),
                                  None if keys is None else int(keys[row.id]))) for row in rows]


# --- SQLite: the keyword index read in name order
#
# A search lists the files of a tier of relevance by name (``File.name``, then ``File.id``).
# FTS5 gives the files it finds in the order of their row ids, and stops at a LIMIT: so the
# row id of a file in the index, its ``rank_key``, is its place in name order, exactly: the
# keys of all files, taken in name order, only ever grow. Keys are small and close (built
# _SPACING apart), because FTS5 stores each row id as a varint of its distance from the one
# before in a word's list: keys holding the file id in their low bits made the index twice
# as large, and every whole list read twice as slow. A file written later takes a key between
# its neighbours' by name (``_add_texts``); where they have no key free between them, the keys
# of the files around are spaced out again (``_spaced_out``), as few as leave room.
_SPACING = 64
_FIRST_KEY = 1 << 40  # the first key of a built index: room before it for files added first by name


def _name_keys(connection, last: int) -> np.ndarray | None:
    """On SQLite, every file's rank key when the index is built, by id (up to ``last``)."""
    if connection.dialect.name != "sqlite":
        return None
    ordered = np.array(connection.execute(select(File.id).order_by(File.name, File.id)).scalars().all(), dtype=np.int64)
    keys = np.zeros(last + 1, dtype=np.int64)
    keys[ordered] = _FIRST_KEY + np.arange(len(ordered), dtype=np.int64) * _SPACING
    return keys


# The key of the file before (name, id) by name that has its text already.
_BEFORE = text("SELECT t.rank_key FROM files AS f INDEXED BY ix_files_name_id_status "
               "JOIN file_text AS t ON t.file_id = f.id WHERE (f.name, f.id) < (:name, :id) "
               "ORDER BY f.name DESC, f.id DESC LIMIT 1")
_KEY_AFTER = text("SELECT min(rank_key) FROM file_text WHERE rank_key > :key")
_KEYS_BELOW = text("SELECT rank_key FROM file_text WHERE rank_key < :key ORDER BY rank_key DESC LIMIT :count")
_KEYS_ABOVE = text("SELECT rank_key FROM file_text WHERE rank_key > :key ORDER BY rank_key LIMIT :count")
_MOVE_KEY = text("UPDATE file_text SET rank_key = :new WHERE rank_key = :old")


def _add_texts(connection, texts: Sequence[tuple[str, dict]]) -> None:
    """Write FileText's rows ``texts`` (each with its file's name, as ``_texts`` gives them); on
    SQLite, those without a rank key get one between the keys of their neighbours by name."""
    if not texts:
        return
    if _dialect(connection) == "sqlite":
        _note_characters(connection, [row for _, row in texts])
    if _dialect(connection) != "sqlite" or all("rank_key" in row for _, row in texts):
        connection.execute(insert(FileText), [row for _, row in texts])
        return
    # In name order, the files between the same two neighbours (which have their texts) are
    # given their keys together, spread over the keys free between them; written in one
    # statement at the end, or before keys move (``_place``).
    group: list[dict] = []
    written: list[dict] = []
    before = None
    for name, row in sorted(texts, key=lambda named: (named[0], named[1]["file_id"])):
        found = connection.scalar(_BEFORE, {"name": name, "id": row["file_id"]})
        if group and found != before:
            if _place(connection, before, group, written):  # keys moved: this file's neighbour's too, maybe
                found = connection.scalar(_BEFORE, {"name": name, "id": row["file_id"]})
            group = []
        if not group:
            before = found
        group.append(row)
    _place(connection, before, group, written)
    if written:
        connection.execute(insert(FileText), written)


# meta's key for every character the texts written since the index was built hold (those of
# texts since removed too): a word of two letters is found as the trigrams it begins, the
# word followed by each of them (``_fts_words``), without reading FTS5's vocabulary, which
# counts every file of each trigram it lists (at 10^6 files, most of a two-letter search).
_CHARACTERS_KEY = "keyword_characters"
_CHARACTERS_MOST = 256  # more (a library named in many scripts): the vocabulary is read instead


def _note_characters(connection, rows: Sequence[dict]) -> None:
    """Add the characters of the texts ``rows`` to those meta keeps (_CHARACTERS_KEY)."""
    seen: set[str] = set()
    for row in rows:
        seen.update(row["name"])
        seen.update(row["about"])
    known = connection.scalar(select(Meta.value).where(Meta.key == _CHARACTERS_KEY))
    if known is not None and seen <= set(known):
        return
    connection.execute(delete(Meta).where(Meta.key == _CHARACTERS_KEY))
    connection.execute(insert(Meta).values(key=_CHARACTERS_KEY, value="".join(sorted(seen | set(known or "")))))


def _place(connection, before: int | None, rows: list[dict], written: list[dict]) -> bool:
    """Give ``rows`` (in name order) keys after ``before`` (None: the first) and before the next
    key, adding them to ``written`` (rows with keys, to be written); True if the keys of other
    files had to move to make room (``written`` is written first, then emptied: they may move too)."""
    after = connection.scalar(_KEY_AFTER, {"key": -1 if before is None else before})
    count = len(rows)
    if after is None:  # the last by name: room without end
        low = _FIRST_KEY - _SPACING if before is None else before
        high = low + (count + 1) * _SPACING
    else:
        low = max(0, after - (count + 1) * _SPACING) if before is None else before
        high = after
    moved = high - low - 1 < count
    if moved:
        if written:
            connection.execute(insert(FileText), written)
            written.clear()
        keys = _spaced_out(connection, before, after, count)
    else:
        keys = [low + (place + 1) * (high - low) // (count + 1) for place in range(count)]
    written += [{**row, "rank_key": key} for row, key in zip(rows, keys)]
    return moved


def _spaced_out(connection, before: int | None, after: int, count: int) -> list[int]:
    """Room for ``count`` keys between ``before`` (None: the first) and ``after``, which have
    none between them: the keys of the files around them (more and more of them, until their
    span leaves at least _SPACING / 4 between keys, or they reach the last file) spread evenly
    over that span. Returns the keys for the new files."""
    width = max(16, count)
    while True:
        below = [] if before is None else connection.execute(
            _KEYS_BELOW, {"key": before, "count": width + 1}).scalars().all()
        above = connection.execute(_KEYS_ABOVE, {"key": after, "count": width + 1}).scalars().all()
        lowest = below[width] if len(below) > width else 0  # kept where they are: the window's bounds
        highest = above[width] if len(above) > width else None
        left = [*reversed(below[:width]), *([] if before is None else [before])]
        right = [after, *above[:width]]
        total = len(left) + count + len(right)
        spacing = _SPACING if highest is None else (highest - lowest) // (total + 1)
        if spacing >= _SPACING // 4 or highest is None:
            break
        width *= 4
    new = [lowest + (place + 1) * spacing for place in range(total)]
    old = left + right
    kept = new[:len(left)] + new[len(left) + count:]
    moves = [(was, now) for was, now in zip(old, kept) if was != now]
    if moves:  # through negative keys first: no two files ever share a key in the index, even for a moment
        connection.execute(_MOVE_KEY, [{"old": was, "new": -was} for was, _ in moves])
        connection.execute(_MOVE_KEY, [{"old": -was, "new": now} for was, now in moves])
    return new[len(left):len(left) + count]


def _keep_text(session: Session, _flush_context) -> None:
    """After every flush, the text of the files whose name, place, description or tags it
    changed made again, in the same transaction. Bulk statements beside the ORM keep it
    themselves (``add_files``)."""
    changed, gone = set(), set()
    for record in session.new:
        if isinstance(record, (File, FileTag)):
            changed.add(record.id if isinstance(record, File) else record.file_id)
    for record in session.dirty:
        state = inspect(record)
        if isinstance(record, File) and any(state.attrs[name].history.has_changes() for name in _TEXT_FIELDS):
            changed.add(record.id)
    for record in session.deleted:
        if isinstance(record, File):
            gone.add(record.id)
        elif isinstance(record, FileTag):
            changed.add(record.file_id)
    if not (changed or gone):
        return
    connection = session.connection()
    if not _text_kept(connection):  # a catalog made before the index: building it later makes every text
        return
    # Every old text gone before any new one is placed: a renamed file's old key, left where
    # its old name was, would stand among its new neighbours.
    for chunk in _chunks(sorted(changed | gone)):
        connection.execute(delete(FileText).where(FileText.file_id.in_(chunk)))
    _add_texts(connection, [row for chunk in _chunks(sorted(changed - gone))
                            for row in _texts(connection, File.id.in_(chunk))])


def _session(engine) -> Session:
    session = Session(engine, expire_on_commit=False)
    event.listen(session, "after_flush", _keep_text)
    return session


def _holds(column, word: str) -> ColumnElement[bool]:
    """``word`` (lower case) is in ``column`` of FileText (lower case too): LIKE, which
    pg_trgm's index serves; on SQLite, ``_narrowing`` does what an index can first."""
    if _SEPARATOR in word:  # could only be found across two fields
        return false()
    return column.contains(word, autoescape=True)


def _narrowing(query: KeywordQuery, dialect: str) -> list[ColumnElement[bool]]:
    """On SQLite, a condition keeping the files its trigram index finds for ``query``: each
    alternative's words of three characters or more (what trigrams find), none when an
    alternative has no such word (only reading every file's text finds those). The words are
    then tested exactly (``_holds``), so this only needs to keep every file that matches."""
    if dialect != "sqlite" or not query:
        return []
    alternatives = []
    for group in query.alternatives:
        words = [keyword.word for keyword in group if not keyword.negated and len(keyword.word) >= 3]
        if not words:
            return []
        alternatives.append("(" + " AND ".join(_fts_phrase(word) for word in words) + ")")
    matching = text(_MATCHING).bindparams(match=" OR ".join(alternatives)).columns(column("rowid", BigInteger))
    return [FileText.rank_key.in_(matching)]


# A search ranks its files in tiers of relevance (a word in the name counts 2, elsewhere 1),
# each by name. Ranking every match costs a read of each (a common word matches 4% of 10^6
# files: 150-300 ms); instead the tiers are found first, then each is taken in name order,
# the best first, until the limit.
# On SQLite, FTS5 says which files hold a word in their name and which elsewhere, exactly (the
# trigrams of a phrase, in a row, are the word itself; a word of two letters is the trigrams
# that begin with it; the text and the word are both lower-cased by Python), and gives them
# in name order (their row ids are rank keys): the tiers of one word are asked of FTS5, which
# stops at the limit (``_first_by_name``); for more words, each file's relevance, and whether
# the query matches it, are worked out from what FTS5 finds of each word (numpy, by key).
# On PostgreSQL, a statement gives a tier's files (pg_trgm's index finds them, LIKE tests
# them exactly); a tier with many files is found faster by walking the files in name order
# (ix_files_name_id_status), keeping the tier's and stopping at the limit, when it holds at
# least sqrt(limit * files) / 4 files (``_in_name_order``).
_WALK_FACTOR = 4

_MATCHING = "SELECT rowid FROM file_text_index WHERE file_text_index MATCH :match"
_TEXTS_AMONG = "SELECT rank_key, name, about FROM file_text WHERE rank_key IN (SELECT value FROM json_each(?))"
_IN_ORDER = ("SELECT rowid FROM file_text_index WHERE file_text_index MATCH :match AND rowid > :after "
             "ORDER BY rowid LIMIT :count")
# A phrase no text holds (every text is lower-cased): a word of two letters that begins no trigram.
_NOWHERE = '"AAA"'
_BEFORE_EVERY_KEY = -(1 << 63)  # keys are 64-bit: moved keys are negative for a moment
# A tier walked under a filter: the files wanted and a quarter more are first taken by name
# alone, then, if too few of those pass, this many times the files wanted; kept if enough of
# them pass (the engine's BROAD, for the same reason). Most filters pass nearly every file
# (longer than 1 s: 97% at 10^6): walking twice the files wanted doubled the walk for them.
_BROAD = 2
_BROAD_KEPT = 256  # filters remembered as broad by a session (``_walk_tiers``)


def _walk_tiers(session: Session, query: KeywordQuery, filters: Filters, pending: bool, exclude_id: int | None,
                limit: int) -> tuple[list[int] | None, list[ColumnElement[bool]]]:
    """``keyword_ranked``'s ids, tier by tier. Otherwise None, and for a query few files match
    on SQLite, or a filter few files pass, a condition keeping them (the filter's exactly; the
    query's, with some others that ``keyword_ranked`` tests out; found once here, not again):
    ranking every match is then the way, as on SQLite for a query with a word FTS5 cannot find
    (under three characters) or an alternative with no word wanted."""
    if not query:
        return None, []
    sqlite = session.get_bind().dialect.name == "sqlite"
    files = session.scalar(select(func.max(File.id))) or 0
    enough = max(1, math.isqrt(limit * files) // _WALK_FACTOR)
    # Filters seen to pass at least so many files, by this session: a page's filter stays while
    # words are typed, and reading which files pass it cost 10-30 ms at 10^6. Only how the
    # files are found depends on it, never which: if fewer pass since, the walk finds them all.
    broad = session.info.setdefault("broad_filters", {})
    if file_conditions(filters) and broad.get((filters, pending), 0) < enough:
        # A filter few files pass: their texts are fewer than a tier's files (DOOR and FLAC,
        # 0.2% of the files: 2,000 against tens of thousands), so only theirs are read.
        passing = session.scalars(select(File.id).where(_passing(filters, pending)).limit(enough)).all()
        if len(passing) < enough:
            return None, [_among(FileText.file_id, passing, sqlite)]
        if len(broad) >= _BROAD_KEPT:
            broad.clear()
        broad[(filters, pending)] = enough
    if not sqlite:
        return _in_name_order(session, _postgresql_tiers(session, query, files), filters, pending, exclude_id, limit,
                              files), []
    # An excluded word holding the separator is in no file: excluding it excludes nothing.
    groups = [[keyword for keyword in group if not (keyword.negated and _SEPARATOR in keyword.word)]
              for group in query.alternatives]
    if not all(any(not keyword.negated for keyword in group) for group in groups):
        return None, []
    words = _fts_words(session, {keyword.word for group in groups for keyword in group})
    if words is None:
        return None, []
    every = _fts_query(groups, words, words)
    # Straight from the driver's cursor: tens of thousands of keys cost a third less without rows
    # made of each. FTS5 gives each file once.
    with contextlib.closing(session.connection().connection.cursor()) as cursor:
        passing = _passing_ids(cursor, _passing_statement(session.get_bind().dialect, filters, pending, exclude_id))
        # Whether few files match needs only the files holding each word's sparse part (each then
        # tested exactly, by keyword_ranked's statement); FTS5 stops at the limit: for a query
        # many files match, only their first keys are read.
        sparse = {word: _fts_phrase(_sparse_part(cursor, word)) if len(word) >= 3 else words[word]
                  for word in query.wanted}
        head = cursor.execute(f"{_MATCHING} LIMIT :enough",
                              {"match": _fts_query(groups, sparse, words), "enough": enough}).fetchall()
        if len(head) < enough:  # every file that may match, read by id
            return None, [_among(FileText.rank_key, [key for key, in head], sqlite)]
        if len(query.wanted) == 1:
            return _by_tiers(_one_word_tiers(words[query.wanted[0]], every, cursor), passing, limit), []
        return _by_tiers(_tiers(query, groups, words, every, cursor), passing, limit), []


def _fts_query(groups: Iterable[Iterable[Keyword]], wanted: dict[str, str], excluded: dict[str, str]) -> str:
    """FTS5's query of the alternatives ``groups``, each word wanted found by ``wanted[word]``,
    each excluded by ``excluded[word]``."""
    return " OR ".join(
        "(" + _fts_excluding(" AND ".join(wanted[k.word] for k in group if not k.negated),
                             [excluded[k.word] for k in group if k.negated]) + ")"
        for group in groups)


# A word's phrase costs what its densest trigrams' lists cost: FTS5 reads nearly all of a list
# that holds most files to find the few it shares with the others ("take1005" at 10^6 files:
# 848 files, 70 ms, its "tak" and "ake" in the tags of most files; "e1005", the same files, 2 ms).
# How dense a trigram is shows in how far apart its first matches' keys are.
_PROBED = 256  # a trigram's first matches read to tell how dense it is
_DENSER = 16  # a trigram this many times denser than a word's sparsest is left out of its sparse part


def _sparse_part(cursor, word: str) -> str:
    """The part of ``word`` (of three characters or more) around its sparsest trigram made of
    trigrams not much denser: every file holding the word holds it, and FTS5 finds them without
    reading the dense lists (``cursor``: the driver's)."""
    trigrams = [word[start:start + 3] for start in range(len(word) - 2)]
    if len(trigrams) < 2:
        return word
    spread = {}
    for trigram in set(trigrams):
        keys = _fts_keys(cursor, _fts_phrase(trigram), _BEFORE_EVERY_KEY, _PROBED)
        spread[trigram] = math.inf if len(keys) < _PROBED else int(keys[-1] - keys[0])
    sparsest = max(range(len(trigrams)), key=lambda at: spread[trigrams[at]])
    kept = [spread[trigram] * _DENSER >= spread[trigrams[sparsest]] for trigram in trigrams]
    first = last = sparsest
    while first > 0 and kept[first - 1]:
        first -= 1
    while last < len(trigrams) - 1 and kept[last + 1]:
        last += 1
    return word[first:last + 3]


def _fts_words(session: Session, words: Iterable[str]) -> dict[str, str] | None:
    """What FTS5 finds each of ``words`` by: the word as a phrase, or a word of two letters as
    the trigrams that begin with it (every text ends with the separator: such a word ending a
    field begins one too). None if one cannot be found so (one letter, or the separator)."""
    found, characters = {}, None
    for word in words:
        if _SEPARATOR in word or len(word) < 2:
            return None
        if len(word) >= 3:
            found[word] = _fts_phrase(word)
            continue
        if characters is None:
            characters = session.scalar(select(Meta.value).where(Meta.key == _CHARACTERS_KEY)) or ""
        if 0 < len(characters) <= _CHARACTERS_MOST:  # every trigram beginning with the word, and some in no text
            terms = [word + character for character in characters]
        else:
            # Raw bytes order the terms, and UTF-8 keeps the characters' order: those after the word
            # and up to it followed by the last character are the trigrams beginning with it.
            terms = session.scalars(text("SELECT term FROM file_text_terms WHERE term >= :word AND term <= :last"),
                                    {"word": word, "last": word + "\U0010ffff"}).all()
        found[word] = "(" + " OR ".join(map(_fts_phrase, terms)) + ")" if terms else _NOWHERE
    return found


def _holding(cursor, match: str) -> np.ndarray:
    """The keys of the files FTS5 finds for ``match``, in order (``cursor``: the driver's)."""
    return np.array(cursor.execute(_MATCHING, {"match": match}).fetchall(), dtype=np.int64).reshape(-1)


def _one_word_tiers(word: str, every: str, cursor) -> Iterator[Callable]:
    """The tiers of a query of one word wanted (``word``: what FTS5 finds it by; ``every``: its
    query of every file matched), which FTS5 tells apart itself, each read as needed."""
    # The word alone needs no more: AND the word again would read its trigrams' lists twice.
    matched = "" if every == f"({word})" else f" AND ({every})"
    for tier in _ONE_WORD_TIERS:
        yield functools.partial(_fts_keys, cursor, f"({tier.format(word=word)}){matched}")


def _fts_keys(cursor, match: str, after: int, count: int | None) -> np.ndarray:
    """Up to ``count`` (None: all) keys of the files FTS5 finds for ``match``, in order, from after ``after``."""
    found = cursor.execute(_IN_ORDER, {"match": match, "after": after, "count": -1 if count is None else count}).fetchall()
    return np.array(found, dtype=np.int64).reshape(-1)


def _sorted_keys(keys: np.ndarray) -> Callable:
    """``_fts_keys`` for a tier found already (``keys``, in order)."""

    def between(after: int, count: int | None) -> np.ndarray:
        start = np.searchsorted(keys, after, side="right")
        return keys[start:] if count is None else keys[start:start + count]

    return between


def _by_tiers(tiers: Iterable[Callable], passing: Callable, limit: int) -> list[int]:
    """The first ``limit`` files of ``tiers`` (the best first, each one's keys given in order by
    a function like ``_fts_keys``) that pass (``passing``: see ``_passing_ids``), each tier by name."""
    found_ids: list[int] = []
    for keys in tiers:
        if len(found_ids) >= limit:
            break
        found_ids += _first_by_name(keys, passing, limit - len(found_ids))
    return found_ids


def _first_by_name(keys: Callable, passing: Callable, count: int) -> list[int]:
    """The first ``count`` files by name of a tier (its ``keys``, in order, which is name order)
    that pass: its keys read in order until ``count`` pass."""
    found: list[int] = []
    after, batch = -1, count + count // 4 + 16
    while len(found) < count:
        read = keys(after, batch)
        found += passing(read)
        if len(read) < batch:
            break
        after, batch = int(read[-1]), 2 * batch
    return found[:count]


@functools.lru_cache(maxsize=64)
def _passing_statement(dialect, filters: Filters, pending: bool, exclude_id: int | None) -> tuple[str, dict, list]:
    """The SQL, constant parameters and their order of ``_passing_ids``'s statement, compiled
    once per filters (compiled for each tier, it was a quarter of an AND/OR/NOT search's CPU)."""
    conditions = [_passing(filters, pending), *([File.id != exclude_id] if exclude_id is not None else [])]
    # NOT INDEXED: the files are read by id (their rowid), whatever indexes the conditions could use.
    statement = (select(FileText.rank_key, File.id).join(File, File.id == FileText.file_id)
                 .where(_among(FileText.rank_key, (), True), *conditions).with_hint(File, "NOT INDEXED", "sqlite"))
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), compiled.params, compiled.positiontup


def _passing_ids(cursor, compiled: tuple[str, dict, list]) -> Callable[[np.ndarray], list[int]]:
    """A function giving the ids of the files whose keys it is given that pass the conditions of
    ``compiled`` (``_passing_statement``), in the keys' order, run on the driver's ``cursor``."""
    sql, constants, order = compiled

    def passing(keys: np.ndarray) -> list[int]:
        if not len(keys):
            return []
        listed = keys.tolist()
        values = tuple(_among_value(listed, True) if name.startswith(_AMONG) else constants[name] for name in order)
        ids = dict(cursor.execute(sql, values).fetchall())
        return [ids[key] for key in listed if key in ids]

    return passing


def _tier_in_order(session: Session, members: ColumnElement[bool], walk: bool, pending: bool, others: list,
                   within: Filters, count: int) -> list[int]:
    """The first ``count`` files by name of a tier (``members``) that pass ``within``, walked or sorted."""
    statement = (select(File.id).where(members, _passing(within, pending), *others)
                 .order_by(File.name, File.id).limit(count))
    return list(session.scalars(statement))


def _among(column, ids: Sequence[int], sqlite: bool) -> ColumnElement[bool]:
    """``column`` is one of ``ids``, given as one parameter however many: a JSON list on
    SQLite, an array's text on PostgreSQL (tens of thousands of ids cost a tenth of the time
    psycopg takes to send a list)."""
    if sqlite:
        listed = func.json_each(bindparam(_AMONG, _among_value(ids, sqlite), unique=True)).table_valued("value")
        return column.in_(select(listed.c.value))
    # Sent untyped and cast: PostgreSQL takes the parameter for an array, a constant of the plan
    # (psycopg's own list dumper takes ten times as long for tens of thousands of ids).
    return column == any_(cast(bindparam(_AMONG, _among_value(ids, sqlite), type_=NullType(), unique=True),
                               ARRAY(BigInteger)))


def _among_value(ids: Sequence[int], sqlite: bool) -> str:
    """``_among``'s one parameter: the ids as a JSON list (SQLite) or an array's text (PostgreSQL)."""
    return json.dumps(list(map(int, ids))) if sqlite else "{" + ",".join(map(str, map(int, ids))) + "}"


_AMONG = "among"  # the name (a prefix, once compiled) of ``_among``'s parameter
# Statements of ``Catalog._rows_among``, each compiled once per dialect and driver into _COMPILED.


def _listed_among(among) -> Select:
    return select(*_LISTED).where(among(File.id))


def _windows_among(among) -> Select:
    return select(Window.file_id, Window.id, Window.start, Window.end).where(among(Window.file_id)) \
        .order_by(Window.file_id, Window.start)


def _tags_among(among) -> Select:
    return select(FileTag.file_id, FileTag.tag).where(among(FileTag.file_id)).order_by(FileTag.tag)


def _taggings_among(among) -> Select:
    return select(Tagging.file_id, Tagging.accepted).where(among(Tagging.file_id))


def _suggestions_among(among) -> Select:
    return select(Suggestion.file_id, Suggestion.kind, Suggestion.value, Suggestion.confidence) \
        .where(among(Suggestion.file_id)).order_by(Suggestion.file_id, Suggestion.kind, Suggestion.rank)


_COMPILED: dict[tuple[str, str, str], tuple] = {}  # (dialect, driver, statement) -> its SQL and parameters


def _postgresql_tiers(session: Session, query: KeywordQuery, files: int) -> Iterator[list[int] | Callable]:
    """The files ``query`` matches, tier by tier, the best first. For one word wanted, each
    tier asked when needed: the word in the name and elsewhere, in the name only, elsewhere
    only (pg_trgm's index finds each; the first usually fills a page, and the files' texts
    beyond it are never read). For several words, as on SQLite (``_tiers``): one statement
    ranks the files holding two or more, and each word's tiers of the files holding it alone
    are asked when needed. Each tier's ids are gathered by PostgreSQL into one array; a word of
    two letters has tiers of its own (``_pair_tiers``)."""
    matching = _keywords_match(query, lambda word: or_(_holds(FileText.name, word), _holds(FileText.about, word)))
    wanted = query.wanted
    alone = all(any(not keyword.negated for keyword in group) for group in query.alternatives)
    if len(wanted) == 1 and _PAIR.fullmatch(wanted[0]):
        yield from _pair_tiers(session, query, alone, files)
        return
    if len(wanted) == 1:
        for tier in _one_word_conditions(query, alone, FileText.name, FileText.about):
            yield session.scalar(select(func.array_agg(FileText.file_id)).where(tier)) or []
        return
    relevance = _relevance(query, functools.partial(_holds, FileText.name), functools.partial(_holds, FileText.about))
    if not alone:  # files matched by exclusions alone hold no word wanted: every file ranked at once
        matched = select(FileText.file_id, relevance.label("relevance")).where(matching).subquery()
        yield from session.scalars(select(func.array_agg(matched.c.file_id)).group_by(matched.c.relevance)
                                   .order_by(matched.c.relevance.desc()))
        return
    holds = {word: or_(_holds(FileText.name, word), _holds(FileText.about, word)) for word in wanted}
    several = or_(*(and_(holds[first], holds[second]) for first, second in itertools.combinations(wanted, 2)))
    matched = select(FileText.file_id, relevance.label("relevance")).where(matching, several).subquery()
    ranked = dict(session.execute(select(matched.c.relevance, func.array_agg(matched.c.file_id))
                                  .group_by(matched.c.relevance)).all())
    for tier in range(3 * len(wanted), 0, -1):
        ids = list(ranked.get(tier, ()))
        if tier <= 3:  # the files holding one word wanted, each tier of each word
            for word in _alone(query.alternatives):
                in_name, elsewhere = _holds(FileText.name, word), _holds(FileText.about, word)
                alone_in = [and_(in_name, elsewhere), and_(in_name, not_(elsewhere)), and_(elsewhere, not_(in_name))]
                others = [not_(holds[other]) for other in wanted if other != word]
                ids += session.scalar(select(func.array_agg(FileText.file_id))
                                      .where(alone_in[3 - tier], *others, matching)) or []
        yield ids


def _one_word_conditions(query: KeywordQuery, alone: bool, name, about) -> list[ColumnElement[bool]]:
    """The conditions on a file's text (its ``name`` and ``about`` columns, of FileText or of
    a sample of it) of each tier of a query of one word wanted, the best first."""
    matching = _keywords_match(query, lambda word: or_(_holds(name, word), _holds(about, word)))
    in_name, elsewhere = _holds(name, query.wanted[0]), _holds(about, query.wanted[0])
    tiers = [and_(in_name, elsewhere), and_(in_name, not_(elsewhere)), and_(elsewhere, not_(in_name))]
    if not alone:
        tiers.append(and_(not_(in_name), not_(elsewhere)))  # matched by exclusions alone
    return [and_(tier, matching) for tier in tiers]


# Two letters on PostgreSQL: pg_trgm finds no trigram in a pattern under three characters, so
# LIKE alone reads every file's text (150-250 ms at 10^6 files). Every text ends with the
# separator, so two letters (or digits) in it are followed by a character: by an ASCII one,
# the text holds a trigram pg_trgm keeps that begins with them (a letter or digit follows, or
# a word ends), which it finds for the regular expression ``_followed``; by another, the text
# is one of the few beyond ASCII (``_BEYOND_ASCII``, an index of its own). That finds a tier of
# few files. A tier of many (two letters are in up to every file) is walked in name order
# instead, each file's text looked up, the name first tested on the index's own copy of it:
# which of the two is cheaper is told by a sample of the texts (``_PAIR_SAMPLE`` rows).
_PAIR = re.compile("[a-z0-9]{2}")
_PAIR_SAMPLE = 4_000
# Relative costs, measured at 10^6 files under a load of 11 on 2 cores: a file walked in name
# order whose name is tested on the index (1.6 us), a file whose text is looked up (15-20 us),
# a file of a tier found by index (18 us: its text read, the expressions and LIKE tested again).
_STEP_COST, _LOOKUP_COST, _FOUND_COST = 1, 10, 12


class _Walked(NamedTuple):
    """A tier found by walking the files in name order, ``members`` telling its files."""
    members: ColumnElement[bool]


def _followed(column, word: str) -> ColumnElement[bool]:
    """``word`` (two letters or digits) followed in ``column`` by an ASCII character."""
    return column.op("~", is_comparison=True)(word + "[\\x01-\\x7f]")


def _pair_tiers(session: Session, query: KeywordQuery, alone: bool, files: int) -> Iterator[Callable]:
    """``_postgresql_tiers`` for one word wanted of two letters or digits: each tier a function
    of how many files are still wanted, giving its files or a ``_Walked`` (``files``: about how
    many the catalog holds)."""
    word = query.wanted[0]
    sampled = tablesample(FileText.__table__, func.system(min(100.0, 100.0 * _PAIR_SAMPLE / max(files, 1))),
                          name="sampled", seed=literal(0))
    holds = select(_holds(sampled.c.name, word).label("named"), _holds(sampled.c.about, word).label("about")) \
        .select_from(sampled).subquery()
    # How many hold the word in the name, elsewhere, in both: each tier's part of the files,
    # exclusions aside (an estimate: it only chooses how to find the tier).
    counted, named, about, both = session.execute(select(
        func.count(), *(func.count().filter(condition) for condition in
                        (holds.c.named, holds.c.about, and_(holds.c.named, holds.c.about))))).one()
    counted = max(counted, 1)
    shares = [both / counted, (named - both) / counted, (about - both) / counted, 1 - (named + about - both) / counted]
    tiers = _one_word_conditions(query, alone, FileText.name, FileText.about)
    # Which of the name and the rest each tier needs the word in, for the indexes' conditions.
    needs = [(True, True), (True, False), (False, True), (False, False)]
    for tier, share, (in_name, elsewhere) in zip(tiers, shares, needs):
        yield functools.partial(_pair_tier, session, word, tier, share, named / counted, in_name, elsewhere, files)


def _pair_tier(session: Session, word: str, tier: ColumnElement[bool], share: float, named: float, in_name: bool,
               elsewhere: bool, files: int, remaining: int) -> list[int] | _Walked:
    """A tier of ``_pair_tiers`` (``tier``: its condition on FileText; ``share``: the part of
    the sample in it; ``named``: the part with the word in its name), when ``remaining`` files
    are wanted: walked if that is estimated cheaper than finding it through the indexes."""
    if share:
        walked = remaining / share  # files walked in name order to find those wanted
        cost = walked * (_STEP_COST + (named if in_name else 1) * _LOOKUP_COST)
        if cost < share * files * _FOUND_COST:
            log.debug("%r: a tier of about %d files walked for %d", word, share * files, remaining)
            text_of = select(tier).where(FileText.file_id == File.id).scalar_subquery()
            if not in_name:
                return _Walked(text_of)
            # The name as Python's lower() makes it holds the word only if the name holds it in
            # some case, or goes beyond ASCII (whose characters Python may lower into ASCII).
            cased = "".join(f"[{letter}{letter.upper()}]" if letter.isalpha() else letter for letter in word)
            return _Walked(and_(File.name.op("~", is_comparison=True)(f"{cased}|[^\\x01-\\x7f]"), text_of))
    log.debug("%r: a tier of about %d files found by index", word, share * files)
    if not (in_name or elsewhere):  # matched by exclusions alone: no index finds what a file lacks
        return session.scalar(select(func.array_agg(FileText.file_id)).where(tier)) or []
    near = and_(*([_followed(FileText.name, word)] if in_name else []),
                *([_followed(FileText.about, word)] if elsewhere else []))
    found = union_all(select(FileText.file_id).where(tier, near),
                      select(FileText.file_id).where(text(_BEYOND_ASCII), tier, not_(near))).subquery()
    return session.scalar(select(func.array_agg(found.c.file_id))) or []


def _in_name_order(session: Session, tiers: Iterable[Sequence[int] | np.ndarray | Callable], filters: Filters,
                   pending: bool, exclude_id: int | None, limit: int, files: int) -> list[int]:
    """On PostgreSQL, the first ``limit`` files of ``tiers`` (the best first: each its files, or
    a function of how many are still wanted giving them or a ``_Walked``) that pass ``filters``,
    each tier by name; ``files``: how many the catalog holds (whether to walk a tier)."""
    others = [File.id != exclude_id] if exclude_id is not None else []
    filtered = bool(file_conditions(filters))
    found_ids: list[int] = []
    for tier in tiers:  # found as needed, the best first
        remaining = limit - len(found_ids)
        if remaining <= 0:
            break
        if callable(tier):
            tier = tier(remaining)
        if isinstance(tier, _Walked):
            walk, members = True, tier.members
        elif not len(tier):
            continue
        else:
            tier = tier.tolist() if isinstance(tier, np.ndarray) else tier
            walk = len(tier) >= max(1, math.isqrt(remaining * files) // _WALK_FACTOR)
            # Walked: the files in name order, each looked up in the tier (PostgreSQL hashes the
            # array). Sorted: the tier's files read by id, then sorted. PostgreSQL's planner
            # underestimates how many files a trigram search finds (a thousand for tens of
            # thousands) and would sort: ``id + 0`` leaves it no index to read by id.
            members = _among(File.id + 0 if walk else File.id, tier, False)
        in_order = functools.partial(_tier_in_order, session, members, walk, pending, others)
        ranked = _broadly_filtered(session, in_order, filters, pending, remaining) if walk and filtered else None
        found_ids += in_order(filters, remaining) if ranked is None else ranked
        if len(found_ids) >= limit:
            break
    return found_ids


def _broadly_filtered(session: Session, in_order: Callable, filters: Filters, pending: bool,
                      remaining: int) -> list[int] | None:
    """The first ``remaining`` files by name of a walked tier (``in_order``: ``_tier_in_order``
    for it) that pass a filter most files pass: taken from its first files by name alone, since
    a walk of the name order alone reads no file's row, a filtered one reads each's. None if too
    few of those pass: the filter is not broad."""
    for count in (remaining + remaining // 4 + 16, _BROAD * remaining):
        first = in_order(Filters(), count)
        kept = set(session.scalars(select(File.id).where(_among(File.id, first, False), _passing(filters, pending))))
        ranked = [file_id for file_id in first if file_id in kept]
        if len(ranked) >= remaining or len(first) < count:  # enough, or the whole tier
            return ranked[:remaining]
    return None


# A word in the name and elsewhere (relevance 3), in the name only (2), elsewhere only (1).
_ONE_WORD_TIERS = ("name : {word} AND about : {word}", "name : {word} NOT about : {word}",
                   "about : {word} NOT name : {word}")


def _tiers(query: KeywordQuery, groups: list[list[Keyword]], words: dict[str, str], every: str,
           cursor) -> Iterator[Callable]:
    """The tiers of a query of several words wanted (its alternatives ``groups``; ``words``: what
    FTS5 finds each by; ``every``: its query of every file matched), the best first, each as a
    function like ``_fts_keys``. A file holding one word wanted is in one of that word's tiers
    (``_ONE_WORD_TIERS``), asked of FTS5 as needed; the files holding two or more are fewer
    (a word in a few percent of the files, two in a few in ten thousand): FTS5 finds them all,
    and their texts say how relevant each is and whether the query matches it."""
    wanted = query.wanted
    several = functools.reduce(np.union1d, (_holding(cursor, f"{words[first]} AND {words[second]}")
                                            for first, second in itertools.combinations(wanted, 2)))
    relevance_of: dict[int, int] = {}
    for chunk in _chunks(several.tolist()):
        for key, name, about in cursor.execute(_TEXTS_AMONG, (_among_value(chunk, True),)).fetchall():
            # As FTS5 finds them: no word here holds the separator (``_fts_words``).
            if any(all((keyword.word in name or keyword.word in about) != keyword.negated for keyword in group)
                   for group in groups):
                relevance_of[key] = sum(2 * (word in name) + (word in about) for word in wanted)
    for relevance in range(3 * len(wanted), 0, -1):
        parts = [_sorted_keys(np.array(sorted(key for key, found in relevance_of.items() if found == relevance),
                                       dtype=np.int64))]
        if relevance <= 3:  # the files holding one word wanted, each tier of each word
            tier = _ONE_WORD_TIERS[3 - relevance]
            for word in _alone(groups):
                others = " OR ".join(words[other] for other in wanted if other != word)
                match = f"(({tier.format(word=words[word])}) NOT ({others})) AND ({every})"
                parts.append(functools.partial(_fts_keys, cursor, match))
        yield functools.partial(_merged_keys, parts)


def _alone(groups: Iterable[Iterable[Keyword]]) -> list[str]:
    """The words wanted that a file holding no other word wanted can be matched by: those an
    alternative wants alone ("door rain" matches no file holding only one of them)."""
    wanted = ({keyword.word for keyword in group if not keyword.negated} for group in groups)
    return list(dict.fromkeys(word for words in wanted if len(words) == 1 for word in words))


def _merged_keys(parts: Sequence[Callable], after: int, count: int | None) -> np.ndarray:
    """``_fts_keys`` for a tier made of ``parts`` (no file in two), each like ``_fts_keys``."""
    keys = np.sort(np.concatenate([part(after, count) for part in parts]))
    return keys if count is None else keys[:count]


def _fts_excluding(match: str, excluded: Iterable[str]) -> str:
    """FTS5's ``match`` without the files holding any of ``excluded`` (FTS5's queries of words, in any column)."""
    for word in excluded:
        match = f"({match}) NOT {word}"
    return match


def _fts_phrase(word: str) -> str:
    # An FTS5 string, its quotes doubled: the word is never read as FTS5 syntax.
    return '"' + word.replace('"', '""') + '"'


def _watch_changes(session: Session) -> None:
    """Give the catalog a new generation at each commit of ``session`` that changes its files,
    windows or tags, however they were written (ORM objects or bulk statements)."""
    event.listen(session, "do_orm_execute", _note_statement)
    event.listen(session, "before_flush", _note_flush)
    event.listen(session, "before_commit", _new_generation)
    event.listen(session, "after_rollback", lambda rolled_back: rolled_back.info.pop("changed", None))


def _note_statement(state) -> None:
    table = getattr(state.statement, "table", None)
    if not state.is_select and getattr(table, "name", None) in _WATCHED_TABLES:
        state.session.info["changed"] = True


def _note_flush(session: Session, _context, _instances) -> None:
    # Dirty by what it holds, not by attributes set again to what they were (an unchanged rescan
    # sets each unreadable file's again: a new generation, and with it every kept count, at each checkpoint).
    if any(isinstance(item, File | Window | FileTag) for group in (session.new, session.deleted) for item in group) \
            or any(isinstance(item, File | Window | FileTag) and session.is_modified(item) for item in session.dirty):
        session.info["changed"] = True


def _new_generation(session: Session) -> None:
    session.flush()  # what it changes is noted before the commit's own flush
    if session.info.pop("changed", False):
        session.merge(Meta(key=GENERATION, value=os.urandom(8).hex()))
        _refresh_statistics(session)


_statistics_refreshed = 0.0  # when, in time.monotonic(), by this process


def _refresh_statistics(session: Session) -> None:
    """SQLite's planner chooses indexes by the statistics ANALYZE keeps, and SQLite never gathers
    them itself: without them, a category filter at 10^6 files read every file of its format, and
    a folder filter every indexed file. ANALYZE after a change, at most every STATISTICS_SECONDS
    per process; PostgreSQL's autovacuum keeps its own."""
    global _statistics_refreshed
    if session.get_bind().dialect.name != "sqlite" or time.monotonic() - _statistics_refreshed < STATISTICS_SECONDS:
        return
    _statistics_refreshed = time.monotonic()
    session.execute(text("ANALYZE"))


def _tune_sqlite(connection, _record) -> None:
    # WAL lets searches read while an index run writes; SQLite leaves foreign keys off unless asked.
    # Paths are case-sensitive, as on PostgreSQL, and only a case-sensitive LIKE reads an index.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()
