"""Keyword search over what a library says about its files, in SFX-manager syntax.

``door -metal, gate``: a space means AND, a comma OR, a leading ``-`` NOT, and
``"wood door"`` keeps a phrase together; AND binds tighter than OR, so that reads
"(door and not metal) or gate". A keyword matches, ignoring case, anywhere in a file's
name, its folder below the library root, its title, description, tags and UCS category. Everything is bound parameters through SQLAlchemy, so it runs alike on
SQLite and PostgreSQL and no keyword can change the SQL.
"""

from __future__ import annotations

import dataclasses
import re

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, literal, not_, or_, select, true
from sqlalchemy.orm import Session

from search.catalog import INDEXED, File, FileTag

_TOKEN = re.compile(r'(-?)"([^"]*)"|(\S+)')


@dataclasses.dataclass(frozen=True)
class Keyword:
    word: str
    negated: bool = False


@dataclasses.dataclass(frozen=True)
class KeywordQuery:
    alternatives: tuple[tuple[Keyword, ...], ...]  # OR of ANDs

    def __bool__(self) -> bool:
        return bool(self.alternatives)

    @property
    def wanted(self) -> tuple[str, ...]:
        """The words asked for (not excluded), each once: what ranking counts."""
        return tuple(dict.fromkeys(k.word for group in self.alternatives for k in group if not k.negated))


def parse_keywords(text: str) -> KeywordQuery:
    alternatives = []
    for alternative in _split_outside_quotes(text or "", ","):
        group = []
        for match in _TOKEN.finditer(alternative):
            if match.group(3) is not None:
                token = match.group(3)
                negated = token.startswith("-") and len(token) > 1
                word = token[1:] if negated else token
            else:
                negated, word = bool(match.group(1)), match.group(2)
            word = word.strip().strip('"').lower()
            if word:
                group.append(Keyword(word, negated))
        if group:
            alternatives.append(tuple(group))
    return KeywordQuery(tuple(alternatives))


def matches(query: KeywordQuery) -> ColumnElement[bool]:
    """A WHERE clause on ``File`` true for the files ``query`` matches."""
    if not query:
        return true()
    return or_(*(and_(*(_keyword_clause(keyword) for keyword in group)) for group in query.alternatives))


def ranked_file_ids(
    session: Session, query: KeywordQuery, restrict: ColumnElement[bool] | None = None, limit: int = 1000
) -> list[int]:
    """Files matching ``query`` within ``restrict`` (by default: indexed ones), best first: a word
    in the name counts twice a word elsewhere; then by name."""
    relevance = sum(
        (case((_contains(File.name, word), 2), else_=0) + case((_describes(word), 1), else_=0) for word in query.wanted),
        start=literal(0),
    )
    statement: Select = (
        select(File.id)
        .where(matches(query), restrict if restrict is not None else File.status == INDEXED)
        .order_by(relevance.desc(), File.name, File.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def _keyword_clause(keyword: Keyword) -> ColumnElement[bool]:
    found = or_(_contains(File.name, keyword.word), _describes(keyword.word))
    return not_(found) if keyword.negated else found


def _describes(word: str) -> ColumnElement[bool]:
    """``word`` is somewhere in what the catalog says about the file, other than its name."""
    # The folder below the root: every file shares the root's own path, so it says nothing.
    below_root = func.substr(File.folder, func.length(File.root) + 1)
    columns = (below_root, File.title, File.description, File.ucs_cat_id, File.ucs_category, File.ucs_subcategory)
    tagged = exists().where(FileTag.file_id == File.id, _contains(FileTag.tag, word))
    return or_(*(_contains(column, word) for column in columns), tagged)


def _contains(column, word: str) -> ColumnElement[bool]:
    # coalesce: a NULL column must read as "no match", not poison a NOT into NULL.
    return func.lower(func.coalesce(column, "")).contains(word, autoescape=True)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
