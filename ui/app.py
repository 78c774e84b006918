"""The clapdex page: search a library by text or by an example clip, listen to the hits.

Run through ``clapdex ui`` (which passes the library settings in CLAPDEX_* variables);
the page talks to ``search`` only.
"""

from __future__ import annotations

import io
from pathlib import Path

import streamlit as st

from search.config import load_settings
from search.engine import Searcher
from ui import MAX_QUERY_SECONDS, MAX_UPLOAD_BYTES

TOP_CHOICES = (10, 20, 50)
# What the browser is told each file is; it plays what it can.
AUDIO_TYPES = {
    ".wav": "audio/wav", ".flac": "audio/flac", ".aif": "audio/aiff", ".aiff": "audio/aiff",
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4", ".aac": "audio/aac",
}


@st.cache_resource(show_spinner="Loading the model…")
def open_searcher() -> Searcher:
    # One model per server process, shared by every session and query.
    return Searcher(load_settings())


def show_error(message: str) -> None:
    st.error(message, icon=":material/error:")


def format_time(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def run_query(searcher: Searcher, text: str, upload, top: int):
    if upload is not None:
        data = upload.getvalue()
        if len(data) > MAX_UPLOAD_BYTES:
            raise ValueError(
                f"The uploaded file is {len(data) / 2**20:.1f} MB; query clips may be at most "
                f"{MAX_UPLOAD_BYTES // 2**20} MB."
            )
        clip = io.BytesIO(data)
        clip.name = upload.name
        return searcher.search_audio_file(clip, top=top, max_seconds=MAX_QUERY_SECONDS)
    if text.strip():
        return searcher.search_text(text.strip(), top=top)
    return None


def render_hits(searcher: Searcher, hits) -> None:
    if not hits:
        st.info("No matching sounds in this library.")
        return
    for rank, hit in enumerate(hits, start=1):
        path = Path(hit.path)
        with st.container(border=True):
            left, right = st.columns([3, 1])
            left.markdown(f"**{rank}. {path.name}**  \n`{path.parent}`")
            right.metric("match", f"{hit.score:.3f}", help="cosine similarity between query and sound")
            st.caption(
                f"best match {format_time(hit.start)}–{format_time(hit.end)}"
                f" of {format_time(hit.duration)}"
            )
            try:
                audio = searcher.library_file(path).read_bytes()
            except OSError as exc:
                st.warning(f"This file cannot be played: {exc.strerror or exc}.")
                continue
            st.audio(audio, format=AUDIO_TYPES.get(path.suffix.lower(), "audio/wav"), start_time=int(hit.start))


def main() -> None:
    st.set_page_config(page_title="clapdex", page_icon=":material/graphic_eq:", layout="wide")
    st.title("clapdex")
    st.caption("Describe a sound, or drop in an example, to find it in your library.")

    try:
        searcher = open_searcher()
    except Exception as exc:  # noqa: BLE001 - the page shows sentences, never tracebacks
        show_error(f"The library could not be opened: {exc}")
        st.stop()

    with st.form("query"):
        text = st.text_input("Describe the sound", placeholder="glass shattering on concrete, close")
        upload = st.file_uploader(
            "…or search by example",
            type=[suffix.lstrip(".") for suffix in AUDIO_TYPES],
            help=f"At most {MAX_UPLOAD_BYTES // 2**20} MB; the first {MAX_QUERY_SECONDS:.0f} s are used.",
        )
        top = st.selectbox("Results", TOP_CHOICES, index=0)
        submitted = st.form_submit_button("Search", type="primary")

    if not submitted:
        return
    try:
        hits = run_query(searcher, text, upload, top)
    except Exception as exc:  # noqa: BLE001 - the page shows sentences, never tracebacks
        show_error(str(exc) or exc.__class__.__name__)
        return
    if hits is None:
        st.info("Type a description or upload a clip first.")
        return
    render_hits(searcher, hits)


main()
