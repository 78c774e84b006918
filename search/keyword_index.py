"""The keyword index: each file's text (``FileText``), the database's full-text indexes over
it, and the rankings keyword search reads from them (``ranked``).

What a file says is lower-cased by Python into FileText on every write (``keep_text``, after
each flush; ``add_new_files`` for bulk inserts), so that both backends fold case alike. SQLite
indexes it with FTS5 trigrams, its row ids (rank keys) kept in name order; PostgreSQL with
pg_trgm (the name and the rest as two columns, and joined as one), rank keys in a column of
their own. A search finds its files tier of relevance by tier, each
in name order, the best first, until the limit (``ranked``). The catalog owns the tables and
the connection; this module owns every statement of keyword search.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import (
    BigInteger, ColumnElement, Text, and_, case, column, delete, exists, false, func, insert, inspect,
    literal, literal_column, not_, or_, select, tablesample, text, true, tuple_, union_all, update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, aliased

from search import ucs
from search.catalog import (
    _AMONG, File, FileTag, FileText, KeywordIndexUnavailable, Meta, Suggestion, Tagging, _among, _among_value,
    _chunks, _passing, _starting, file_conditions,
)
from search.filters import Filters
from search.keyword import Keyword, KeywordQuery

log = logging.getLogger(__name__)

def build(engine) -> None:
    """Make the keyword index of a catalog that lacks it, or whose texts an older version made:
    the texts of every file, then the full-text indexes over them, in one transaction."""
    with engine.begin() as connection:
        # A catalog made before the rank keys (create_all adds no column to a table there);
        # on SQLite, where they are kept, below, as the index is built again for them.
        if connection.dialect.name == "postgresql" and not _has_rank_key(connection):
            connection.exec_driver_sql("ALTER TABLE file_text ADD COLUMN IF NOT EXISTS rank_key BIGINT")
        joining = connection.dialect.name == "postgresql" and not _joined_kept(connection) \
            and connection.scalar(select(exists().select_from(FileText)))
        if joining:
            # A catalog made before the joined index gets it below, once (at 10^6 files:
            # docs/benchmarks.md, section 6); searched as before until then.
            log.info("adding the keyword index of names and texts joined (once)")
        _create_text_index(connection)
        if joining:
            # The planner's statistics of the index's expression (a sample: 0.3 s at 10^6). Without
            # them it guesses how many texts hold a word, and autovacuum analyses only a table
            # whose rows change, which a library's may not for long.
            connection.exec_driver_sql("ANALYZE file_text")
        # On PostgreSQL, a catalog whose texts were written before they had rank keys (or by
        # a version that wrote none) has every text written again, with its key.
        if text_kept(connection) and keys_kept(connection):
            return
    with engine.begin() as connection:
        _lock_text(connection)
        if text_kept(connection) and keys_kept(connection):  # another process built it while this one waited
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
        for which in _build_steps(connection, keys):
            _add_texts(connection, sorted(_texts(connection, which, keys), key=lambda named: named[1]["rank_key"]))
        _create_text_index(connection)
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("INSERT INTO file_text_index(file_text_index) VALUES ('rebuild')")
            # One segment instead of the dozens a rebuild leaves: each list is then read from
            # one place (at 2 x 10^5 files, a third less CPU for three words or AND/OR/NOT).
            connection.exec_driver_sql("INSERT INTO file_text_index(file_text_index) VALUES ('optimize')")
        connection.execute(delete(Meta).where(Meta.key == _TEXT_KEY))
        connection.execute(insert(Meta).values(key=_TEXT_KEY, value=_text_version(connection)))


def ranked(session: Session, query: KeywordQuery, filters: Filters, pending: bool, exclude_id: int | None,
           limit: int) -> list[int]:
    """``Catalog.keyword_ranked``'s ids, read through the keyword index, or, in a catalog made
    before there was one, opened only to read (writers build it), by scanning every file's
    columns, case folded as the database's lower() folds it (SQLite: ASCII only)."""
    # With suggestions, a word may match a file whose text lacks it: no index narrows the files down.
    if text_kept(session):
        walked, matching = (None, []) if filters.suggested else _walk_tiers(
            session, query, filters, pending, exclude_id, limit)
        if walked is not None:
            return walked
        in_name, elsewhere = functools.partial(_holds, FileText.name), functools.partial(_holds, FileText.about)
        statement = select(File.id).join(FileText, FileText.file_id == File.id)
        if not filters.suggested:
            statement = statement.where(*(matching or _narrowing(query, _dialect(session))))
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
    return list(session.scalars(statement))


def add_new_files(session: Session, files: Sequence[tuple[int, dict, Sequence[str]]]) -> None:
    """The texts of files just inserted in bulk (each its id, its columns as inserted and its
    tags), ORM flushes aside (``keep_text``); none while the index waits to be built."""
    if text_kept(session):
        _add_texts(session, [(row["name"], _file_text(file_id, row, tags, None)) for file_id, row, tags in files])


