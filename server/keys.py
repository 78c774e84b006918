"""API keys: who may call the HTTP API, and as what.

A key is shown once, when it is made; the catalog keeps only its SHA-256 hash, with its
name, its role (``read``: search; ``admin``: everything), and when it was made, last used
and revoked. A caller presents the key and ``authenticate`` names the Caller, or refuses it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import re
import secrets
import time

from sqlalchemy.exc import OperationalError

from search.catalog import ApiKey, Catalog
from search.library import Library

log = logging.getLogger(__name__)

ROLES = ("read", "admin")
PREFIX = "cdx_"  # says what a leaked string is, to a person and to secret scanners
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
NAME_RULE = "a key name: a letter or digit, then up to 63 letters, digits, _ . @ or -"
# A key's last use is recorded at most this often, so a busy API does not write on every request.
TOUCH_EVERY = datetime.timedelta(minutes=1)
# key hash -> time.monotonic() of this process's last attempt to record its use: where the database
# was busy (an index run writing to SQLite holds it for seconds), the next attempt waits a minute too.
_tried: dict[str, float] = {}


@dataclasses.dataclass(frozen=True)
class Caller:
    """Whoever presented a valid key: the key's name and role."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def new_key() -> str:
    """A new key: 32 random bytes (256 bits), URL-safe, after a prefix that says what it is."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # One fast SHA-256, unsalted, is right for these keys, unlike for passwords. A password is
    # guessable, so its hash must be slow and salted (scrypt, argon2) to make each of millions of
    # guesses costly. A key is 256 random bits: no number of guesses at any speed finds one, so a slow
    # hash would only slow every request, and with nothing to precompute a salt protects nothing, while
    # an unsalted hash lets the catalog find a key through an index. Looking it up by hash leaks
    # nothing by its timing either: a caller cannot choose what a guess hashes to.
    return hashlib.sha256(key.encode()).hexdigest()


def valid_name(name: str) -> str | None:
    """``name`` if it may name a key, else None."""
    return name if NAME.fullmatch(name) else None


def add(library: Library, name: str, role: str) -> str:
    """Make a key called ``name`` with ``role`` and return it; only its hash is kept.
    KeyNameTaken (a ValueError) if a key, even a revoked one, has that name."""
    if valid_name(name) is None:
        raise ValueError(f"{name!r} is not {NAME_RULE}")
    if role not in ROLES:
        raise ValueError(f"{role!r} is not a role ({', '.join(ROLES)})")
    key = new_key()
    with library.reading() as catalog:
        catalog.add_key(name, role, hash_key(key))
        catalog.commit()
    return key


def listed(library: Library) -> list[dict]:
    """Every key by name, revoked ones too: name, role, and when it was created, last used and
    revoked (ISO 8601 in UTC, None for never); never the hash."""
    with library.reading() as catalog:
        return [{"name": key.name, "role": key.role, "created": _moment(key.created_at),
                 "last_used": _moment(key.last_used_at), "revoked": _moment(key.revoked_at)}
                for key in catalog.keys()]


def revoke(library: Library, name: str) -> bool:
    """Revoke the active key called ``name`` at once; False if there is none."""
    with library.reading() as catalog:
        revoked = catalog.revoke_key(name)
        catalog.commit()
    return revoked


class NoKeys(LookupError):
    """Something that must not run unauthenticated, in a library with no active key."""


def require_some(library: Library, refusal: str) -> None:
    """NoKeys(``refusal``) unless the library has an active key."""
    with library.reading() as catalog:
        catalog.create_tables()  # an older catalog gets the keys' table, empty
        if not any(key.revoked_at is None for key in catalog.keys()):
            raise NoKeys(refusal)


def active(library: Library, name: str) -> Caller | None:
    """The key called ``name`` as a Caller, if it is active."""
    with library.reading() as catalog:
        found = next((key for key in catalog.keys() if key.name == name and key.revoked_at is None), None)
        return Caller(found.name, found.role) if found is not None else None


def authenticate(library: Library, presented: str | None) -> Caller | None:
    """The Caller ``presented`` is the key of, or None for no key, a wrong one or a revoked one."""
    if not presented or not presented.startswith(PREFIX):
        return None
    key_hash = hash_key(presented)
    with library.reading() as catalog:
        key = catalog.key_by_hash(key_hash)
        if key is None:
            return None
        caller = Caller(key.name, key.role)
        _record_use(catalog, key, key_hash)
    return caller


def _record_use(catalog: Catalog, key: ApiKey, key_hash: str) -> None:
    """Record that ``key`` was used now, unless that was done (or tried) less than TOUCH_EVERY ago."""
    now = time.monotonic()
    if key.last_used_at is not None and datetime.datetime.now(datetime.timezone.utc) - key.last_used_at < TOUCH_EVERY:
        return
    if now - _tried.get(key_hash, -float("inf")) < TOUCH_EVERY.total_seconds():
        return
    _tried[key_hash] = now
    try:
        catalog.touch_key(key)
        catalog.commit()
    except OperationalError as error:  # the database busy (an index run writing to SQLite): a minute later
        catalog.rollback()
        log.debug("last use of key %s not recorded: %s", key.name, error)


def _moment(value: datetime.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
