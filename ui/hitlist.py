"""The result list as one small custom component (``hitlist.js``): a dense row per hit, one
player for the whole list, keyboard audition, and actions sent back as one trigger.

Streamlit's own elements give a hit a card of about 470 px (a player, a picture and four
buttons each), so two hits fit a screen and every card is a separate player. Here a row is
48 px; audio, waveforms and spectrograms come from the page server's media routes
(``server.media``), loaded by the browser, so a page of results costs the script run nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import streamlit as st

from search import ucs
from search.config import load_settings
from search.engine import Hit
from server import media

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_mount = st.components.v2.component(
    "clapdex.hitlist", js=(_HERE / "hitlist.js").read_text(), css=(_HERE / "hitlist.css").read_text(),
)

# (kind, label, help) of the buttons on every row of a search; the page handles each kind.
SEARCH_ACTIONS = (
    ("more", "More like this", "Files that sound like this one (m)"),
    ("region", "Region", "Files like the matched region only"),
)


@dataclasses.dataclass(frozen=True)
class Row:
    """A hit as the list shows it."""

    hit: Hit
    rank: int
    group: str | None = None  # a heading above the row when it differs from the row before
    copy: str | None = None  # put on the clipboard by the row's "keep" button

    def data(self) -> dict:
        hit = self.hit
        # Marked where it says something: not on a file that is all one match.
        region = {"start": hit.start, "end": hit.end} if hit.window_id is not None and not _whole(hit) else {}
        row = {
            "id": hit.file_id, "rank": self.rank, "name": hit.name, "folder": hit.folder_in_library,
            "path": hit.path, "duration": hit.duration or 0.0, "durationLabel": format_duration(hit.duration),
            "regionLabel": region_label(hit), "start": hit.start, "end": hit.end,
            "keyword": hit.keyword_match, "meta": metadata_line(hit), "description": hit.description or "",
            "audio": media.url("audio", hit.file_id, hit.mtime),
            "wave": media.url("waveform", hit.file_id, hit.mtime, **region),
            "spectrogram": media.url("spectrogram", hit.file_id, hit.mtime, **region),
            "download": media.url("audio", hit.file_id, hit.mtime, start=hit.start, end=hit.end or hit.duration,
                                  download=1),
            "group": self.group, "copy": self.copy, "match": hit.match, "score": f"{hit.score:.3f}" if hit.score is not None else "",
        }
        # Suggestions are marked as such; accepting one is a click (ui.results.act), checked there.
        listed = _subcategories() if hit.suggested else ()
        row["suggestions"] = [
            {"catId": cat_id, "label": f"{cat_id} {confidence:.0%}", "accepted": cat_id == hit.accepted,
             "title": suggestion_title(cat_id, confidence, cat_id == hit.accepted, listed)}
            for cat_id, confidence in hit.suggested]
        if hit.relevance is not None:
            row["matchTitle"] = (f"Cosine {hit.score:.3f}: a better match than {hit.relevance:.0%} of the best "
                                 "matches of queries with no real answer in this library")
        return row


def show(
    rows: Sequence[Row], *, key: int, what: str, details: str, count: str, notice: str | None, page: int, pages: int,
    on_action: Callable[[dict], None], actions: Sequence[tuple[str, str, str]] = SEARCH_ACTIONS, name: str = "hits",
) -> None:
    """Draw the list; ``on_action`` gets ``{"kind", "id"}`` before the rerun it causes draws the page."""
    _mount(
        key=name,
        data={
            "key": key, "what": what, "details": details, "count": count, "notice": notice, "page": page,
            "pages": pages, "actions": [list(action) for action in actions], "rows": [row.data() for row in rows],
        },
        on_action_change=lambda: _dispatch(name, on_action),
    )


def _dispatch(name: str, on_action: Callable[[dict], None]) -> None:
    action = st.session_state[name].get("action")
    if isinstance(action, dict) and isinstance(action.get("kind"), str):
        on_action(action)


def suggestion_title(cat_id: str, confidence: float, accepted: bool, listed: tuple[ucs.Subcategory, ...] = ()) -> str:
    named = ucs.describe(cat_id, listed)
    return (f"Accepted: {named}" if accepted
            else f"Suggested ({confidence:.0%} likely): {named}. Click to accept")


def _subcategories() -> tuple[ucs.Subcategory, ...]:
    """The user's UCS list (read once: ucs.load_list keeps it), for the words of a suggested CatID;
    () without one, or one that cannot be read."""
    listed = load_settings().ucs_list
    try:
        return ucs.load_list(listed) if listed else ()
    except ucs.ListError as error:
        log.warning("%s", error)
        return ()


def format_duration(seconds: float | None) -> str:
    """``44 ms``, ``3.2 s``, ``1:05``, ``1:02:03``: sub-second sounds in milliseconds."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{max(seconds * 1000, 1):.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def region_label(hit: Hit) -> str:
    """Where in the file the hit matched; "whole file" when that is all of it."""
    if hit.window_id is None or hit.duration is None:
        return ""
    if _whole(hit):
        return "whole file"
    if hit.duration < 1:
        return f"{hit.start * 1000:.0f}–{hit.end * 1000:.0f} ms"
    if hit.duration < 60:
        return f"{hit.start:.1f}–{min(hit.end, hit.duration):.1f} s"
    return f"{_clock(hit.start)}–{_clock(min(hit.end, hit.duration))}"


def _whole(hit: Hit) -> bool:
    """Whether the hit's region is all of its file."""
    return hit.start <= 0.005 and hit.end >= (hit.duration or 0) - 0.005


def channels_label(count: int) -> str:
    return {1: "mono", 2: "stereo"}.get(count, f"{count} channels")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def metadata_line(hit: Hit) -> str:
    parts = []
    if hit.sample_rate:
        parts.append(f"{hit.sample_rate / 1000:g} kHz")
    if hit.channels:
        parts.append(channels_label(hit.channels))
    if hit.format:
        parts.append(hit.format.upper() + (f" {hit.bit_depth}-bit" if hit.bit_depth else ""))
    if hit.ucs_cat_id:
        parts.append(f"UCS {hit.ucs_cat_id}")
    if hit.tags:
        parts.append("tags: " + ", ".join(hit.tags))
    if hit.suggested_tags:
        parts.append("suggested tags: " + ", ".join(tag for _, tag, _ in hit.suggested_tags))
    if hit.title and hit.title != hit.name:
        parts.append(f"title: {hit.title}")
    return " · ".join(parts)
