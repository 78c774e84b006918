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
from search.query import QueryError, parse_query
from ui import FAVICON, MAX_QUERY_SECONDS, MAX_UPLOAD_BYTES, gate, results, sidebar, state, views

VIEWS = ("Search", "Library", "Duplicates")

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
        searcher = Searcher(library, library_only=True, max_clip_seconds=MAX_QUERY_SECONDS)
        searcher.calibration()  # loads the model too
        library.warm()  # the Library and Duplicates views' first opening, computed meanwhile
    except BaseException:
        library.close()
        raise
    return searcher


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
    with st.form("query", border=False):
        text, words, go = st.columns([6, 3, 1], vertical_alignment="bottom")
        text.text_input("Describe the sound", key=state.QUERY_BOX, placeholder="glass shattering on concrete, close",
                        help=QUERY_HELP)
        words.text_input("Keywords", key=state.KEYWORDS_BOX, placeholder="door -metal, gate", help=KEYWORD_HELP)
        go.form_submit_button("Search", type="primary", on_click=submit, width="stretch")
    example, chip = st.columns([1, 4], vertical_alignment="center")
    with example.popover("Search by example", icon=":material/graphic_eq:", width="stretch"):
        number = state.clip_widgets()
        st.file_uploader(
            "Drop in a clip", type=[suffix.lstrip(".") for suffix in AUDIO_EXTENSIONS], key=f"upload-{number}",
            on_change=attach, args=(f"upload-{number}",),
            help=f"At most {MAX_UPLOAD_BYTES // 2**20} MB; the first {MAX_QUERY_SECONDS:.0f} s are used.",
        )
        st.audio_input("…or record one", key=f"record-{number}", on_change=attach, args=(f"record-{number}",),
                       help=f"The first {MAX_QUERY_SECONDS:.0f} s are used.")
    if attached := state.clip():
        chip.button(
            attached.name, icon=":material/close:", on_click=state.detach_clip, key="clip-chip",
            help="This clip is part of the search; click to remove it.",
        )


def submit() -> None:
    """The form's Search: the boxes' text, parsed, plus any attached clip."""
    text, words = st.session_state[state.QUERY_BOX].strip(), st.session_state[state.KEYWORDS_BOX].strip()
    current = state.query()
    try:
        # Unchanged text keeps the query it shows ("More like this" leaves its own file out).
        query = current if current is not None and text == current.as_typed() else parse_query(text)
    except QueryError as exc:
        state.report(sentence(exc))
        return
    state.search_for(query or None, words)


def attach(widget: str) -> None:
    clip = st.session_state.get(widget)
    if clip is None:
        return
    data = clip.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        state.report(f"The clip is {len(data) / 2**20:.1f} MB; query clips may be at most "
                     f"{MAX_UPLOAD_BYTES // 2**20} MB.")
        return
    state.attach_clip(data, clip.name)


def search_view(searcher: Searcher) -> None:
    # The filters' choices: kept by the library until an index run changes the catalog.
    options = sidebar.read_options(searcher.library.facets())
    query_form()
    if message := state.take_message():
        show_error(message)
    if not state.searched():
        return
    query, keywords = state.full_query(), state.keywords()
    if query is None and not keywords and not options.filters:
        st.info("Type a description or keywords, add a clip, or choose filters first.")
        return
    try:
        found = searcher.search(
            query, filters=options.filters, keywords_text=keywords, keyword_weight=options.keyword_weight,
            page=state.page(), page_size=options.page_size, sort=options.sort,
        )
    except Exception as exc:  # noqa: BLE001 - the page shows sentences, never tracebacks
        log.warning("search failed: %s", exc, exc_info=not isinstance(exc, QueryError | PermissionError))
        show_error(sentence(exc))
        return
    results.render(found, query, keywords, options, searcher.library)


def main() -> None:
    # A file of our own: a Material icon name would make every browser fetch it from Google.
    st.set_page_config(page_title="clapdex", page_icon=str(FAVICON), layout="wide")
    # Streamlit leaves 6 rem above the page; its toolbar needs less than 4, and results use the rest.
    st.html("<style>.stMainBlockContainer { padding-top: 3.5rem; }</style>")
    visitor = gate.visitor()  # where visitors sign in, nothing below runs for one who has not
    title, views_column, *signed_in = st.columns([2.4, 2, 1.6] if visitor else [3, 2], vertical_alignment="bottom")
    title.markdown("### clapdex")
    title.caption("Describe a sound, or drop in an example, to find it in your library.")
    view = views_column.segmented_control(
        "View", VIEWS, default=VIEWS[0], key="view", label_visibility="collapsed", required=True,
    )
    if visitor:
        with signed_in[0]:
            gate.show(visitor)

    try:
        searcher = open_searcher()
    except Exception as exc:  # noqa: BLE001 - the page shows sentences, never tracebacks
        log.error("the library could not be opened: %s", exc, exc_info=True)
        show_error(f"The library could not be opened: {exc}")
        st.stop()
    if searcher.library.notice:
        st.info(searcher.library.notice, icon=":material/info:")
    if problem := disagreement(searcher):
        st.warning(problem[:1].upper() + problem[1:] + ".", icon=":material/warning:")

    # Only the view on screen computes: the Duplicates pass never runs for a search.
    if view == "Library":
        views.library(searcher.library)
    elif view == "Duplicates":
        views.duplicates(searcher.library)
    else:
        search_view(searcher)


main()
