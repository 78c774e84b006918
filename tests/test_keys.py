"""API keys: `clapdex keys` as a user runs it, on a real SQLite and a real PostgreSQL catalog,
and ``server.keys.authenticate`` over what it made."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from libraries import index_into
from postgres import fresh_database
from sounds import sox_tone
from sqlalchemy.engine import make_url

from search.config import Settings, load_settings
from search.library import Library
from server.keys import Caller, authenticate, hash_key

TAKEN = "clapdex: a key named ci-bot exists already (revoked keys keep their names); choose another name\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, tmp_path, tiny_encoder) -> Settings:
    """An indexed library home, its catalog in SQLite inside it or in a PostgreSQL database."""
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    sox_tone(sounds / "tone.wav", 1)
    settings = load_settings(tmp_path / "home", catalog=fresh_database() if request.param == "postgresql" else None)
    index_into(settings, [sounds], tiny_encoder)
    return settings


def clapdex(settings: Settings | Path, *args: str) -> subprocess.CompletedProcess:
    """`clapdex --home HOME [--catalog URL] ARGS...`, in a process of its own."""
    home = settings.home if isinstance(settings, Settings) else settings
    catalog = ["--catalog", settings.catalog] if isinstance(settings, Settings) and settings.catalog else []
    return subprocess.run([sys.executable, "-m", "clapdex", "--home", str(home), *catalog, *args],
                          capture_output=True, text=True, timeout=120)


def add(settings: Settings, name: str, role: str = "read") -> str:
    made = clapdex(settings, "keys", "add", name, "--role", role)
    assert made.returncode == 0, made.stderr
    return made.stdout.removesuffix("\n")


def listed(settings: Settings) -> list[dict]:
    result = clapdex(settings, "keys", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rows_of_the_table(settings: Settings) -> list[tuple]:
    """Every row of api_keys, read straight from the database (sqlite3 or psycopg), as it is stored."""
    if not settings.catalog:
        with sqlite3.connect(settings.home / "catalog.sqlite") as connection:
            return connection.execute("SELECT * FROM api_keys").fetchall()
    import psycopg

    url = make_url(settings.catalog).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as connection:
        return connection.execute("SELECT * FROM api_keys").fetchall()


def test_add_prints_the_key_once_and_list_shows_names_and_roles_never_keys(home):
    made = clapdex(home, "keys", "add", "ci-bot", "--role", "read")
    key = made.stdout.removesuffix("\n")
    admin = add(home, "ana@studio.example", "admin")

    assert made.returncode == 0
    assert made.stdout == key + "\n" and key.startswith("cdx_") and len(key) >= 4 + 43
    assert made.stderr == "clapdex: key ci-bot (read) made; it is shown only now, store it\n"
    table = clapdex(home, "keys", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["name", "role", "created", "last", "used", "revoked"]
    assert [row.split()[:2] for row in rows] == [["ana@studio.example", "admin"], ["ci-bot", "read"]]
    assert [row.split()[3:] for row in rows] == [["-", "-"], ["-", "-"]]  # never used, not revoked
    for secret in (key, admin, hash_key(key), hash_key(admin)):
        assert secret not in table.stdout and secret not in table.stderr
    # The library options go after the verb too.
    after = subprocess.run([sys.executable, "-m", "clapdex", "keys", "list", "--home", str(home.home)]
                           + (["--catalog", home.catalog] if home.catalog else []), capture_output=True, text=True)
    assert after.returncode == 0 and after.stdout == table.stdout


def test_list_json_is_an_array_of_names_roles_and_times(home):
    key = add(home, "ci-bot")

    keys = listed(home)

    assert [entry["name"] for entry in keys] == ["ci-bot"]
    assert keys[0].keys() == {"name", "role", "created", "last_used", "revoked"}
    assert (keys[0]["role"], keys[0]["last_used"], keys[0]["revoked"]) == ("read", None, None)
    assert keys[0]["created"].endswith("+00:00")
    assert key not in json.dumps(keys) and hash_key(key) not in json.dumps(keys)


def test_add_and_revoke_say_it_in_json_for_scripts(home):
    made = clapdex(home, "keys", "add", "ci-bot", "--role", "admin", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["name"] == "ci-bot" and key["role"] == "admin"
    with Library(home) as library:
        assert authenticate(library, key["key"]) == Caller("ci-bot", "admin")

    revoked = clapdex(home, "--json", "keys", "revoke", "ci-bot")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout) == {"name": "ci-bot", "revoked": True}
    with Library(home) as library:
        assert authenticate(library, key["key"]) is None


def test_the_catalog_holds_the_hash_and_nowhere_the_key(home):
    key = add(home, "ci-bot")

    (row,) = rows_of_the_table(home)

    assert hash_key(key) in row and len(hash_key(key)) == 64
    assert not any(key in str(value) for value in row)
    if not home.catalog:  # every byte SQLite wrote: the database and its write-ahead log
        written = b"".join(path.read_bytes() for path in home.home.glob("catalog.sqlite*"))
        assert hash_key(key).encode() in written and key.encode() not in written


def test_authenticate_names_the_caller_of_an_active_key_only(home):
    read, admin = add(home, "ci-bot", "read"), add(home, "ana", "admin")

    with Library(home) as library:
        assert authenticate(library, read) == Caller("ci-bot", "read")
        assert not authenticate(library, read).is_admin and authenticate(library, admin).is_admin
        assert authenticate(library, read[:-1] + ("A" if read[-1] != "A" else "B")) is None
        assert authenticate(library, "cdx_" + "A" * 43) is None
        for missing in (None, "", hash_key(read)):
            assert authenticate(library, missing) is None
    revoked = clapdex(home, "keys", "revoke", "ci-bot")
    assert revoked.returncode == 0 and revoked.stderr == "clapdex: key ci-bot revoked\n" and revoked.stdout == ""
    with Library(home) as library:
        assert authenticate(library, read) is None
        assert authenticate(library, admin) == Caller("ana", "admin")
    ana, ci_bot = listed(home)
    assert ci_bot["revoked"] is not None and ana["revoked"] is None


def test_last_use_is_recorded_at_most_once_a_minute(home):
    key = add(home, "ci-bot")

    with Library(home) as library:
        authenticate(library, key)
        (first,) = listed(home)
        authenticate(library, key)
        (second,) = listed(home)

    assert first["last_used"] is not None and second["last_used"] == first["last_used"]


@pytest.mark.parametrize("home", ["sqlite"], indirect=True)  # a writer elsewhere locks all of a SQLite database
def test_a_busy_sqlite_catalog_still_lets_a_key_in(home):
    key = add(home, "ci-bot")
    writer = sqlite3.connect(home.home / "catalog.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # as an index run holds it between its checkpoints
    try:
        with Library(home) as library:
            assert authenticate(library, key) == Caller("ci-bot", "read")  # after SQLite's wait for the lock
            started = time.monotonic()
            assert authenticate(library, key) == Caller("ci-bot", "read")
            assert time.monotonic() - started < 2  # no second wait within the minute
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert listed(home)[0]["last_used"] is None  # recorded by a request a minute later


def test_revoking_an_unknown_or_revoked_key_is_one_line_exit_2(home):
    add(home, "ci-bot")
    assert clapdex(home, "keys", "revoke", "ci-bot").returncode == 0

    for name in ("nobody", "ci-bot"):
        result = clapdex(home, "keys", "revoke", name)
        assert result.returncode == 2
        assert result.stderr == f"clapdex: no active key named {name}\n" and result.stdout == ""


def test_a_taken_name_is_refused_even_once_revoked(home):
    key = add(home, "ci-bot")

    again = clapdex(home, "keys", "add", "ci-bot", "--role", "admin")
    assert clapdex(home, "keys", "revoke", "ci-bot").returncode == 0
    after_revoking = clapdex(home, "keys", "add", "ci-bot", "--role", "read")

    for result in (again, after_revoking):
        assert (result.returncode, result.stderr, result.stdout) == (2, TAKEN, "")
    (row,) = rows_of_the_table(home)
    assert hash_key(key) in row


def test_a_catalog_made_before_keys_existed_gets_their_table(home):
    if not home.catalog:
        with sqlite3.connect(home.home / "catalog.sqlite") as connection:
            connection.execute("DROP TABLE api_keys")
    else:
        import psycopg

        url = make_url(home.catalog).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url) as connection:
            connection.execute("DROP TABLE api_keys")

    assert clapdex(home, "keys", "list", "--json").stdout == "[]\n"
    add(home, "ci-bot")
    assert [entry["name"] for entry in listed(home)] == ["ci-bot"]


@pytest.mark.parametrize("args, named", [
    (["keys", "add", "ci-bot", "--role", "owner"], "'owner' is not a role (read, admin)"),
    (["keys", "add", "ci-bot"], "--role"),
    (["keys", "add", "ci bot", "--role", "read"], "'ci bot' is not a key name"),
    (["keys", "add", "_ci", "--role", "read"], "'_ci' is not a key name"),
    (["keys", "add", "a" * 65, "--role", "read"], f"'{'a' * 65}' is not a key name"),
    (["keys"], "ACTION"),
    (["keys", "rotate"], "'rotate'"),
])
def test_bad_names_and_roles_are_named_in_one_line(tmp_path, args, named):
    result = clapdex(tmp_path / "home", *args)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
    assert result.stdout == "" and not (tmp_path / "home").exists()


@pytest.mark.parametrize("home_exists", [False, True], ids=["no home", "empty home"])
@pytest.mark.parametrize("args", [["keys", "list"], ["keys", "add", "ci", "--role", "read"], ["keys", "revoke", "ci"]])
def test_keys_need_an_index_and_create_nothing_without_one(tmp_path, args, home_exists):
    home = tmp_path / "home"
    if home_exists:
        home.mkdir()

    result = clapdex(home, *args)

    assert result.returncode == 3
    assert result.stderr == f"clapdex: no index in {home}; run `clapdex index FOLDER` to make one\n"
    assert result.stdout == ""
    assert list(home.iterdir()) == [] if home_exists else not home.exists()
