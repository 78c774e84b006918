"""Keyword search over what a library says about its files, in SFX-manager syntax.

``door -metal, gate``: a space means AND, a comma OR, a leading ``-`` NOT, and
``"wood door"`` keeps a phrase together; AND binds tighter than OR, so that reads
"(door and not metal) or gate". A keyword matches, ignoring case (as Python's ``str.lower``
folds it, beyond ASCII too), anywhere in a file's name, its folder below the library root,
its title, description, tags and UCS category, even inside a word. This module reads the
syntax; ``search.keyword_index`` turns a ``KeywordQuery`` into SQL over the catalog's trigram index
(``Catalog.keyword_ranked``), with bound parameters, alike on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import re

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
