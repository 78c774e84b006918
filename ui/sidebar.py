"""The sidebar: filters on everything the catalog stores, and how results are ranked and shown."""

from __future__ import annotations

import dataclasses
import os

import streamlit as st

from search.catalog import Facets
from search.engine import SORTS
from search.filters import Filters

PAGE_SIZES = (10, 20, 50, 5)
SORT_LABELS = {
    "relevance": "Relevance", "name": "Name", "shortest": "Shortest first", "longest": "Longest first",
    "folder": "Folder",
}
CHANNEL_LABELS = {1: "mono", 2: "stereo"}


@dataclasses.dataclass(frozen=True)
class Options:
    filters: Filters
    sort: str
    page_size: int
    keyword_weight: float


def read_options(facets: Facets, roots: tuple[str, ...]) -> Options:
    """Draw the sidebar and return what it is set to; every widget keeps its value across reruns."""
    with st.sidebar:
        st.header("Filters")
        filters = Filters(
            **_duration_range(facets),
            sample_rates=tuple(st.multiselect(
                "Sample rate", facets.sample_rates, format_func=lambda rate: f"{rate / 1000:g} kHz", key="rates",
            )),
            channels=tuple(st.multiselect(
                "Channels", facets.channels, format_func=lambda count: CHANNEL_LABELS.get(count, f"{count} channels"),
                key="channels",
            )),
            formats=tuple(st.multiselect("Format", facets.formats, format_func=str.upper, key="formats")),
            folders=tuple(st.multiselect(
                "Folder", facets.folders, format_func=lambda folder: _below_roots(folder, roots), key="folders",
                help="Files anywhere below the chosen folders.",
            )),
            tags=tuple(st.multiselect("Tags", facets.tags, key="tags", help="Files with all of the chosen tags.")),
            categories=tuple(st.multiselect("UCS category", facets.categories, key="categories")),
        )
        st.header("Results")
        sort = st.selectbox("Sort by", SORTS, format_func=SORT_LABELS.__getitem__, key="sort")
        page_size = st.selectbox("Per page", PAGE_SIZES, key="page_size")
        keyword_weight = st.slider(
            "Keyword weight", 0.0, 1.0, 0.5, 0.05, key="keyword_weight",
            help="When you give both a description and keywords: the keywords' share of the ranking. "
                 "0 ranks by sound alone, 1 by keywords alone.",
        )
    return Options(filters, sort, page_size, keyword_weight)


def _duration_range(facets: Facets) -> dict:
    low, high = float(facets.min_duration), float(facets.max_duration)
    if high <= low:
        return {}
    chosen = st.slider("Duration (s)", low, high, (low, high), step=max((high - low) / 200, 0.01), key="duration")
    # The full range means "any duration": files catalogued later may be longer.
    return {
        "min_duration": chosen[0] if chosen[0] > low else None,
        "max_duration": chosen[1] if chosen[1] < high else None,
    }


def _below_roots(folder: str, roots: tuple[str, ...]) -> str:
    for root in roots:
        if folder == root or folder.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.join(os.path.basename(root.rstrip(os.sep)), os.path.relpath(folder, root)).rstrip(".")
    return folder
