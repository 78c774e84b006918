"""The library's state and its duplicates, as the catalog records them."""

from __future__ import annotations

import streamlit as st

from search.duplicates import DEFAULT_THRESHOLD as NEAR_DEFAULT
from search.library import Library


def library(opened: Library) -> None:
    status = opened.status()
    indexed, pending, errors, segments = st.columns(4)
    indexed.metric("Files indexed", status.indexed)
    pending.metric("Waiting to be indexed", status.pending)
    errors.metric("Unreadable files", len(status.errors))
    segments.metric("Segments", status.windows, help="Windows of audio the search compares, several per long file.")
    total = status.indexed + status.pending + len(status.errors)
    if total:
        done = (status.indexed + len(status.errors)) / total
        st.progress(done, text=f"{done:.0%} of the catalogued files are indexed or found unreadable")
    if status.run_described:
        st.caption(f"Indexing: {status.run_described}")
    st.caption(f"Model: {status.model}")
    if status.errors:
        st.subheader("Files that could not be read")
        st.dataframe(
            [{"file": path, "reason": reason} for path, reason in status.errors], hide_index=True, width="stretch",
        )


def duplicates(opened: Library) -> None:
    st.caption("Nothing is deleted here; this only lists them.")
    groups = opened.exact_duplicates()
    st.subheader("Identical files")
    if not groups:
        st.info("No exact duplicates in this library.")
    else:
        st.write(f"{len(groups)} groups of files with exactly the same content")
    for number, group in enumerate(groups, start=1):
        with st.container(border=True):
            st.markdown(f"**Group {number}** · {len(group)} copies")
            for path in group:
                st.code(path, language=None)

    st.subheader("Same sound, other bytes")
    threshold = st.slider(
        "Similarity at least", 0.90, 1.0, NEAR_DEFAULT, 0.005,
        help="Cosine similarity of the two files' embeddings. Re-encodes, gain changes and resamples "
        "score near 1; raise it if different sounds are listed.",
    )
    pairs = opened.near_duplicates(threshold)
    if not pairs:
        st.info("No near duplicates at this similarity.")
        return
    st.dataframe(
        [{"file": pair.first, "near duplicate": pair.second, "similarity": pair.score} for pair in pairs],
        hide_index=True, width="stretch",
    )
