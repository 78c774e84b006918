"""The clapdex page: search a library by description, example, recording or keywords; listen
to the matched moments; see the library's state and its duplicates.

Run through ``clapdex ui`` (which passes the library settings in CLAPDEX_* variables);
the page talks to the ``Library`` and the query engine, and reads audio through ``encoders.audio``.
"""

from __future__ import annotations

import logging

import streamlit as st

from encoders.audio import AUDIO_EXTENSIONS, AudioDecodeError
from search.config import load_settings
from search.engine import Searcher
from search.library import Library
from search.query import Query, QueryError, parse_query
from ui import MAX_QUERY_SECONDS, MAX_UPLOAD_BYTES, results, sidebar, state, views

log = logging.getLogger(__name__)

QUERY_HELP = (
    "Describe the sound. Add and subtract terms, and name library files, as in "
    "`rain + thunder_01.wav - traffic`; weigh a term with `2:rain`."
)
KEYWORD_HELP = (
    "Searched in file names, folders, tags, descriptions and UCS categories. A space means AND, "
    "a comma OR, a leading - NOT: `door -metal, gate`. Quote a phrase: `\"wood door\"`."
)


@st.cache_resource(show_spinner="Loading the model…")
def open_searcher() -> Searcher:
    # One library and model per server process, shared by every session and query, the model
    # loaded before the first query waits for it.
    library = Library(load_settings())
    try:
        _ = library.encoder
    except BaseException:
        library.close()
        raise
    return Searcher(library, library_only=True, max_clip_seconds=MAX_QUERY_SECONDS)


@st.cache_data(ttl=60, show_spinner=False)
def disagreement(_searcher: Searcher) -> str | None:
    # A count of windows and vectors: cheap, but not on every click of every session.
    return _searcher.library.disagreement()


def sentence(exc: Exception) -> str:
    """What went wrong, for a person: never a traceback."""
    if isinstance(exc, AudioDecodeError):
        return f"That clip could not be read: {exc.reason}."
    if isinstance(exc, PermissionError | QueryError):
        return str(exc)[:1].upper() + str(exc)[1:] + "."
    return f"Something went wrong: {exc or exc.__class__.__name__}."


def show_error(message: str) -> None:
    st.error(message, icon=":material/error:")


def query_form() -> None:
    with st.form("query"):
        text = st.text_input("Describe the sound", placeholder="glass shattering on concrete, close", help=QUERY_HELP)
        keywords = st.text_input("Keywords", placeholder="door -metal, gate", help=KEYWORD_HELP)
        upload_column, record_column = st.columns(2)
        upload = upload_column.file_uploader(
            "…or search by example", type=[suffix.lstrip(".") for suffix in AUDIO_EXTENSIONS],
            help=f"At most {MAX_UPLOAD_BYTES // 2**20} MB; the first {MAX_QUERY_SECONDS:.0f} s are used.",
        )
        recording = record_column.audio_input("…or record one", help=f"The first {MAX_QUERY_SECONDS:.0f} s are used.")
        submitted = st.form_submit_button("Search", type="primary")
    if submitted:
        state.search_for(build_query(text, upload, recording), keywords.strip())


def build_query(text: str, upload, recording) -> Query | None:
    """The description's terms plus any example clips, all added together."""
    terms = parse_query(text).terms
    for clip in (upload, recording):
        if clip is None:
            continue
        data = clip.getvalue()
        if len(data) > MAX_UPLOAD_BYTES:
            raise QueryError(
                f"the clip is {len(data) / 2**20:.1f} MB; query clips may be at most {MAX_UPLOAD_BYTES // 2**20} MB"
            )
        terms += Query.clip(data, clip.name).terms
    return Query(terms) if terms else None


def search_view(searcher: Searcher, options: sidebar.Options) -> None:
    try:
        query_form()
    except (QueryError, ValueError) as exc:
        show_error(sentence(exc))
        return
    if message := state.take_message():
        show_error(message)
    if not state.searched():
        return
    query, keywords = state.query(), state.keywords()
    if query is None and not keywords and not options.filters:
        st.info("Type a description or keywords, upload or record a clip, or choose filters first.")
        return
    if query is not None:
        st.markdown(f"Sounds like **{query}**" + (f", keywords `{keywords}`" if keywords else ""))
    try:
        found = searcher.search(
            query, filters=options.filters, keywords_text=keywords, keyword_weight=options.keyword_weight,
            page=state.page(), page_size=options.page_size, sort=options.sort,
        )
    except Exception as exc:  # noqa: BLE001 - the page shows sentences, never tracebacks
        log.warning("search failed: %s", exc, exc_info=not isinstance(exc, QueryError | PermissionError))
        show_error(sentence(exc))
        return
    results.render(searcher, found)


def main() -> None:
    st.set_page_config(page_title="clapdex", page_icon=":material/graphic_eq:", layout="wide")
    st.title("clapdex")
    st.caption("Describe a sound, or drop in an example, to find it in your library.")

    try:
        searcher = open_searcher()
        options = sidebar.read_options(searcher.library.facets(), searcher.settings.roots)
    except Exception as exc:  # noqa: BLE001 - the page shows sentences, never tracebacks
        log.error("the library could not be opened: %s", exc, exc_info=True)
        show_error(f"The library could not be opened: {exc}")
        st.stop()
    if searcher.library.notice:
        st.info(searcher.library.notice, icon=":material/info:")
    if problem := disagreement(searcher):
        st.warning(problem[:1].upper() + problem[1:] + ".", icon=":material/warning:")

    search_tab, library_tab, duplicates_tab = st.tabs(["Search", "Library", "Duplicates"])
    with search_tab:
        search_view(searcher, options)
    with library_tab:
        views.library(searcher.library)
    with duplicates_tab:
        views.duplicates(searcher.library)


main()