def owed_from(session: Session) -> str | None:
    """The first file id whose text may be owed, as meta notes it (None: nothing owed)."""
    return session.scalar(select(Meta.value).where(Meta.key == _OWED_KEY))


def owe(session: Session, first_id: int) -> str:
    """Note, with the files about to be committed, that texts from ``first_id`` on may be owed."""
    noted = owed_from(session)
    if noted is None:
        session.execute(insert(Meta).values(key=_OWED_KEY, value=str(first_id)))
        noted = str(first_id)
    return noted


def owed_by_name(session: Session, first_id: str) -> list[int]:
    """The files from ``first_id`` on without a text, in name order."""
    textless = select(File.id, File.name).where(File.id >= int(first_id), ~exists().where(FileText.file_id == File.id))
    return [file_id for file_id, _ in sorted(session.execute(textless), key=lambda row: (row.name, row.id))]


def pay(connection, file_ids: Sequence[int], last: bool) -> None:
    """Write the texts of ``file_ids`` that still have none (a file the run changed since may
    have one); the note goes with the ``last`` of them. Nothing while the index waits to be
    built: building it, when this version first opens it, writes them all."""
    if text_kept(connection):
        _add_texts(connection, [text for chunk in _chunks(file_ids)
                                for text in _texts(connection, File.id.in_(chunk)
                                                   & ~exists().where(FileText.file_id == File.id))])
    if last:
        connection.execute(delete(Meta).where(Meta.key == _OWED_KEY))


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
_OWED_KEY = "keyword_text_owed_from"  # the first file id whose text may be owed (``Catalog.pay_texts``)
_BUILD_STEP = 20_000  # file ids per statement when building the text of a whole catalog

# A text holding a character beyond ASCII (PostgreSQL's regular expression; a constant of the
# SQL, so that the planner matches it to the index of that name).
_BEYOND_ASCII = "(name || about) ~ '[^\\x01-\\x7f]'"

# "The word anywhere in the text" as one condition on PostgreSQL: pg_trgm's index of the two
# columns makes it two scans and an OR a word, six scans for three words; an index of the two
# joined makes it one condition a word, and PostgreSQL hands every word's condition on that index
# to one scan, which intersects the words' trigram lists inside the index (at 10^6 files, 3 words
# 22 -> 5.5 ms, docs/benchmarks.md, section 6). Joined by the separator, which no word searched
# holds (``_holds``), so a word is in the joined text exactly when it is in the name or the rest.
# Tiers of one word need the name and the rest apart (a word in the name: a fifth of the files
# holding it anywhere), which the two columns' index gives them.
_JOINED_INDEX = "file_text_joined"
# The index's expression, as statements must write it for the planner to match it to the index.
_JOINED_SQL = f"file_text.name || E'\\x{ord(_SEPARATOR):02x}' || file_text.about"

# Substring matching is what keyword search promises ("door" finds "DOORWood", "oor" too), so
# trigram indexes, not word indexes (a tsvector finds words and stems, never parts of words;
# one of the ends of every word found a word's files at 10^6 files a third slower than
# pg_trgm, and made its index 326 MB: docs/benchmarks.md, section 6): FTS5's trigram tokenizer
# on SQLite (3.34+), pg_trgm's GIN operator class on PostgreSQL.
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
        # The name and the rest as one text, for several words (``_anywhere``).
        f"CREATE INDEX IF NOT EXISTS {_JOINED_INDEX} ON file_text USING gin (({_JOINED_SQL}) gin_trgm_ops)",
        # The few texts beyond ASCII, for two letters (``_pair_arms``): an index of the expression
        # itself, whose statistics tell the planner how few they are (it guesses that a regular
        # expression keeps most rows, and read every text for a partial index's few).
        f"CREATE INDEX IF NOT EXISTS file_text_beyond_ascii ON file_text (({_BEYOND_ASCII}))",
        # A tier's files in name order: read along it, or sorted by it (``_first_by_key``).
        "CREATE INDEX IF NOT EXISTS ix_file_text_rank_key ON file_text (rank_key)",
    ),
}
_TEXT_INDEX_DROP = {
    "sqlite": ("DROP TRIGGER IF EXISTS file_text_added", "DROP TRIGGER IF EXISTS file_text_removed",
               "DROP TRIGGER IF EXISTS file_text_changed", "DROP TABLE IF EXISTS file_text_terms",
               "DROP TABLE IF EXISTS file_text_index"),
    "postgresql": ("DROP INDEX IF EXISTS file_text_trigrams", f"DROP INDEX IF EXISTS {_JOINED_INDEX}",
                   "DROP INDEX IF EXISTS file_text_beyond_ascii", "DROP INDEX IF EXISTS ix_file_text_rank_key"),
}


