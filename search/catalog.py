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
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sqlalchemy import (
    ARRAY, BigInteger, ColumnElement, DateTime, Float, ForeignKey, Index, Integer, Select, String, Text, TypeDecorator,
    and_, any_, bindparam, cast, create_engine, delete, event, exists, func, insert, inspect, or_, select, text, true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.sqltypes import NullType

from encoders.audio import AUDIO_EXTENSIONS
from search import ucs
from search.filters import Filters
from search.keyword import KeywordQuery

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
    (``keyword_index._TEXT_INDEX``). Lower-cased by Python, so both backends fold case alike, Unicode too."""

    __tablename__ = "file_text"
    __table_args__ = (Index("ix_file_text_rank_key", "rank_key").ddl_if(dialect="sqlite"),)

    file_id: Mapped[int] = mapped_column(_ID, ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    about: Mapped[str] = mapped_column(Text)  # its fields joined by _SEPARATOR
    # The file's place in name order (``keyword_index._add_texts``): on SQLite, its row id in the
    # FTS5 index; on PostgreSQL, what a tier's files are ordered by (an index of its own there).
    # NULL in a PostgreSQL catalog made before there were keys, until it is opened for writing.
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
            advice = "the file has changed since; put back the one it was built with"
        else:
            advice = "use the same model and weights"
        advice += ", or embed the library again with these: `clapdex index --reembed`"
        super().__init__(f"this index was built with {built} but the current model is {requested}; {advice}")

    def __reduce__(self):
        # A search worker's exception crosses to the server pickled, and pickle would call
        # __init__ with the sentence alone.
        return type(self), (self.indexed, self.requested)


class CatalogMissing(LookupError):
    """Asked to open a catalog that was never created."""


class KeyNameTaken(ValueError):
    """An API key is to be made under a name another key, active or revoked, has already."""

    def __init__(self, name: str):
        super().__init__(f"a key named {name} exists already (revoked keys keep their names); choose another name")


class KeywordIndexUnavailable(RuntimeError):
    """The database cannot make the keyword index (PostgreSQL without the pg_trgm extension)."""


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
        elif self.engine.dialect.name == "postgresql":
            event.listen(self.engine, "connect", _tune_postgresql)
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
        keyword_index.build(self.engine)

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
        self._owed_from = self._paying = None  # its note in meta may have been one of them

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

    def change_model(self, requested: ModelIdentity) -> int:
        """Make ``requested`` the index's model (the caller has discarded the vectors, and commits):
        every window goes, and every indexed file waits to be embedded again; returns how many.
        What a person gave a file (tags, accepted categories) stays; so do the suggestions, until
        ``clapdex tag`` makes them again from the new embeddings."""
        self.session.flush()
        self.session.execute(delete(Window))
        waiting = self.session.execute(
            update(File).where(File.status == INDEXED).values(status=PENDING, error=None, indexed_at=None)).rowcount
        self.session.expire_all()  # loaded files and their windows are as they were no longer
        for key, value in dict(model=requested.name, weights_id=requested.weights_id, dim=str(requested.dim),
                               weights_path=requested.weights_path,
                               weights_named="1" if requested.weights_named else "0").items():
            self.set_meta(key, value)
        return waiting

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
        if self._owing:
            if self._owed_from is None:
                self._owed_from = keyword_index.owe(self.session, min(ids.values()))
        else:
            keyword_index.add_new_files(self.session, [(ids[file.path], row, file_tags)
                                                       for file, row, file_tags in zip(files, rows, tags)])
        return [ids[file.path] for file in files]

    # Keyword texts owed. Placing a few new files' texts at a time in name order moves the keys of
    # the files around them again and again (``keyword_index._spaced_out``); that was half of an
    # index run's main thread. So an index run's scan owes the texts of the files it adds and
    # writes them together now and then (``pay_texts``): a new library's files then take their
    # keys in one pass, nothing moved. Meta notes the first file owed, committed with the files,
    # so the texts of a run killed before paying are written by the next (``pay_texts`` at its start).
    _owing = False
    _owed_from: str | None = None  # as meta notes it
    _paying: list[int] | None = None  # the files still owed, last by name first, while paid in steps

    @property
    def owes_texts(self) -> bool:
        """Some new files' keyword texts wait for ``pay_texts``."""
        return self._owed_from is not None

    def owe_texts(self, owing: bool = True) -> None:
        """While ``owing``, ``add_files`` leaves the new files' keyword texts to ``pay_texts``:
        until then keyword search does not find them (filters and listings do)."""
        self._owing = owing

    def pay_texts(self, at_most: int | None = None) -> int:
        """Write the keyword texts owed (by ``add_files`` while owing, or by a run killed before it
        paid them); returns how many. ``at_most``: only that many, the first by name (the rest
        stay owed, for the next call), so a caller can pay in steps between other work."""
        if at_most is None or self._paying is None:
            owed_from = keyword_index.owed_from(self.session)
            if owed_from is None:
                self._owed_from, self._paying = None, None
                return 0
            # In name order: each step's files then lie after the step before's, which moves no key.
            self._paying = keyword_index.owed_by_name(self.session, owed_from)
            self._paying.reverse()  # taken from the end
        step = [self._paying.pop() for _ in range(min(len(self._paying), at_most or len(self._paying)))]
        keyword_index.pay(self.session.connection(), step, last=not self._paying)
        if not self._paying:
            self._owed_from, self._paying = None, None
        return len(step)

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
        return keyword_index.ranked(self.session, query, filters, pending, exclude_id, limit)

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
        # PostgreSQL: the ids as one array (``_among``); 500 bound values took 12-18 ms at 10^6
        # files, most of a broad filter's check, the array 3-7 ms. SQLite's IN is as fast as its array.
        sqlite = self.session.get_bind().dialect.name == "sqlite"
        query = select(File.id).where(_passing(filters))
        return {file_id for chunk in _chunks(file_ids) for file_id in self.session.scalars(
            query.where(File.id.in_(chunk) if sqlite else _among(File.id, chunk, False)))}

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
        ``any_order``, the database hands them over as one text that numpy parses, each id not
        made a Python object: SQLite 9-14 ms against 17-35 ms as rows, PostgreSQL 18 against 24
        (47,619 ids; SQLite's ``group_concat`` promises no order before 3.44)."""
        if any_order:
            listed = query.subquery()
            joined = func.group_concat(listed.c[0]) if self.session.connection().dialect.name == "sqlite" \
                else func.string_agg(cast(listed.c[0], Text), ",")
            with self._driver_rows(select(joined)) as rows:
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


def _session(engine) -> Session:
    session = Session(engine, expire_on_commit=False)
    event.listen(session, "after_flush", keyword_index.keep_text)
    return session


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


def _tune_postgresql(connection, _record) -> None:
    # Every statement planned for the values it is given. psycopg prepares a statement run five
    # times, and PostgreSQL then plans it once for any values where that plan's estimate looks
    # no dearer; but a keyword search's statement is the same text whatever its words, and
    # ``_among``'s arrays are meant as constants of the plan. Planned for any words, a
    # "door -metal, gate" search's statement no longer saw that its conditions repeat the same
    # words, and had pg_trgm's index read each word twice (at 10^6 files, 29 ms where planned for
    # its words 17; OR and NOT at p50 41 ms against 31: docs/benchmarks.md, section 6).
    connection.execute("SET plan_cache_mode = force_custom_plan")
    connection.commit()  # not undone by the rollback the pool gives a connection it takes back


# Last: the keyword index reads this module's tables (and its import of them finds them made).
from search import keyword_index  # noqa: E402
