"""What the page remembers between reruns: the current search, its page, an attached clip,
and a message.

Streamlit reruns the whole script on every click; a search is kept here so paging, filtering
or opening a view shows the same search again (its embedding is cached by the engine).
Buttons change it through these callbacks, which run before the rerun draws the page. Every
change of what the results show (a new search, a page, a filter or a sort) counts as a new
``view``, which the result list answers by showing its top.
"""

from __future__ import annotations

import streamlit as st

from search.query import Clip, Query, Term

QUERY_BOX, KEYWORDS_BOX = "query_text", "keywords_text"


def search_for(query: Query | None, keywords: str | None = None) -> None:
    """Run ``query`` (and ``keywords``; None keeps them) from page 1; the boxes show what runs."""
    st.session_state["current_query"] = query
    st.session_state[QUERY_BOX] = query.as_typed() if query else ""
    if keywords is not None:
        st.session_state["current_keywords"] = keywords
        st.session_state[KEYWORDS_BOX] = keywords
    st.session_state["searched"] = True
    go_to_page(0)


def searched() -> bool:
    return st.session_state.get("searched", False)


def query() -> Query | None:
    """The typed part of the search (descriptions, files, regions), without the clip."""
    return st.session_state.get("current_query")


def full_query() -> Query | None:
    """What is searched: the typed query plus the attached clip."""
    typed, attached = query(), clip()
    terms = (typed.terms if typed else ()) + ((Term(attached),) if attached else ())
    return Query(terms, exclude_path=typed.exclude_path if typed else None) if terms else None


def keywords() -> str:
    return st.session_state.get("current_keywords", "")


def page() -> int:
    return st.session_state.get("results_page", 0)


def go_to_page(number: int) -> None:
    st.session_state["results_page"] = max(0, number)
    _new_view()


def filters_changed() -> None:
    """A filter or the sort changed: the results start again at page 1."""
    st.session_state["results_page"] = 0
    _new_view()


def view() -> int:
    """A number that changes whenever the results show something else."""
    return st.session_state.get("view_number", 0)


def _new_view() -> None:
    st.session_state["view_number"] = view() + 1


def attach_clip(data: bytes, name: str) -> None:
    """An uploaded or recorded clip joins the search until it is removed; the widget that
    brought it is emptied, so it cannot join twice or silently stay."""
    st.session_state["clip"] = Clip(data, name)
    st.session_state["clip_widgets"] = clip_widgets() + 1
    search_for(query())


def detach_clip() -> None:
    st.session_state.pop("clip", None)
    search_for(query())


def clip() -> Clip | None:
    return st.session_state.get("clip")


def clip_widgets() -> int:
    """Part of the upload and record widgets' keys: a new number gives empty widgets."""
    return st.session_state.get("clip_widgets", 0)


def report(message: str) -> None:
    """Show ``message`` as an error on the next draw (callbacks cannot draw themselves)."""
    st.session_state["message"] = message


def take_message() -> str | None:
    return st.session_state.pop("message", None)
