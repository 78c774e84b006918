"""A search's results on the page: what was searched, how well anything matched, and the
rows of the result list (``ui.hitlist``) with what their buttons do."""

from __future__ import annotations

import functools

import streamlit as st

from search.engine import Results
from search.library import Library
from search.query import Query
from ui import hitlist, state
from ui.sidebar import Options, describe_filters

WEAK_TEXT = ("Nothing in this library matches this well: the best hit scores no higher than made-up words "
             "do. Try other words, or keywords.")
WEAK_SOUND = ("Nothing in this library sounds much like this: the best hit is no nearer than a typical "
              "library sound is to its nearest neighbour.")


def render(found: Results, query: Query | None, keywords: str, options: Options, library: Library) -> None:
    first = found.page * found.page_size
    # Row buttons name a file id; what to search for is looked up here, not trusted from the browser.
    st.session_state["shown_hits"] = {hit.file_id: (hit.path, hit.start, hit.end) for hit in found.hits}
    st.session_state["shown_suggestions"] = {hit.file_id: {cat_id for cat_id, _ in hit.suggested} for hit in found.hits}
    notice = None
    if found.best_match == "weak":
        notice = WEAK_SOUND if query is not None and query.has_sound else WEAK_TEXT
    what = f"Sounds like “{query}”" if query is not None else f"Keywords “{keywords}”" if keywords else "Filtered"
    details = " · ".join(part for part in (
        f"keywords “{keywords}”" if keywords and query is not None else "",
        describe_filters(options.filters),
        f"sorted by {options.sort}" if options.sort != "relevance" else "",
    ) if part)
    if not found.hits:
        count = "no matching files"
    else:
        count = f"{found.total} files · page {found.page + 1} of {found.pages}"
    hitlist.show(
        [hitlist.Row(hit, rank) for rank, hit in enumerate(found.hits, start=first + 1)],
        key=state.view(), what=what, details=details, count=count, notice=notice, page=found.page,
        pages=found.pages, on_action=functools.partial(act, library),
    )


def act(library: Library, action: dict) -> None:
    """A row's button: a new search from that hit, another page, or a suggested category accepted."""
    kind, target = action["kind"], action.get("id")
    if kind == "page" and isinstance(target, int):
        state.go_to_page(target)
        return
    if kind == "accept":
        # Only a suggestion the page showed for that file: never a value taken on the browser's word.
        if action.get("value") in st.session_state.get("shown_suggestions", {}).get(target, ()):
            library.accept_suggestion(target, action["value"])
        return
    shown = st.session_state.get("shown_hits", {}).get(target)
    if shown is None:
        return
    path, start, end = shown
    if kind == "more":
        state.search_for(Query.sound(path), "")
    elif kind == "region":
        state.search_for(Query.sound(path, start, end), "")