def _create_text_index(connection) -> None:
    try:
        for statement in _TEXT_INDEX.get(connection.dialect.name, ()):
            connection.exec_driver_sql(statement)
    except DBAPIError as error:
        reason = str(error.orig or error).strip().splitlines()[0]
        raise KeywordIndexUnavailable(
            f"the catalog's database cannot make the keyword index ({reason}); on PostgreSQL, have the "
            "database's owner run CREATE EXTENSION pg_trgm in it") from None


def _joined_kept(connection) -> bool:
    """The texts have the index of the name and the rest joined (``connection``: or a session):
    a catalog made before it, opened only to read, has not (its writers make it)."""
    # Looked up once per database connection: the index, once made, is never dropped for long
    # (only by a build, in the transaction that makes it again).
    info = (connection.connection() if isinstance(connection, Session) else connection).info
    if not info.get(_JOINED_SEEN):
        if connection.scalar(text("SELECT to_regclass(:index)"), {"index": _JOINED_INDEX}) is None:
            return False
        info[_JOINED_SEEN] = True
    return True


_JOINED_SEEN = "keyword_joined_index_seen"  # in a database connection's info: the joined index is there


def text_kept(connection) -> bool:
    """Every file has its text, as this version makes it (``connection``: or a session)."""
    return connection.scalar(select(Meta.value).where(Meta.key == _TEXT_KEY)) == _text_version(connection)


def keys_kept(connection) -> bool:
    """Every text has its rank key (``connection``: or a session): on SQLite, always (they are
    a part of its texts' version); on PostgreSQL, whose catalogs had none before, when no text
    lacks one (an index lookup: an older version writing texts after this one leaves some)."""
    if _dialect(connection) == "sqlite":
        return True
    # A read-only catalog may be older than the column; a session, once it has seen it, sees it.
    info = connection.info
    if not info.get(_RANK_KEY_SEEN):
        bound = connection.connection() if isinstance(connection, Session) else connection
        if not _has_rank_key(bound):
            return False
        info[_RANK_KEY_SEEN] = True
    return not connection.scalar(select(exists().where(FileText.rank_key.is_(None))))


_RANK_KEY_SEEN = "keyword_rank_key_seen"  # in a session's or connection's info: file_text has the column


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
    and, if known, its ``rank_key``."""
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
    name (``keys``: each file's rank key, by id, when every file's text is made at once)."""
    tags: dict[int, list[str]] = {}
    for file_id, tag in connection.execute(select(FileTag.file_id, FileTag.tag).join(File).where(which)):
        tags.setdefault(file_id, []).append(tag)
    columns = [File.id, *(getattr(File, name) for name in _TEXT_FIELDS)]
    rows = connection.execute(select(*columns).where(which)).all()
    return [(row.name, _file_text(row.id, row._mapping, tags.get(row.id, ()),
                                  None if keys is None else int(keys[row.id]))) for row in rows]


# --- Rank keys: the keyword index read in name order
#
# A search lists the files of a tier of relevance by name (``File.name``, then ``File.id``).
# FTS5 gives the files it finds in the order of their row ids, and stops at a LIMIT: so the
# row id of a file in the index, its ``rank_key``, is its place in name order, exactly: the
# keys of all files, taken in name order, only ever grow. PostgreSQL keeps the same keys in
# file_text (an index of them: ``_first_by_key``), so that a tier's first files by name come
# from its own rows, without each file's name read and sorted. Keys are small and close (built
# _SPACING apart), because FTS5 stores each row id as a varint of its distance from the one
# before in a word's list: keys holding the file id in their low bits made the index twice
# as large, and every whole list read twice as slow. A file written later takes a key between
# its neighbours' by name (``_add_texts``); where they have no key free between them, the keys
# of the files around are spaced out again (``_spaced_out``), as few as leave room.
_SPACING = 64
_FIRST_KEY = 1 << 40  # the first key of a built index: room before it for files added first by name


def _build_steps(connection, keys: np.ndarray) -> Iterator[ColumnElement[bool]]:
    """The files whose texts a build writes together, step after step (``keys``: ``_name_keys``):
    on SQLite by id; on PostgreSQL in name order, so that its table holds the texts in key
    order, and a tier walked along the keys reads them a page after another (``_key_step``)."""
    if connection.dialect.name == "sqlite":
        for first in range(0, len(keys), _BUILD_STEP):
            yield File.id.between(first, first + _BUILD_STEP - 1)
        return
    ordered = np.argsort(keys, kind="stable")
    ordered = ordered[keys[ordered] > 0]  # ids of no file have no key
    for first in range(0, len(ordered), _BUILD_STEP):
        yield _among(File.id, ordered[first:first + _BUILD_STEP].tolist(), False)


