"""One card per hit: where it matched, a player of that region, a waveform, the file's
metadata, and what to do next (more like this, a time range, the region as WAV)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from search.engine import Hit, Results, Searcher
from search.query import Query, QueryError, format_time, parse_time
from ui import audio_view, state

# What the browser is told each format is; it plays what it can.
AUDIO_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "aiff": "audio/aiff", "ogg": "audio/ogg", "opus": "audio/ogg",
               "mp3": "audio/mpeg", "m4a": "audio/mp4"}
SCORE_HELP = (
    "Cosine similarity between the query and the file's best-matching segment, from -1 to 1. "
    "Its size depends on the query (short text queries score lower than sounds), so compare hits "
    "of one search, not across searches; the bar shows the hit against this search's best."
)


# Cached per file version (mtime): paging back and forth re-reads nothing.
@st.cache_data(max_entries=32, show_spinner=False)
def file_bytes(path: str, mtime: float) -> bytes:
    return Path(path).read_bytes()


@st.cache_data(max_entries=64, show_spinner=False)
def waveform(path: str, mtime: float, start: float, end: float) -> bytes:
    return audio_view.waveform_png(audio_view.display_samples(path), (start, end))


@st.cache_data(max_entries=16, show_spinner=False)
def spectrogram(path: str, mtime: float, start: float, end: float) -> bytes:
    return audio_view.spectrogram_png(audio_view.display_samples(path), (start, end))


def render(searcher: Searcher, results: Results) -> None:
    if not results.hits:
        st.info("No matching sounds in this library.")
        return
    first = results.page * results.page_size
    st.caption(f"{results.total} files · page {results.page + 1} of {results.pages}")
    for rank, hit in enumerate(results.hits, start=first + 1):
        with st.container(border=True, key=f"hit-{hit.file_id}"):
            _card(searcher, rank, hit, results.best_score)
    _pager(results)


def _card(searcher: Searcher, rank: int, hit: Hit, best: float | None) -> None:
    try:
        path = searcher.library_file(hit.path)
        mtime = path.stat().st_mtime
    except OSError as exc:
        st.markdown(f"**{rank}. {hit.name}**")
        st.warning(f"This file cannot be read now: {exc.strerror or exc}.")
        return
    heading, score = st.columns([4, 1])
    heading.markdown(f"**{rank}. {hit.name}**  \n`{hit.folder_in_library}`")
    if hit.score is not None:
        score.metric("match", f"{hit.score:.3f}", help=SCORE_HELP)
        if best and best > 0:
            share = min(max(hit.score / best, 0.0), 1.0)
            score.progress(share, text=f"{share:.0%} of the best")
    if hit.keyword_match:
        score.badge("keyword match", icon=":material/sell:", color="blue")
    segment = "best match" if hit.score is not None else "segment"
    st.caption(f"{segment} {format_time(hit.start)}–{format_time(hit.end)} of {format_time(hit.duration or 0)}")
    st.caption(_metadata_line(hit))
    if hit.description:
        st.caption(hit.description)
    st.image(waveform(str(path), mtime, hit.start, hit.end), width="stretch")
    st.audio(
        file_bytes(str(path), mtime), format=AUDIO_TYPES.get(hit.format or "", "audio/wav"),
        start_time=hit.start, end_time=hit.end,
    )
    more, region, download, spectrum = st.columns([1, 1, 1, 1])
    more.button(
        "More like this", key=f"more-{hit.file_id}", icon=":material/manage_search:",
        on_click=state.search_for, args=(Query.sound(hit.path),),
    )
    with region.popover("Similar to a range", icon=":material/timer:"):
        _region_form(hit)
    download.download_button(
        "Region as WAV", data=lambda: audio_view.region_wav(path, hit.start, hit.end, hit.sample_rate),
        file_name=f"{path.stem}_{hit.start:.1f}-{hit.end:.1f}.wav", mime="audio/wav", on_click="ignore",
        key=f"download-{hit.file_id}", icon=":material/download:",
    )
    if spectrum.toggle("Spectrogram", key=f"spectrogram-{hit.file_id}"):
        st.image(spectrogram(str(path), mtime, hit.start, hit.end), width="stretch")


def _region_form(hit: Hit) -> None:
    start_key, end_key = f"from-{hit.file_id}", f"to-{hit.file_id}"
    st.text_input("From", format_time(hit.start), key=start_key)
    st.text_input("To", format_time(hit.end), key=end_key)
    st.button(
        "Find similar", key=f"range-{hit.file_id}", type="primary", on_click=_search_range,
        args=(hit.path, hit.duration, start_key, end_key),
    )


def _search_range(path: str, duration: float | None, start_key: str, end_key: str) -> None:
    # Read the fields now: arguments bound when the button was drawn hold the times before any edit.
    try:
        start, end = parse_time(st.session_state[start_key]), parse_time(st.session_state[end_key])
        if duration is not None and start >= duration:
            raise QueryError(f"{format_time(start)} is past the end of the file ({format_time(duration)})")
        state.search_for(Query.sound(path, start, min(end, duration) if duration else end))
    except QueryError as exc:
        state.report(str(exc))


def _metadata_line(hit: Hit) -> str:
    parts = []
    if hit.sample_rate:
        parts.append(f"{hit.sample_rate / 1000:g} kHz")
    if hit.channels:
        parts.append({1: "mono", 2: "stereo"}.get(hit.channels, f"{hit.channels} channels"))
    if hit.format:
        parts.append(hit.format.upper() + (f" {hit.bit_depth}-bit" if hit.bit_depth else ""))
    if hit.ucs_cat_id:
        parts.append(f"UCS {hit.ucs_cat_id}")
    if hit.tags:
        parts.append("tags: " + ", ".join(hit.tags))
    return " · ".join(parts)


def _pager(results: Results) -> None:
    if results.pages == 1:
        return
    back, where, forward = st.columns([1, 2, 1])
    back.button(
        "Previous", icon=":material/chevron_left:", disabled=results.page == 0,
        on_click=state.go_to_page, args=(results.page - 1,),
    )
    where.caption(f"page {results.page + 1} of {results.pages}")
    forward.button(
        "Next", icon=":material/chevron_right:", disabled=results.page + 1 >= results.pages,
        on_click=state.go_to_page, args=(results.page + 1,),
    )
