"""The sidebar: filters on everything the catalog stores, and how results are ranked and shown."""

from __future__ import annotations

import dataclasses
import functools
import os

import streamlit as st

from search.catalog import Facets
from search.engine import SORTS, below_root
from search.filters import Filters
from search.library import is_within
from ui import state
from ui.hitlist import channels_label, format_duration

PAGE_SIZES = (10, 20, 50, 5)
SORT_LABELS = {
    "relevance": "Relevance", "name": "Name", "shortest": "Shortest first", "longest": "Longest first",
    "folder": "Folder",
}
# Stops of the duration slider, in seconds: about three per decade.
DURATION_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclasses.dataclass(frozen=True)
class Options:
    filters: Filters
    sort: str
    page_size: int
    keyword_weight: float


def read_options(facets: Facets) -> Options:
    """Draw the sidebar and return what it is set to; every widget keeps its value across reruns,
    and any change shows the results from page 1."""
    folder_labels = _folder_labels(tuple(facets.folders), tuple(facets.roots))
    changed = {"on_change": state.filters_changed}
    with st.sidebar:
        st.header("Filters")
        filters = Filters(
            **_duration_range(facets),
            sample_rates=tuple(st.multiselect(
                "Sample rate", facets.sample_rates, format_func=lambda rate: f"{rate / 1000:g} kHz", key="rates", **changed,
            )),
            channels=tuple(st.multiselect(
                "Channels", facets.channels, format_func=channels_label,
                key="channels", **changed,
            )),
            formats=tuple(st.multiselect("Format", facets.formats, format_func=str.upper, key="formats", **changed)),
            folders=tuple(st.multiselect(
                "Folder", facets.folders, format_func=folder_labels.__getitem__, key="folders",
                help="Files anywhere below the chosen folders.", **changed,
            )),
            tags=tuple(st.multiselect("Tags", facets.tags, key="tags", help="Files with all of the chosen tags.",
                                      **changed)),
            categories=tuple(st.multiselect("UCS category", facets.categories, key="categories", **changed)),
        )
        st.header("Results")
        sort = st.selectbox("Sort by", SORTS, format_func=SORT_LABELS.__getitem__, key="sort", **changed)
        page_size = st.selectbox("Per page", PAGE_SIZES, key="page_size", **changed)
        keyword_weight = st.slider(
            "Keyword weight", 0.0, 1.0, 0.5, 0.05, key="keyword_weight", **changed,
            help="When you give both a description and keywords: the keywords' share of the ranking. "
                 "0 ranks by sound alone, 1 by keywords alone.",
        )
    return Options(filters, sort, page_size, keyword_weight)


def _duration_range(facets: Facets) -> dict:
    """Duration on a log scale: one-shots of 10 ms to 1 s get as much of the slider as takes of
    a minute to an hour."""
    low, high = float(facets.min_duration), float(facets.max_duration)
    steps = [step for step in DURATION_STEPS if low < step < high]
    if not steps:
        return {}
    stops = [low, *steps, high]
    chosen = st.select_slider(
        "Duration", stops, value=(low, high), format_func=lambda seconds: format_duration(seconds), key="duration",
        on_change=state.filters_changed,
    )
    # The ends mean "any duration": files catalogued later may be shorter or longer.
    return {
        "min_duration": chosen[0] if chosen[0] > low else None,
        "max_duration": chosen[1] if chosen[1] < high else None,
    }


@functools.lru_cache(maxsize=4)
def _folder_labels(folders: tuple[str, ...], roots: tuple[str, ...]) -> dict[str, str]:
    # Labelled once per state of the library: a library of 10^5 files has tens of thousands of
    # folders, and labelling them took most of every click's 800 ms.
    return {folder: _below_roots(folder, roots) for folder in folders}


def _below_roots(folder: str, roots: tuple[str, ...]) -> str:
    """The folder from its library root's own name down ("sfx/doors/wood")."""
    inside = [root for root in roots if is_within(folder, root)]
    if not inside:
        return folder
    return below_root(folder, max(inside, key=len))


def describe_filters(filters: Filters) -> str:
    """The filters in force, in a few words ("mono · FLAC · 50 ms to 1.0 s")."""
    parts = []
    if filters.min_duration is not None or filters.max_duration is not None:
        low = format_duration(filters.min_duration) if filters.min_duration is not None else "any"
        high = format_duration(filters.max_duration) if filters.max_duration is not None else "any length"
        parts.append(f"{low} to {high}")
    parts += [f"{rate / 1000:g} kHz" for rate in filters.sample_rates]
    parts += [channels_label(count) for count in filters.channels]
    parts += [name.upper() for name in filters.formats]
    parts += [os.path.basename(folder.rstrip(os.sep)) + "/" for folder in filters.folders]
    parts += [f"#{tag}" for tag in filters.tags]
    parts += list(filters.categories)
    return " · ".join(parts)