def _name_keys(connection, last: int) -> np.ndarray:
    """Every file's rank key when the index is built, by id (up to ``last``): in the database's
    name order, its collation's."""
    ordered = np.array(connection.execute(select(File.id).order_by(File.name, File.id)).scalars().all(), dtype=np.int64)
    keys = np.zeros(last + 1, dtype=np.int64)
    keys[ordered] = _FIRST_KEY + np.arange(len(ordered), dtype=np.int64) * _SPACING
    return keys


# The key of the file before (name, id) by name that has its text already (PostgreSQL walks the
# same index of names unasked).
_BEFORE = {dialect: text(f"SELECT t.rank_key FROM files AS f {hint}"
                         "JOIN file_text AS t ON t.file_id = f.id WHERE (f.name, f.id) < (:name, :id) "
                         "ORDER BY f.name DESC, f.id DESC LIMIT 1")
           for dialect, hint in (("sqlite", "INDEXED BY ix_files_name_id_status "), ("postgresql", ""))}
# The file with the first key after :key: its key, name and id.
_NEXT = text("SELECT t.rank_key, f.name, f.id FROM file_text AS t JOIN files AS f ON f.id = t.file_id "
             "WHERE t.rank_key > :key ORDER BY t.rank_key LIMIT 1")
_KEYS_BELOW = text("SELECT rank_key FROM file_text WHERE rank_key < :key ORDER BY rank_key DESC LIMIT :count")
_KEYS_ABOVE = text("SELECT rank_key FROM file_text WHERE rank_key > :key ORDER BY rank_key LIMIT :count")
_MOVE_KEY = text("UPDATE file_text SET rank_key = :new WHERE rank_key = :old")


def _add_texts(connection, texts: Sequence[tuple[str, dict]]) -> None:
    """Write FileText's rows ``texts`` (each with its file's name, as ``_texts`` gives them);
    those without a rank key get one between the keys of their neighbours by name."""
    if not texts:
        return
    dialect = _dialect(connection)
    if dialect == "sqlite":
        _note_characters(connection, [row for _, row in texts])
    if all("rank_key" in row for _, row in texts):
        connection.execute(insert(FileText), [row for _, row in texts])
        return
    if dialect == "postgresql":
        # Two writers placing keys between the same neighbours at once would give two files one
        # key (SQLite has one writer): one places at a time, until its transaction ends.
        connection.execute(select(func.pg_advisory_xact_lock(_PLACING_LOCK)))
    # In name order, the files between the same two neighbours (which have their texts) are
    # given their keys together, spread over the keys free between them; written in one
    # statement at the end, or before keys move (``_place``). Two statements a group, not a
    # file: looked up file by file, each file's neighbour before would be found by walking back
    # over the files before it that have no text yet, all of them when a whole library's texts
    # are written at once (``pay``).
    ordered = _by_name(connection, texts)
    written: list[dict] = []
    start = 0
    while start < len(ordered):
        name, row = ordered[start]
        before = connection.scalar(_BEFORE[dialect], {"name": name, "id": row["file_id"]})
        after = connection.execute(_NEXT, {"key": -1 if before is None else before}).first()
        end = len(ordered) if after is None else start + 1 + _preceding(connection, ordered[start + 1:], after)
        _place(connection, before, None if after is None else after.rank_key,
               [row for _, row in ordered[start:end]], written)
        start = end
    if written:
        connection.execute(insert(FileText), written)


_PLACING_LOCK = 0x636C6170_6B657973  # PostgreSQL's advisory lock of ``_add_texts`` ("clapkeys")


