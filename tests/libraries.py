"""Opening a library home the way the commands do, for tests that index or search in-process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from indexer import index_paths
from search.config import Settings
from search.engine import Searcher
from search.library import Library


def index_into(settings: Settings, paths, encoder=None, **options):
    """``index_paths`` over the library at ``settings`` (created if new), with ``encoder`` loaded
    already; the library is closed again afterwards, as after `clapdex index`."""
    with Library(settings, create=True, encoder=encoder) as library:
        return index_paths(library, paths, **options)


@contextlib.contextmanager
def searching(settings: Settings, encoder=None, **options) -> Iterator[Searcher]:
    """A Searcher over the library at ``settings``, as `clapdex search` and the page open one."""
    with Library(settings, encoder=encoder) as library:
        yield Searcher(library, **options)
