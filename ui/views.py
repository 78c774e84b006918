"""The library's state and its duplicates, as the catalog records them."""

from __future__ import annotations

import dataclasses
import shlex
import time

import streamlit as st

from search import duplicates as duplicates_of
from search.duplicates import DEFAULT_THRESHOLD as NEAR_DEFAULT, KEPT_FROM
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
    for folder in status.away:
        # Its files are kept, and found by name, but their audio cannot be played until it is back.
        st.warning(f"Library folder {folder.why}: `{folder.path}` ({folder.files} files kept). If it is on a disk, "
                   f"connect or mount it; to forget its files, run `clapdex forget {shlex.quote(folder.path)}`.")
    if status.errors:
        st.subheader("Files that could not be read")
        st.dataframe(
            [{"file": path, "reason": reason} for path, reason in status.errors], hide_index=True, width="stretch",
        )


# Groups a page of the list shows: at a million files there are ten thousand groups of copies alone.
GROUPS_PER_PAGE = 50
KEEP_ACTIONS = (("keep", "Keep this one", "List the other files of its group, to move or delete them yourself"),)


def duplicates(opened: Library) -> None:
    st.caption("Nothing is deleted here. “Keep this one” lists the other files of its group, for you to move or "
               "delete them yourself.")
    exact, near_column = st.columns([1, 1])
    threshold = near_column.slider(
        "Near duplicates: similarity at least", KEPT_FROM, 1.0, NEAR_DEFAULT, 0.005, key="near_threshold",
        on_change=_first_page, help="Cosine similarity of the two files' embeddings. Re-encodes, gain changes and "
        "resamples score near 1; raise it if different sounds are grouped.",
    )
    # What the library keeps, never a pass here: that runs in the background when asked for.
    listed = opened.duplicate_groups(threshold)
    _near_state(opened, listed.near)
    groups = listed.groups
    exact.metric("Groups", len(groups), help="Identical files (same bytes), then files that sound the same.")
    if kept := st.session_state.get("kept"):
        name, others = kept
        st.markdown(f"Keeping **{name}**; the others of its group (copied to the clipboard where the browser "
                    "allows it):")
        st.code("\n".join(others), language=None)
    if not groups:
        st.info("No duplicates in this library at this similarity.")
        return
    pages = -(-len(groups) // GROUPS_PER_PAGE)
    page = min(st.session_state.get("duplicates_page", 0), pages - 1)
    first = page * GROUPS_PER_PAGE
    shown = groups[first : first + GROUPS_PER_PAGE]
    # This page's files only, as plain rows (their tags with them): ORM records, each loading its
    # tags on its own, were most of a click at a million files.
    with opened.reading() as catalog:
        ids = {path: known.id for path, known in catalog.known_at(path for _, group in shown for path in group).items()}
        records = catalog.files_with_windows(list(ids.values()))
    rows, members = [], {}
    for number, (kind, group) in enumerate(shown, start=first + 1):
        for path in group:
            if (record := records.get(ids.get(path))) is None:
                continue
            others = [other for other in group if other != path]
            members[record.id] = (record.name, others)
            # Without the suggested categories: accepting one is the search view's.
            unsuggested = dataclasses.replace(record, suggested=(), accepted=None, suggested_tags=())
            rows.append(hitlist.Row(Hit.of_file(unsuggested), len(rows) + 1, copy="\n".join(others),
                                    group=f"Group {number} · {len(group)} files · {kind}"))
    st.session_state["duplicate_members"] = members
    where = f" · page {page + 1} of {pages}" if pages > 1 else ""
    hitlist.show(
        rows, key=page, what="Duplicates", details="", count=f"{len(groups)} groups{where}", notice=None, page=page,
        pages=pages, on_action=_act, actions=KEEP_ACTIONS, name="duplicates",
    )


def _first_page() -> None:
    st.session_state["duplicates_page"] = 0


def _near_state(opened: Library, kept: duplicates_of.Kept) -> None:
    """Says whether the near duplicates shown are the library's current ones; when they are not,
    offers to bring them up to date in the background, and shows that pass's progress."""
    update = opened.near_update()
    if update is not None and update.finished is None:
        _near_progress(opened)
        return
    if update is not None and update.error:
        st.error(f"Looking for near duplicates failed: {update.error}")
    if kept.current:
        return
    if kept.pairs is None:
        st.info("Near duplicates have not been looked for in this library yet; identical files are listed below. "
                "Looking for them compares every file with its nearest (about 30 minutes at a million files on 2 "
                "busy cores, in the background: the page stays usable). After that, `clapdex index` keeps them "
                "current.")
        asked = st.button("Look for near duplicates", key="near_start")
    else:
        st.warning("The library changed since near duplicates were last looked for: the groups below that sound the "
                   "same are from before. Bringing them up to date compares only the files that changed.")
        asked = st.button("Bring near duplicates up to date", key="near_start")
    if asked:
        opened.start_near_update()
        st.rerun()


@st.fragment(run_every=2.0)
def _near_progress(opened: Library) -> None:
    update = opened.near_update()
    if update is None or update.finished is not None:
        st.rerun()  # the whole view again, with what the pass kept
        return
    st.progress(min(max(update.done, 0.0), 1.0),
                text=f"Looking for near duplicates in the background: {update.doing} "
                     f"({time.time() - update.started:.0f} s so far). The rest of the page can be used meanwhile.")


def _act(action: dict) -> None:
    """A row's "keep" (only a file the page showed), or another page of groups."""
    if action["kind"] == "page" and isinstance(action.get("id"), int):
        st.session_state["duplicates_page"] = max(0, action["id"])
    elif action["kind"] == "keep" and (member := st.session_state.get("duplicate_members", {}).get(action.get("id"))):
        st.session_state["kept"] = member
