"""What a search asks for: a weighted sum of texts and sounds, as rclip writes it.

``"rain + ./thunder.wav - traffic"`` means "like rain and this thunder, unlike traffic";
``"2:rain + thunder"`` weighs rain twice. The engine embeds every term, scales its unit
vector by the weight (negative when subtracted) and searches with the normalised sum.

A ``+`` or ``-`` is an operator only between spaces, so "lo-fi" is one word. A term in
double or single quotes is kept whole, operators and all: ``rain + "./001 - Dog bark/a.ogg"``.
Quoted or not, a term is a sound file when it looks like a path (it starts with ``./``,
``../``, ``/`` or ``~/``, or ends in an audio extension), else a description.

Everything here is hashable (a recorded clip is held as its file's bytes), so the engine
can cache a term's embedding and a page can keep a query across reruns.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from encoders.audio import AUDIO_EXTENSIONS

# A term is a path when it looks like one; "lo-fi hiss" and "AC/DC hum" stay text.
_PATH_PREFIXES = ("./", "../", "/", "~/", ".\\", "..\\")
# Operators stand alone between spaces, so a hyphen inside a word is never one.
_OPERATOR = re.compile(r"\s+([+-])(?:\s+|$)")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_WEIGHT = re.compile(rf"^({_NUMBER}):(.+)$", re.DOTALL)
# A quoted term, optionally weighted ('2:"a - b.wav"'); its closing quote ends the term.
# A region of a sound file: "take.wav@1:02-1:05" or "take.wav@62-65.5".
_REGION = re.compile(r"^(.+\.\w+)@([\d:.]+)-([\d:.]+)$")
_QUOTED = re.compile(rf"""(?:({_NUMBER}):)?(["'])(.*?)\2(?=\s|$)""", re.DOTALL)


class QueryError(ValueError):
    """The query text cannot be read; the message says why, for the user."""


@dataclasses.dataclass(frozen=True)
class Text:
    text: str

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass(frozen=True)
class Sound:
    """An audio file, or the part of it between ``start`` and ``end`` seconds."""

    path: str
    start: float | None = None
    end: float | None = None

    def __post_init__(self):
        if (self.start is None) != (self.end is None):
            raise QueryError("a time range needs both a start and an end")
        if self.start is not None and not 0 <= self.start < self.end:
            raise QueryError(f"the time range {self.start:g}-{self.end:g} s is empty or negative")

    @property
    def is_region(self) -> bool:
        return self.start is not None

    def __str__(self) -> str:
        name = Path(self.path).name
        return f"{name} {format_time(self.start)}–{format_time(self.end)}" if self.is_region else name

    def typed(self) -> str:
        written = self.path + (f"@{format_time(self.start)}-{format_time(self.end)}" if self.is_region else "")
        return f'"{written}"' if _needs_quotes(written) else written


@dataclasses.dataclass(frozen=True)
class Clip:
    """A sound handed over as a file's bytes: an upload or a microphone recording."""

    data: bytes = dataclasses.field(repr=False)
    name: str

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Term:
    source: Text | Sound | Clip
    weight: float = 1.0  # negative: "unlike this"


@dataclasses.dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]
    # "More like this" leaves out the file it started from: it would always come first.
    exclude_path: str | None = None

    @classmethod
    def text(cls, text: str) -> Query:
        return cls((Term(Text(text)),))

    @classmethod
    def sound(cls, path: str, start: float | None = None, end: float | None = None) -> Query:
        """Files like ``path`` (or a time range of it), other than ``path`` itself."""
        return cls((Term(Sound(path, start, end)),), exclude_path=path)

    @classmethod
    def clip(cls, data: bytes, name: str) -> Query:
        return cls((Term(Clip(data, name)),))

    def __bool__(self) -> bool:
        return bool(self.terms)

    @property
    def has_sound(self) -> bool:
        """Whether any term is a sound (a file, a region or a clip)."""
        return any(not isinstance(term.source, Text) for term in self.terms)

    @property
    def has_text(self) -> bool:
        """Whether any term is a description."""
        return any(isinstance(term.source, Text) for term in self.terms)

    def as_typed(self) -> str:
        """The query as one would type it, so that ``parse_query`` reads it back; clips (bytes,
        not text) are left out."""
        parts = []
        for term in self.terms:
            if isinstance(term.source, Clip):
                continue
            written = term.source.typed() if isinstance(term.source, Sound) else term.source.text
            magnitude = abs(term.weight)
            written = f"{magnitude:g}:{written}" if magnitude != 1 else written
            parts.append(("- " if term.weight < 0 else "+ " if parts else "") + written)
        return " ".join(parts)

    def __str__(self) -> str:
        parts = []
        for term in self.terms:
            magnitude = abs(term.weight)
            weighted = f"{magnitude:g}:{term.source}" if magnitude != 1 else str(term.source)
            parts.append(("- " if term.weight < 0 else "+ " if parts else "") + weighted)
        return " ".join(parts)


