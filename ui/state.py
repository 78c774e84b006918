"""What the page remembers between reruns: the current search, its page, and a message.

Streamlit reruns the whole script on every click; a search is kept here so paging, filtering
or opening a spectrogram shows the same search again (its embedding is cached by the engine).
Buttons change it through these callbacks, which run before the rerun draws the page.
"""

from __future__ import annotations

import streamlit as st

from search.query import Query


def search_for(query: Query | None, keywords: str = "") -> None:
    st.session_state["current_query"] = query
    st.session_state["current_keywords"] = keywords
    st.session_state["results_page"] = 0
    st.session_state["searched"] = True


def searched() -> bool:
    return st.session_state.get("searched", False)


def query() -> Query | None:
    return st.session_state.get("current_query")


def keywords() -> str:
    return st.session_state.get("current_keywords", "")


def page() -> int:
    return st.session_state.get("results_page", 0)


def go_to_page(number: int) -> None:
    st.session_state["results_page"] = max(0, number)


def report(message: str) -> None:
    """Show ``message`` as an error on the next draw (callbacks cannot draw themselves)."""
    st.session_state["message"] = message


def take_message() -> str | None:
    return st.session_state.pop("message", None)