def _by_name(connection, texts: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """``texts`` in name order, as the database orders names: Python's order of code points is
    SQLite's; PostgreSQL's collation may be another, so it is asked."""
    if _dialect(connection) == "sqlite":
        return sorted(texts, key=lambda named: (named[0], named[1]["file_id"]))
    by_id = {row["file_id"]: (name, row) for name, row in texts}
    ordered = connection.execute(select(File.id).where(_among(File.id, list(by_id), False))
                                 .order_by(File.name, File.id)).scalars()
    return [by_id[file_id] for file_id in ordered]


def _preceding(connection, ordered: Sequence[tuple[str, dict]], after) -> int:
    """How many of the first of ``ordered`` (texts in name order) come before the file ``after``
    (its name and id) by name. On PostgreSQL compared by the database, in windows each twice
    as long as the last: a batch's run of files between two neighbours is read about twice."""
    if _dialect(connection) == "sqlite":
        count = 0
        while count < len(ordered) and (ordered[count][0], ordered[count][1]["file_id"]) < (after.name, after.id):
            count += 1
        return count
    neighbour = aliased(File)
    count, window = 0, _FIRST_WINDOW
    while count < len(ordered):
        ids = [row["file_id"] for _, row in ordered[count:count + window]]
        before = connection.scalar(
            select(func.count()).select_from(File).join(neighbour, neighbour.id == after.id)
            .where(_among(File.id, ids, False), tuple_(File.name, File.id) < tuple_(neighbour.name, neighbour.id)))
        count += before
        if before < len(ids):
            break
        window *= 2
    return count


_FIRST_WINDOW = 16


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


def _place(connection, before: int | None, after: int | None, rows: list[dict], written: list[dict]) -> None:
    """Give ``rows`` (in name order) keys after ``before`` and before ``after``, the next key
    (None: the first, the last), adding them to ``written`` (rows with keys, to be written);
    where the keys of other files have to move to make room, ``written`` is written first, then
    emptied: they may move too."""
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


def keep_text(session: Session, _flush_context) -> None:
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
    if not text_kept(connection):  # a catalog made before the index: building it later makes every text
        return
    # Every old text gone before any new one is placed: a renamed file's old key, left where
    # its old name was, would stand among its new neighbours.
    for chunk in _chunks(sorted(changed | gone)):
        connection.execute(delete(FileText).where(FileText.file_id.in_(chunk)))
    _add_texts(connection, [row for chunk in _chunks(sorted(changed - gone))
                            for row in _texts(connection, File.id.in_(chunk))])


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
# them exactly), its first by rank key, sorted as they are found (``_first_by_key``); a tier
# with many files is found faster by walking the files in name order (ix_files_name_id_status),
# keeping the tier's and stopping at the limit (``_sampled_tier`` tells which). In a catalog
# whose texts have no keys yet (opened only to read since it was made), a tier's files found are
# put in name order through the files' names: walked, for a tier of at least
# sqrt(limit * files) / 4 files, or sorted (``_in_name_order``).
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
        tiers = _postgresql_tiers(session, query, files, _key_step(session))
        return _in_name_order(session, tiers, filters, pending, exclude_id, limit, files), []
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


def _postgresql_tiers(session: Session, query: KeywordQuery, files: int,
                      key_step: float | None) -> Iterator[list[int] | Callable]:
    """The files ``query`` matches, tier by tier, the best first. For one word wanted, each
    tier asked when needed: the word in the name and elsewhere, in the name only, elsewhere
    only (pg_trgm's index finds each; the first usually fills a page, and the files' texts
    beyond it are never read). For several words, as on SQLite (``_tiers``): one statement
    ranks the files holding two or more (found through the index of the joined text where the
    catalog has it: ``_anywhere``), and each word's tiers of the files holding it alone are
    asked when needed. Each tier's ids are gathered by PostgreSQL into one array (in rank-key
    order, an ``_InOrder``, where the texts have keys and no tier of one word alone joins it),
    or, for one word wanted, walked in name order where a sample says that is cheaper
    (``_sampled_tiers``), along the names or, where the texts have rank keys (``key_step``:
    ``_key_step``), the keys, else found and read by key."""
    wanted = query.wanted
    alone = all(any(not keyword.negated for keyword in group) for group in query.alternatives)
    if len(wanted) == 1 and _PAIR.fullmatch(wanted[0]):
        yield from _sampled_tiers(session, query, alone, files, _PAIR_SAMPLE, _pair_arms,
                                  _FOUND_COST if key_step is None else _KEYED_FOUND_COST, False, key_step)
        return
    if len(wanted) == 1 and len(wanted[0]) >= 3:
        yield from _sampled_tiers(session, query, alone, files, _WORD_SAMPLE, _trigram_arms, _TRIGRAM_FOUND_COST,
                                  True, key_step)
        return
    if len(wanted) == 1:
        for tier in _one_word_conditions(query, alone, FileText.name, FileText.about):
            yield session.scalar(select(func.array_agg(FileText.file_id)).where(tier)) or []
        return
    anywhere = _anywhere(session)
    matching = _keywords_match(query, anywhere)
    relevance = _relevance(query, functools.partial(_holds, FileText.name), functools.partial(_holds, FileText.about))
    if not alone:  # files matched by exclusions alone hold no word wanted: every file ranked at once
        matched = select(FileText.file_id, relevance.label("relevance")).where(matching).subquery()
        yield from session.scalars(select(func.array_agg(matched.c.file_id)).group_by(matched.c.relevance)
                                   .order_by(matched.c.relevance.desc()))
        return
    holds = {word: anywhere(word) for word in wanted}
    several = or_(*(and_(holds[first], holds[second]) for first, second in itertools.combinations(wanted, 2)))
    # Where the texts have rank keys, each tier's files come in name order from the statement
    # that finds them (a sort of the few files holding several words), not through the names.
    keyed = [] if key_step is None else [FileText.rank_key]  # an older catalog may lack the column
    matched = select(FileText.file_id, *keyed, relevance.label("relevance")).where(matching, several).subquery()
    gathered = func.array_agg(matched.c.file_id if key_step is None else
                              aggregate_order_by(matched.c.file_id, matched.c.rank_key))
    ranked = dict(session.execute(select(matched.c.relevance, gathered).group_by(matched.c.relevance)).all())
    lone = _alone(query.alternatives)
    in_order: list[int] = []  # the tiers ranked above, in name order, not yet given
    for tier in range(3 * len(wanted), 0, -1):
        ids = list(ranked.get(tier, ()))
        if tier <= 3 and lone:  # the files holding one word wanted, each tier of each word
            if in_order:
                yield _InOrder(in_order)
                in_order = []
            for word in lone:
                in_name, elsewhere = _holds(FileText.name, word), _holds(FileText.about, word)
                alone_in = [and_(in_name, elsewhere), and_(in_name, not_(elsewhere)), and_(elsewhere, not_(in_name))]
                others = [not_(holds[other]) for other in wanted if other != word]
                ids += session.scalar(select(func.array_agg(FileText.file_id))
                                      .where(alone_in[3 - tier], *others, matching)) or []
            yield ids
        elif key_step is None:
            yield ids
        else:
            in_order += ids
    if in_order:
        yield _InOrder(in_order)


def _anywhere(session: Session) -> Callable[[str], ColumnElement[bool]]:
    """A condition on FileText true where a word is in the name or the rest: on the joined text,
    which its own index serves (``_JOINED_INDEX``), where the catalog has that index."""
    if _joined_kept(session):
        joined = literal_column(f"({_JOINED_SQL})", Text)
        return functools.partial(_holds, joined)
    return lambda word: or_(_holds(FileText.name, word), _holds(FileText.about, word))


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
# which of the two is cheaper is told by a sample of the texts (``_PAIR_SAMPLE`` rows). A word
# of three characters or more is told the same way: a common word's tier ("close", in the name
# and elsewhere of 9% of the files) walked for a page's files instead of gathered whole (90,000
# files: 150-190 ms at 10^6 files, the walk 15), from a smaller sample (``_WORD_SAMPLE``): most
# words are rare, found by index whatever the sample says, and 4,000 rows cost them 2 ms of 40.
_PAIR = re.compile("[a-z0-9]{2}")
_PAIR_SAMPLE, _WORD_SAMPLE = 4_000, 1_000
# Relative costs, measured at 10^6 files under a load of 11 on 2 cores: a file walked in name
# order whose name is tested on the index (1.6 us), a file whose text is looked up (15-20 us),
# a file of a tier found by index (18 us: its text read, the expressions and LIKE tested again).
_STEP_COST, _LOOKUP_COST, _FOUND_COST = 1, 10, 12
# A file of a tier of two letters found by index where the texts have rank keys: read in key
# order as found (``_first_by_key``), not then put in name order through the files' names. Half
# the cost above: set where it reads each tier of the bench's two letters the faster way (at
# 10^6 files, load 7: "kn", "sq", "za" and "fl", tiers of 8,000-13,000 files, found in 77-118 ms
# where the walk took 102-213; those of 15,000 or more still walked, 80-120 ms against 108-245).
_KEYED_FOUND_COST = 6
# A text walked in rank-key order (``_first_by_key``), tested as it is read: 0.2 us at 10^6
# files where the table holds the texts in key order (load 4: "bo", 36,900 texts in 7 ms, where
# the walk by name took 28), 3-4.7 us where it holds them in no order of keys (load 7: each text
# from another page). Between the two as PostgreSQL's statistics say the table's order follows
# the keys', as its planner weighs an index's reads (the square of their correlation).
_KEY_STEP_IN_ORDER, _KEY_STEP_SCATTERED = 0.33, 3


def _key_step(session: Session) -> float | None:
    """The cost of a text walked in rank-key order, or None where the texts lack keys."""
    if not keys_kept(session):
        return None
    correlation = session.scalar(text(
        "SELECT correlation FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'file_text' "
        "AND attname = 'rank_key'")) or 0.0  # never analysed: no order known
    return _KEY_STEP_IN_ORDER + (1 - correlation ** 2) * (_KEY_STEP_SCATTERED - _KEY_STEP_IN_ORDER)
# A file pg_trgm's index finds for a tier of a word of three characters or more (``_trigram_arms``),
# each file holding the word where the tier needs it (a tier with the word in the name only is
# found among all those with it in the name): 2-3 us at 10^6 files.
_TRIGRAM_FOUND_COST = 1.5


class _InOrder(NamedTuple):
    """Tiers whose files are all known, the best first, each in name order (``_first_passing``)."""
    ids: list[int]


class _Walked(NamedTuple):
    """A tier found by walking the files in name order, ``members`` telling its files."""
    members: ColumnElement[bool]


class _Keyed(NamedTuple):
    """A tier read in rank-key order (PostgreSQL, every text keyed: ``_first_by_key``), its
    files those of any of ``arms`` (conditions on FileText): walked along the index of keys
    (``walk``), or found through the arms' own indexes and sorted by key."""
    arms: list[ColumnElement[bool]]
    walk: bool


def _followed(column, word: str) -> ColumnElement[bool]:
    """``word`` (two letters or digits) followed in ``column`` by an ASCII character."""
    return column.op("~", is_comparison=True)(word + "[\\x01-\\x7f]")


def _sampled_tiers(session: Session, query: KeywordQuery, alone: bool, files: int, sample: int, find: Callable,
                   found_cost: float, by_candidates: bool, key_step: float | None) -> Iterator[Callable]:
    """``_postgresql_tiers`` for one word wanted: each tier a function of how many files are
    still wanted, giving its files, a ``_Walked`` or (``key_step``: the texts have rank keys,
    and this is the cost of one walked in key order) a ``_Keyed`` (``files``: about how many
    the catalog holds; ``sample``: about how many texts tell the tiers' shares). A tier is found
    through the indexes by the conditions ``find`` gives (``_trigram_arms``, or ``_pair_arms``
    for two letters), at ``found_cost`` for each of its files, or, with ``by_candidates``, for
    each file holding the word where the tier needs it."""
    word = query.wanted[0]
    sampled = tablesample(FileText.__table__, func.system(min(100.0, 100.0 * sample / max(files, 1))),
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
    # The files holding the word where each tier needs it, which pg_trgm's index reads for it.
    candidates = [both / counted, named / counted, about / counted, 1.0]
    for tier, share, candidate, (in_name, elsewhere) in zip(tiers, shares, candidates, needs):
        found = candidate if by_candidates else share
        yield functools.partial(_sampled_tier, session, word, tier, share, named / counted, in_name, elsewhere,
                                files, find, found * files * found_cost, key_step)


def _sampled_tier(session: Session, word: str, tier: ColumnElement[bool], share: float, named: float,
                  in_name: bool, elsewhere: bool, files: int, find: Callable, found_cost: float,
                  key_step: float | None, remaining: int) -> list[int] | _Walked | _Keyed:
    """A tier of ``_sampled_tiers`` (``tier``: its condition on FileText; ``share``: the part of
    the sample in it; ``named``: the part with the word in its name; ``found_cost``: finding it
    through the indexes; ``key_step``: see there), when ``remaining`` files are wanted: walked,
    along the names or the keys, if that is estimated cheaper."""
    if share:
        walked = remaining / share  # files walked in name order to find those wanted
        cost = walked * (_STEP_COST + (named if in_name else 1) * _LOOKUP_COST)
        if key_step is not None and walked * key_step < min(cost, found_cost):
            log.debug("%r: a tier of about %d files walked by key for %d", word, share * files, remaining)
            return _Keyed([tier], walk=True)
        if cost < found_cost:
            log.debug("%r: a tier of about %d files walked for %d", word, share * files, remaining)
            text_of = select(tier).where(FileText.file_id == File.id).scalar_subquery()
            if not in_name:
                return _Walked(text_of)
            # The name as Python's lower() makes it holds the word only if the name holds it in
            # some case, or goes beyond ASCII (whose characters Python may lower into ASCII).
            cased = "".join(_any_case(character) for character in word)
            return _Walked(and_(File.name.op("~", is_comparison=True)(f"{cased}|[^\\x01-\\x7f]"), text_of))
    log.debug("%r: a tier of about %d files found by index", word, share * files)
    # Matched by exclusions alone: no index finds what a file lacks.
    arms = find(word, tier, in_name, elsewhere) if in_name or elsewhere else [tier]
    if key_step is not None:
        return _Keyed(arms, walk=False)
    found = union_all(*(select(FileText.file_id).where(arm) for arm in arms)).subquery() if len(arms) > 1 else \
        select(FileText.file_id).where(arms[0]).subquery()
    return session.scalar(select(func.array_agg(found.c.file_id))) or []


def _any_case(character: str) -> str:
    """PostgreSQL's regular expression of ``character`` in either case (a letter) or itself:
    a backslash before any other that is not a digit (where a letter or digit would make one
    of its escapes)."""
    if character.isalpha():
        return f"[{character}{character.upper()}]"
    return character if character.isdigit() else "\\" + character


def _pair_arms(word: str, tier: ColumnElement[bool], in_name: bool, elsewhere: bool) -> list[ColumnElement[bool]]:
    """Conditions whose files together are those of ``tier`` of a word of two letters or digits,
    each served by an index: pg_trgm's (the trigrams the word begins), that of the texts beyond ASCII."""
    near = and_(*([_followed(FileText.name, word)] if in_name else []),
                *([_followed(FileText.about, word)] if elsewhere else []))
    return [and_(tier, near), and_(text(_BEYOND_ASCII), tier, not_(near))]


def _trigram_arms(word: str, tier: ColumnElement[bool], in_name: bool, elsewhere: bool) -> list[ColumnElement[bool]]:
    """``_pair_arms`` for a word of three characters or more: pg_trgm's index finds them (``_holds``)."""
    return [tier]


def _first_by_key(session: Session, tier: _Keyed, filters: Filters, pending: bool, others: list,
                  count: int) -> list[int]:
    """The first ``count`` files by name of a ``_Keyed`` tier that pass ``filters`` (and
    ``others``): its files read by rank key, a quarter more than wanted and then twice as many
    each time, until enough of them pass, each read's files then checked by id in the same
    statement (a filter seen to pass most files comes here: ``_walk_tiers``)."""
    # Walked: along the index of keys, each text tested (coalesce: a condition PostgreSQL cannot
    # hand to pg_trgm's index, which would find every file of the tier first). Found: by the
    # arms' indexes, then sorted (``+ 0``: no index of keys to walk instead, whatever the
    # planner guesses of how many files match).
    key = FileText.rank_key if tier.walk else FileText.rank_key + 0
    arms = [func.coalesce(arm, false()) for arm in tier.arms] if tier.walk else tier.arms
    found: list[int] = []
    after, batch = None, count + count // 4 + 16
    while len(found) < count:
        parts = [select(FileText.file_id, key.label("key")).where(arm, *([] if after is None else [key > after]))
                 for arm in arms]
        rows = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        first = select(rows.c.file_id, rows.c.key).order_by(rows.c.key).limit(batch).subquery()
        read = session.execute(select(first.c.file_id, first.c.key, and_(_passing(filters, pending), *others))
                               .join(File, File.id == first.c.file_id).order_by(first.c.key)).all()
        found += [file_id for file_id, _, passes in read if passes]
        if len(read) < batch:  # the whole tier
            break
        after, batch = read[-1].key, 2 * batch
    return found[:count]


def _in_name_order(session: Session, tiers: Iterable[Sequence[int] | np.ndarray | Callable], filters: Filters,
                   pending: bool, exclude_id: int | None, limit: int, files: int) -> list[int]:
    """On PostgreSQL, the first ``limit`` files of ``tiers`` (the best first: each its files, or
    a function of how many are still wanted giving them, a ``_Walked`` or a ``_Keyed``) that
    pass ``filters``, each tier by name; ``files``: how many the catalog holds (whether to walk a tier)."""
    others = [File.id != exclude_id] if exclude_id is not None else []
    filtered = bool(file_conditions(filters))
    found_ids: list[int] = []
    for tier in tiers:  # found as needed, the best first
        remaining = limit - len(found_ids)
        if remaining <= 0:
            break
        if callable(tier):
            tier = tier(remaining)
        if isinstance(tier, _Keyed):
            found_ids += _first_by_key(session, tier, filters, pending, others, remaining)
        elif isinstance(tier, _InOrder):
            found_ids += _first_passing(session, tier.ids, filters, pending, others, remaining)
        elif isinstance(tier, _Walked) or len(tier):
            found_ids += _walked_or_sorted(session, tier, filters, filtered, pending, others, remaining, files)
        if len(found_ids) >= limit:  # the next tier is not even found
            break
    return found_ids


def _walked_or_sorted(session: Session, tier: Sequence[int] | np.ndarray | _Walked, filters: Filters, filtered: bool,
                      pending: bool, others: list, remaining: int, files: int) -> list[int]:
    """``_in_name_order``'s first ``remaining`` files by name of a tier given as its files or a
    ``_Walked``, put in name order through the files' names."""
    if isinstance(tier, _Walked):
        walk, members = True, tier.members
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
    return in_order(filters, remaining) if ranked is None else ranked


def _first_passing(session: Session, ids: list[int], filters: Filters, pending: bool, others: list,
                   count: int) -> list[int]:
    """The first ``count`` of ``ids`` (in the order wanted) that pass ``filters`` (and ``others``),
    read as ``_first_by_name`` reads a tier, their places in ``ids`` its keys."""
    def places(after: int, batch: int) -> range:
        return range(after + 1, min(after + 1 + batch, len(ids)))

    def passing(read: range) -> list[int]:
        chosen = [ids[place] for place in read]
        if not chosen:
            return []
        kept = set(session.scalars(select(File.id).where(_among(File.id, chosen, False), _passing(filters, pending),
                                                         *others)))
        return [file_id for file_id in chosen if file_id in kept]

    return _first_by_name(places, passing, count)


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
