"""Opening a library home the way the commands do, for tests that index or search in-process;
a small UCS list for the tagger."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path

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


# A UCS list in the official sheet's columns; its subcategories are made up for the tests, under
# real categories (clapdex ships no list: users bring the official one).
MADE_UP_LIST = [
    ("ANMLHowlish", "ANIMALS", "HOWLISH", "ANML", "Long rising cries of made-up beasts", "howl, yowl"),
    ("DOORCreakish", "DOORS", "CREAKISH", "DOOR", "Slow hinges that complain", "creak, hinge"),
    ("GLASClinkish", "GLASS", "CLINKISH", "GLAS", "Small knocks on thin glass", "clink, tap"),
    ("WATRBurblish", "WATER", "BURBLISH", "WATR", "Water moving in a small stream", "burble, gurgle"),
    ("TOOLWhirrish", "TOOLS", "WHIRRISH", "TOOL", "Hand tools spinning up", "whirr, spin"),
    ("RAINPatterish", "RAIN", "PATTERISH", "RAIN", "Light rain on a roof", "patter, drizzle"),
]


def write_list(path: Path, columns=("CatID", "Category", "SubCategory", "CatShort", "Explanations",
                                    "Synonyms - Comma Separated")) -> Path:
    """``MADE_UP_LIST`` saved as the official list is, with ``columns`` (the first ones)."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(row[:len(columns)] for row in MADE_UP_LIST)
    return path
