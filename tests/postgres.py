"""A real PostgreSQL server for the catalog tests.

CI (``.ci/run``) starts the system cluster and names it in ``CLAPDEX_TEST_POSTGRES``
(``postgresql+psycopg://user:password@127.0.0.1:5432/database``). Without that variable a
throwaway cluster is made with ``initdb`` in a temporary folder (as the ``postgres`` user
when running as root, since PostgreSQL refuses to run as root) and stopped at exit. In CI
(``CI=true``) a missing server fails the tests instead of skipping them.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

ENVIRONMENT = "CLAPDEX_TEST_POSTGRES"
_server: str | None = None
_stop = None  # stops the throwaway cluster, if one was started
_made: list[str] = []  # databases made by fresh_database(), dropped at the end of the session


def server_url() -> str:
    """The URL of a server whose user may create databases; starts one on first use."""
    global _server
    if _server is None:
        _server = os.environ.get(ENVIRONMENT) or _start_throwaway_cluster()
    return _server


def fresh_database(options: str = "") -> str:
    """A new, empty database on the server, as a SQLAlchemy URL (``options``: CREATE DATABASE's,
    written by the test itself, such as another collation)."""
    import psycopg
    from sqlalchemy.engine import make_url

    try:
        url = make_url(server_url())
    except _Unavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    name = f"clapdex_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" {options}')  # a generated name: identifiers cannot be bound
    _made.append(name)
    return url.set(database=name).render_as_string(hide_password=False)


class _Unavailable(Exception):
    pass


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        raise _Unavailable(f"{name} not found (apt-get install postgresql, or set {ENVIRONMENT})")
    return found[-1]


def _start_throwaway_cluster() -> str:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    folder = tempfile.mkdtemp(prefix="clapdex-postgres-")
    data = os.path.join(folder, "data")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = lambda *command: subprocess.run([*as_postgres, *command], check=True, capture_output=True)  # noqa: E731
    try:
        run(initdb, "-D", data, "-U", "clapdex", "--auth=trust", "--no-sync")
        run(pg_ctl, "-D", data, "-w", "-l", os.path.join(folder, "log"), "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    except subprocess.CalledProcessError as exc:
        raise _Unavailable(f"could not start a throwaway cluster: {exc.stderr.decode(errors='replace')[-500:]}") from None

    def stop() -> None:
        subprocess.run([*as_postgres, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)

    global _stop
    _stop = stop
    atexit.register(stop_throwaway_cluster)
    return f"postgresql+psycopg://clapdex@127.0.0.1:{port}/postgres"


def drop_test_databases() -> None:
    """Drop the databases this session made: a developer's own server must not keep hundreds of them."""
    if not _made:
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        while _made:
            name = _made[-1]
            # FORCE ends connections a test's pool or server process still holds (PostgreSQL 13+).
            # An autovacuum worker in the database belongs to no role, so a user without
            # pg_signal_backend (.ci/run grants it) may not end it: it finishes in a moment.
            for attempt in range(50):
                try:
                    connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except psycopg.errors.InsufficientPrivilege:
                    if attempt == 49:
                        raise
                    time.sleep(0.2)
            _made.pop()


def stop_throwaway_cluster() -> None:
    """Stop the cluster the tests started, if they started one (at the end of the session)."""
    global _stop, _server
    if _stop is not None:
        _stop()
        _stop = _server = None
