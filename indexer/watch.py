"""Keeping an index current while files change: poll, wait for quiet, index again.

Polling (a stat of every file each interval) needs no OS support and sees changes made on
other machines too, but on a network mount each poll is a round of remote calls per file:
watching is refused there unless forced (``network_filesystem``). A burst of changes (a
folder being copied in) is waited out until nothing has changed for ``debounce`` seconds,
then one ordinary incremental run picks it all up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

from indexer.pipeline import IndexReport, index_paths
from indexer.scan import network_filesystem, scan
from search.config import ConfigError
from search.library import Library

DEFAULT_INTERVAL = 10.0
DEFAULT_DEBOUNCE = 3.0


def snapshot(paths: Iterable[str]) -> dict[str, tuple[int, float]]:
    """(size, mtime) of every audio file under ``paths``; what a change is judged by."""
    state = {}
    for path, _ in scan(paths):
        try:
            found = os.stat(path)
        except OSError:
            state[path] = (-1, -1.0)
        else:
            state[path] = (found.st_size, found.st_mtime)
    return state


def check_watchable(paths: Iterable[str | os.PathLike], force_network: bool = False,
                    mounts: str = "/proc/mounts") -> None:
    """Raise ConfigError for a path on a network mount, unless ``force_network``."""
    for path in paths:
        kind = network_filesystem(path, mounts)
        if kind and not force_network:
            raise ConfigError(
                f"{path} is on a network file system ({kind}): watching it would poll the server for every "
                "file every few seconds; run `clapdex index` when it changes, or pass --force-network"
            )


def watch(
    library: Library,
    paths: Iterable[str | os.PathLike],
    *,
    interval: float = DEFAULT_INTERVAL,
    debounce: float = DEFAULT_DEBOUNCE,
    force_network: bool = False,
    stop: threading.Event | None = None,
    after_run: Callable[[IndexReport], None] | None = None,
    show_progress: bool = False,
    mounts: str = "/proc/mounts",
) -> None:
    """Index ``paths`` into ``library`` now, then again after every settled change, until ``stop`` is set."""
    paths = [os.path.abspath(path) for path in paths]
    check_watchable(paths, force_network, mounts)
    stop = stop or threading.Event()
    after_run = after_run or (lambda report: None)
    last = snapshot(paths)
    after_run(index_paths(library, paths, show_progress=show_progress))
    while not stop.wait(interval):
        current = snapshot(paths)
        if current == last:
            continue
        # Wait until the change has settled: copies in progress grow between polls.
        while not stop.wait(debounce):
            settled = snapshot(paths)
            if settled == current:
                break
            current = settled
        if stop.is_set():
            return
        last = current
        after_run(index_paths(library, paths, show_progress=show_progress))
