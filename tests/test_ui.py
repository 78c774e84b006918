"""The page's logic through Streamlit's AppTest, over a real indexed library."""

from __future__ import annotations

import pytest
import streamlit as st
from sounds import build_library
from streamlit.testing.v1 import AppTest

from indexer import index_paths
from search.config import load_settings
from ui import APP, MAX_UPLOAD_BYTES

TIMEOUT = 120  # the first run loads the model


@pytest.fixture(scope="module")
def library_home(tmp_path_factory, tiny_weights, tiny_encoder):
    library = build_library(tmp_path_factory.mktemp("ui-library") / "sounds")
    home = tmp_path_factory.mktemp("ui-home")
    index_paths(load_settings(home), [library["tone"].parent], encoder=tiny_encoder)
    return home, library


@pytest.fixture
def page(library_home, tiny_weights, monkeypatch):
    home, _ = library_home
    monkeypatch.setenv("CLAPDEX_HOME", str(home))
    monkeypatch.setenv("CLAPDEX_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("CLAPDEX_DEVICE", "cpu")
    st.cache_resource.clear()  # each test's page opens its own home
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    assert not app.exception
    return app


def players(app: AppTest):
    return [element.proto for element in app.get("audio")]


def results(app: AppTest) -> list[dict]:
    """One dict per listed file: its heading, caption, score and player, in page order."""
    captions = [caption.value for caption in app.caption if caption.value.startswith("best match")]
    return [
        {"heading": heading.value, "caption": caption, "score": float(metric.value), "player": player}
        for heading, caption, metric, player in zip(app.markdown, captions, app.metric, players(app), strict=True)
    ]


def test_text_query_lists_files_with_players_at_the_matched_time(page, library_home):
    page.text_input[0].input("a steady electronic tone")
    page.button[0].click()
    page.run()

    assert not page.exception and not page.error
    # Seven readable files in the library; all are listed, best first, each with a player.
    listed = results(page)
    scores = [result["score"] for result in listed]
    assert len(listed) == 7 and scores == sorted(scores, reverse=True)
    assert all(result["player"].url for result in listed)


def test_example_upload_finds_the_window_it_came_from(page, library_home):
    _, library = library_home
    page.file_uploader[0].set_value(("query.wav", library["tone"].read_bytes(), "audio/wav"))
    page.button[0].click()
    page.run()

    assert not page.exception and not page.error
    by_name = {result["heading"].split("**")[1].split(". ", 1)[1]: result for result in results(page)}
    # The clip itself, and long.wav whose second window is the clip sample for sample.
    assert by_name["tone.wav"]["score"] == pytest.approx(1.0, abs=1e-3)
    assert by_name["long.wav"]["score"] == pytest.approx(1.0, abs=1e-3)
    assert by_name["long.wav"]["caption"].startswith("best match 0:07.0–0:14.0")
    assert by_name["long.wav"]["player"].start_time == 7


def test_oversized_upload_is_refused_with_a_sentence(page):
    page.file_uploader[0].set_value(("big.wav", b"\0" * (MAX_UPLOAD_BYTES + 1), "audio/wav"))
    page.button[0].click()
    page.run()

    assert not page.exception
    assert "at most 20 MB" in page.error[0].value
    assert not players(page)


def test_unreadable_upload_is_an_error_sentence_not_a_traceback(page):
    page.file_uploader[0].set_value(("notes.wav", b"just some text", "audio/wav"))
    page.button[0].click()
    page.run()

    assert not page.exception
    assert "not readable as audio" in page.error[0].value or "Format not recognised" in page.error[0].value


def test_missing_library_is_reported_on_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAPDEX_HOME", str(tmp_path))
    monkeypatch.setenv("CLAPDEX_WEIGHTS", str(tmp_path / "nowhere.pth"))
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()

    assert not app.exception
    assert "could not be opened" in app.error[0].value
    assert "nowhere.pth" in app.error[0].value
