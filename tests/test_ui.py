"""The page's logic through Streamlit's AppTest, over a real indexed library."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import streamlit as st
from sounds import build_library, esc10_clips, sox_tone
from libraries import index_into
from streamlit.testing.v1 import AppTest

from search.config import load_settings
from ui import APP, MAX_UPLOAD_BYTES

TIMEOUT = 120  # the first run loads the model
READABLE = 7


@pytest.fixture(scope="module")
def library_home(tmp_path_factory, tiny_weights, tiny_encoder):
    library = build_library(tmp_path_factory.mktemp("ui-library") / "sounds")
    home = tmp_path_factory.mktemp("ui-home")
    index_into(load_settings(home), [library["tone"].parent], tiny_encoder)
    return home, library


@pytest.fixture(scope="module")
def opened_once(library_home, tiny_weights):
    """Open the home once per module: the cached searcher (and its model) serves every test."""
    home, _ = library_home
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLAPDEX_HOME", str(home))
        patch.setenv("CLAPDEX_WEIGHTS", str(tiny_weights))
        patch.setenv("CLAPDEX_DEVICE", "cpu")
        st.cache_resource.clear()
        yield
        st.cache_resource.clear()


@pytest.fixture
def page(opened_once):
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    assert not app.exception
    return app


def search(app: AppTest, text: str = "", keywords: str = "") -> AppTest:
    app.text_input[0].input(text)
    app.text_input[1].input(keywords)
    app.button[0].click()
    app.run()
    assert not app.exception
    return app


def results(app: AppTest) -> dict[str, dict]:
    """Per listed file name, in page order: its caption, score and player."""
    headings = [m.value for m in app.markdown if m.value.startswith("**") and "  \n`" in m.value]
    names = [heading.split("**")[1].split(". ", 1)[1] for heading in headings]
    captions = [c.value for c in app.caption if c.value.startswith(("best match", "segment"))]
    players = [element.proto for element in app.get("audio")]
    assert len(names) == len(captions) == len(players)
    scores = {}
    for metric in app.metric:
        if metric.label == "match":
            scores[len(scores)] = float(metric.value)
    return {
        name: {"rank": rank, "caption": caption, "score": scores.get(rank), "player": player}
        for rank, (name, caption, player) in enumerate(zip(names, captions, players))
    }


def click(app: AppTest, label: str, index: int = 0) -> AppTest:
    [button for button in app.button if button.label == label][index].click()
    app.run()
    assert not app.exception
    return app


def test_text_query_lists_files_with_players_of_the_matched_region(page):
    listed = results(search(page, "a steady electronic tone"))

    assert not page.error and len(listed) == READABLE
    scores = [entry["score"] for entry in listed.values()]
    assert scores == sorted(scores, reverse=True)
    assert all(entry["player"].url and entry["player"].end_time > entry["player"].start_time for entry in listed.values())
    assert len(page.get("image")) == READABLE  # a waveform each
    assert any("kHz" in caption.value and "WAV" in caption.value for caption in page.caption)


def test_example_upload_finds_the_window_it_came_from(page, library_home):
    _, library = library_home
    page.file_uploader[0].set_value(("query.wav", library["tone"].read_bytes(), "audio/wav"))
    listed = results(search(page))

    assert not page.error
    # The clip itself, and long.wav whose 7-14 s window is the clip sample for sample.
    assert listed["tone.wav"]["score"] == pytest.approx(1.0, abs=1e-3)
    assert listed["long.wav"]["score"] == pytest.approx(1.0, abs=1e-3)
    assert listed["long.wav"]["caption"].startswith("best match 0:07.0–0:14.0")
    assert (listed["long.wav"]["player"].start_time, listed["long.wav"]["player"].end_time) == (7, 14)


def test_more_like_this_leaves_out_its_own_file(page):
    listed = results(search(page, "a steady electronic tone"))
    click(page, "More like this", listed["tone.wav"]["rank"])

    again = results(page)
    assert "tone.wav" not in again and len(again) == READABLE - 1
    assert next(iter(again)) == "long.wav" and again["long.wav"]["score"] == pytest.approx(1.0, abs=1e-3)


def test_a_time_range_of_a_result_finds_the_file_holding_it(page):
    listed = results(search(page, "a steady electronic tone"))
    rank = listed["long.wav"]["rank"]
    page.text_input(key=f"from-{_file_id(page, rank)}").input("0:07")
    page.text_input(key=f"to-{_file_id(page, rank)}").input("14")
    click(page, "Find similar", rank)

    again = results(page)
    assert "long.wav" not in again
    assert next(iter(again)) == "tone.wav" and again["tone.wav"]["score"] == pytest.approx(1.0, abs=1e-3)
    assert any("Sounds like **long.wav 0:07.0–0:14.0**" in markdown.value for markdown in page.markdown)


def _file_id(app: AppTest, rank: int) -> str:
    keys = [button.key for button in app.button if button.key and button.key.startswith("more-")]
    return keys[rank].removeprefix("more-")


def test_a_sidebar_filter_applies_inside_the_search(page):
    page.sidebar.multiselect(key="formats").select("m4a")
    page.sidebar.selectbox(key="page_size").select(5)
    listed = results(search(page, "a steady electronic tone"))

    assert list(listed) == ["chirp.m4a"]


def test_keywords_with_boolean_syntax(page):
    assert sorted(results(search(page, keywords="beep, chirp"))) == ["beep.mp3", "chirp.m4a"]
    assert "beep.mp3" not in results(search(page, keywords="sub -beep"))


def test_pages_move_through_the_results(page):
    page.sidebar.selectbox(key="page_size").select(5)
    first = results(search(page, "a steady electronic tone"))
    second = results(click(page, "Next"))

    assert len(first) == 5 and len(second) == READABLE - 5 and not set(first) & set(second)
    assert any(caption.value == "page 2 of 2" for caption in page.caption)


def test_a_spectrogram_is_drawn_on_demand(page):
    search(page, "a steady electronic tone")
    page.toggle(key=[toggle.key for toggle in page.toggle][0]).set_value(True)
    page.run()

    assert len(page.get("image")) == READABLE + 1


def test_oversized_upload_is_refused_with_a_sentence(page):
    page.file_uploader[0].set_value(("big.wav", b"\0" * (MAX_UPLOAD_BYTES + 1), "audio/wav"))
    search(page)

    assert "at most 20 MB" in page.error[0].value
    assert not page.get("audio")


@pytest.mark.parametrize(("text", "expected"), [
    ("rain + nowhere.wav", "No file named nowhere.wav"),
    ("rain + /etc/passwd.wav", "not a file of this library"),
    ("- rain", "no term beside it"),
])
def test_query_mistakes_are_sentences(page, text, expected):
    search(page, text)

    assert expected in page.error[0].value and "Traceback" not in page.error[0].value


def test_unreadable_upload_is_an_error_sentence_not_a_traceback(page):
    page.file_uploader[0].set_value(("notes.wav", b"just some text", "audio/wav"))
    search(page)

    assert page.error[0].value.startswith("That clip could not be read")


def test_library_view_counts_files_segments_and_errors(page):
    metrics = {metric.label: metric.value for metric in page.metric}

    assert metrics["Files indexed"] == str(READABLE) and metrics["Unreadable files"] == "3"
    assert int(metrics["Segments"]) > READABLE  # long files have several
    assert len(page.dataframe[0].value) == 3


def opened_fresh(monkeypatch, home, weights) -> AppTest:
    """The page as a new server process would first draw it for ``home`` and ``weights``."""
    monkeypatch.setenv("CLAPDEX_HOME", str(home))
    monkeypatch.setenv("CLAPDEX_WEIGHTS", str(weights))
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    assert not app.exception
    return app


def test_missing_library_is_reported_on_the_page(tmp_path, monkeypatch):
    app = opened_fresh(monkeypatch, tmp_path, tmp_path / "nowhere.pth")

    assert app.error[0].value == f"The library could not be opened: no index in {tmp_path}; run `clapdex index " \
                                 "FOLDER` to make one"
    assert list(tmp_path.iterdir()) == []


def test_missing_weights_are_reported_on_the_page(library_home, tmp_path, monkeypatch):
    app = opened_fresh(monkeypatch, library_home[0], tmp_path / "nowhere.pth")

    assert "could not be opened" in app.error[0].value and "nowhere.pth" in app.error[0].value


@pytest.fixture(scope="module")
def duplicates_home(tmp_path_factory, tiny_weights, tiny_encoder):
    """A library holding a clip, a byte-for-byte copy of it and a quieter re-encode."""
    folder = tmp_path_factory.mktemp("dup-library")
    original = esc10_clips(1)[0]
    shutil.copyfile(original, folder / "original.ogg")
    shutil.copyfile(original, folder / "copy.ogg")
    subprocess.run(["sox", str(original), str(folder / "quieter.wav"), "gain", "-6"], check=True)
    sox_tone(folder / "tone.wav", 3)
    home = tmp_path_factory.mktemp("dup-home")
    index_into(load_settings(home), [folder], tiny_encoder)
    return home, folder


def test_duplicates_view_lists_identical_files_and_near_duplicates(duplicates_home, tiny_weights, monkeypatch):
    home, folder = duplicates_home
    monkeypatch.setenv("CLAPDEX_HOME", str(home))
    monkeypatch.setenv("CLAPDEX_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("CLAPDEX_DEVICE", "cpu")
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    similarity = next(slider for slider in app.slider if slider.label == "Similarity at least")
    similarity.set_value(0.995).run()
    st.cache_resource.clear()

    assert not app.exception
    assert any(m.value.startswith("**Group 1** · 2 copies") for m in app.markdown)
    assert {code.value for code in app.code} >= {str(folder / "original.ogg"), str(folder / "copy.ogg")}
    near = next(frame.value for frame in app.dataframe if "near duplicate" in frame.value.columns)
    pairs = {frozenset((row["file"], row["near duplicate"])) for _, row in near.iterrows()}
    # The re-encode pairs with the original (and so with its copy); the tone with nothing.
    assert frozenset((str(folder / "original.ogg"), str(folder / "quieter.wav"))) in pairs
    assert all(str(folder / "tone.wav") not in pair for pair in pairs)
