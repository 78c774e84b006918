"""The library's state and its duplicates, as the catalog records them."""

from __future__ import annotations

import streamlit as st

from search import duplicates as duplicates_of
from search.duplicates import DEFAULT_THRESHOLD as NEAR_DEFAULT
from search.engine import Hit
from search.library import Library
from ui import hitlist


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


GROUPS_SHOWN = 200
KEEP_ACTIONS = (("keep", "Keep this one", "List the other files of its group, to move or delete them yourself"),)


def duplicates(opened: Library) -> None:
    st.caption("Nothing is deleted here. “Keep this one” lists the other files of its group, for you to move or "
               "delete them yourself.")
    exact, near_column = st.columns([1, 1])
    threshold = near_column.slider(
        "Near duplicates: similarity at least", 0.90, 1.0, NEAR_DEFAULT, 0.005, key="near_threshold",
        help="Cosine similarity of the two files' embeddings. Re-encodes, gain changes and resamples "
        "score near 1; raise it if different sounds are grouped.",
    )
    groups = [("identical", group) for group in opened.exact_duplicates()]
    near = duplicates_of.groups(_near_pairs(opened, threshold, len(opened.store)))
    groups += [("sound the same", group) for group in near]
    exact.metric("Groups", len(groups), help="Identical files (same bytes), then files that sound the same.")
    if kept := st.session_state.get("kept"):
        name, others = kept
        st.markdown(f"Keeping **{name}**; the others of its group (copied to the clipboard where the browser "
                    "allows it):")
        st.code("\n".join(others), language=None)
    if not groups:
        st.info("No duplicates in this library at this similarity.")
        return
    shown = groups[:GROUPS_SHOWN]
    with opened.reading() as catalog:
        records = catalog.files_at({path for _, group in shown for path in group})
        rows, members = [], {}
        for number, (kind, group) in enumerate(shown, start=1):
            for path in group:
                if (record := records.get(path)) is None:
                    continue
                others = [other for other in group if other != path]
                members[record.id] = (record.name, others)
                rows.append(hitlist.Row(Hit.of_file(record), len(rows) + 1, copy="\n".join(others),
                                        group=f"Group {number} · {len(group)} files · {kind}"))
    st.session_state["duplicate_members"] = members
    more = f" (the first {GROUPS_SHOWN} shown)" if len(groups) > GROUPS_SHOWN else ""
    hitlist.show(
        rows, key=0, what="Duplicates", details="", count=f"{len(groups)} groups{more}", notice=None, page=0,
        pages=1, on_action=_keep, actions=KEEP_ACTIONS, name="duplicates",
    )


@st.cache_data(max_entries=8, show_spinner="Comparing every file with its neighbours…")
def _near_pairs(_opened: Library, threshold: float, vectors: int):
    # Keyed by the vector count: a pass over the whole library, again only when it changed.
    return _opened.near_duplicates(threshold)


def _keep(action: dict) -> None:
    if action["kind"] == "keep" and (member := st.session_state.get("duplicate_members", {}).get(action.get("id"))):
        st.session_state["kept"] = member