def parse_query(text: str) -> Query:
    """``"2:rain + ./thunder.wav - traffic"`` -> terms; a plain description is one text term."""
    text = text.strip()
    if not text:
        return Query(())
    if _OPERATOR.match(" " + text):
        raise QueryError(f"{text!r} has a + or - with no term beside it")
    terms, sign, at = [], 1.0, 0
    while True:
        quoted = _QUOTED.match(text, at)
        if quoted is not None:
            weight = _weight(quoted.group(1), quoted.group(0)) if quoted.group(1) else 1.0
            body, at = quoted.group(3).strip(), quoted.end()
        else:
            operator = _OPERATOR.search(text, at)
            piece = text[at : operator.start() if operator else len(text)]
            weight, body = _weighted(piece.strip())
            at += len(piece)
            if body[:1] in "\"'":
                raise QueryError(f"{text!r}: the quote that opens {body!r} is not closed (a quoted term ends at its "
                                 "closing quote, before a space)")
        if not body:
            raise QueryError(f"{text!r} has a + or - with no term beside it")
        terms.append(Term(_sound(body) if looks_like_path(body) else Text(body), sign * weight))
        if at == len(text):
            break
        operator = _OPERATOR.match(text, at)
        if operator is None:
            raise QueryError(f"{text!r}: after a quoted term, write + or - and the next term")
        sign, at = (1.0 if operator.group(1) == "+" else -1.0), operator.end()
        if at == len(text):
            raise QueryError(f"{text!r} has a + or - with no term beside it")
    if all(term.weight <= 0 for term in terms):
        raise QueryError("a query needs at least one term to add, not only ones to subtract")
    return Query(tuple(terms))


def looks_like_path(term: str) -> bool:
    return term.startswith(_PATH_PREFIXES) or term.lower().endswith(tuple(AUDIO_EXTENSIONS)) \
        or _REGION.match(term) is not None


def _sound(body: str) -> Sound:
    """A path, or a region of one: ``take.wav@1:02-1:05``."""
    region = _REGION.match(body)
    if region is None:
        return Sound(body)
    return Sound(region.group(1), parse_time(region.group(2)), parse_time(region.group(3)))


def _needs_quotes(written: str) -> bool:
    return any(character.isspace() or character in "\"'" for character in written)


def parse_time(text: str) -> float:
    """Seconds from ``"75"``, ``"1:15"``, ``"1:15.5"`` or ``"1:02:03"``."""
    text = text.strip()
    try:
        seconds = 0.0
        for part in text.split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise QueryError(f"{text!r} is not a time; write seconds (75) or minutes:seconds (1:15)") from None
    if seconds < 0:
        raise QueryError(f"{text!r} is before the start of the file")
    return seconds


def format_time(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def _weighted(piece: str) -> tuple[float, str]:
    match = _WEIGHT.match(piece)
    if match is None:
        return 1.0, piece
    return _weight(match.group(1), piece), match.group(2).strip()


def _weight(number: str, piece: str) -> float:
    weight = float(number)
    if weight == 0:
        raise QueryError(f"the weight in {piece!r} is zero, which leaves the term out")
    return weight
