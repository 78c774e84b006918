"""The page's logic through Streamlit's AppTest, over a real indexed library."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from sounds import build_library, esc10_clips, sox_tone
from libraries import MADE_UP_LIST, index_into, write_list
from streamlit.testing.v1 import AppTest

from search.catalog import Catalog
from search import ucs
from search.config import load_settings
from ui import APP, MAX_UPLOAD_BYTES, views

TIMEOUT = 120  # the first run loads the model
CLAPDEX = Path(sys.executable).with_name("clapdex")
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
    app.text_input(key="query_text").input(text)
    app.text_input(key="keywords_text").input(keywords)
    app.button[0].click()
    app.run()
    assert not app.exception
    return app


def listed(app: AppTest, name: str = "hits") -> dict:
    """What the result list was given to draw: its heading and, per file name, its row."""
    for element in app.get("bidi_component"):
        if element.proto.component_name == "clapdex.hitlist" and element.proto.id.endswith(name):
            data = json.loads(element.proto.json)
            data["rows"] = {row["name"]: row for row in data["rows"]}
            return data
    return {"rows": {}}


def rows(app: AppTest) -> dict[str, dict]:
    return listed(app)["rows"]


def upload(app: AppTest, name: str, data: bytes) -> AppTest:
    uploader = next(widget for widget in app.get("file_uploader") if widget.key.startswith("upload-"))
    uploader.set_value((name, data, "audio/wav"))
    app.run()
    assert not app.exception
    return app


def test_text_query_lists_files_with_their_audio_and_waveforms(page):
    shown = rows(search(page, "a steady electronic tone"))

    assert not page.error and len(shown) == READABLE
    scores = [float(row["score"]) for row in shown.values()]
    assert scores == sorted(scores, reverse=True)
    for row in shown.values():
        assert row["audio"].startswith(f"/clapdex/audio/{row['id']}?v=")
        assert row["wave"].startswith(f"/clapdex/waveform/{row['id']}.png") and row["durationLabel"]
        assert row["match"] in ("strong", "fair", "weak")
    assert any("kHz" in row["meta"] and "WAV" in row["meta"] for row in shown.values())


def test_example_upload_is_a_chip_and_finds_the_window_it_came_from(page, library_home):
    _, library = library_home
    shown = rows(upload(page, "query.wav", library["tone"].read_bytes()))

    assert not page.error
    # The clip itself, and long.wav whose 7-14 s window is the clip sample for sample.
    assert float(shown["tone.wav"]["score"]) == pytest.approx(1.0, abs=1e-3)
    assert float(shown["long.wav"]["score"]) == pytest.approx(1.0, abs=1e-3)
    assert (shown["long.wav"]["start"], shown["long.wav"]["end"]) == (7, 14)
    assert shown["long.wav"]["regionLabel"] == "7.0–14.0 s"
    # The clip is a chip now, and the uploader is empty again.
    chip = next(button for button in page.button if button.key == "clip-chip")
    assert chip.label == "query.wav"
    assert all(widget.value is None for widget in page.get("file_uploader"))

    search(page, "a steady electronic tone")
    assert listed(page)["what"] == "Sounds like “a steady electronic tone + query.wav”"
    next(button for button in page.button if button.key == "clip-chip").click()
    page.run()
    assert listed(page)["what"] == "Sounds like “a steady electronic tone”"
    assert not any(button.key == "clip-chip" for button in page.button)


def test_a_typed_region_finds_the_file_holding_it(page, library_home):
    _, library = library_home
    search(page, f'"{library["long"]}@0:07-0:14"')

    shown = rows(page)
    # The file holding the region (at that window), and tone.wav, which is that region sample for sample.
    assert (shown["long.wav"]["start"], shown["long.wav"]["end"]) == (7, 14)
    assert float(shown["tone.wav"]["score"]) == pytest.approx(1.0, abs=1e-3)
    assert listed(page)["what"] == "Sounds like “long.wav 0:07.0–0:14.0”"
    # The box keeps the query as typed, so running it again runs the same thing.
    assert page.text_input(key="query_text").value == f'{library["long"]}@0:07.0-0:14.0'


def test_a_sidebar_filter_applies_inside_the_search(page):
    page.sidebar.multiselect(key="formats").select("m4a")
    page.sidebar.selectbox(key="page_size").select(5)

    assert list(rows(search(page, "a steady electronic tone"))) == ["chirp.m4a"]
    assert "M4A" in listed(page)["details"]


def test_the_duration_filter_is_on_a_log_scale(page):
    slider = page.sidebar.select_slider(key="duration")
    stops = slider.options
    assert stops[0] == "2.0 s" and "5.0 s" in stops and stops[-1] == "20.0 s"
    slider.set_range(2.0, 5).run()
    shown = rows(search(page, "a steady electronic tone"))

    assert shown and all(row["duration"] <= 5 for row in shown.values())


def test_keywords_with_boolean_syntax(page):
    assert sorted(rows(search(page, keywords="beep, chirp"))) == ["beep.mp3", "chirp.m4a"]
    assert "beep.mp3" not in rows(search(page, keywords="sub -beep"))


def test_pages_hold_the_rest_and_a_filter_goes_back_to_page_one(page):
    page.sidebar.selectbox(key="page_size").select(5)
    first = rows(search(page, "a steady electronic tone"))
    page.session_state["results_page"] = 1  # what the list's Next asks for (tested in the browser)
    page.run()
    second = listed(page)

    assert len(first) == 5 and len(second["rows"]) == READABLE - 5 and not set(first) & set(second["rows"])
    assert second["count"].endswith("page 2 of 2")
    page.sidebar.multiselect(key="channels").select(1).run()
    assert listed(page)["count"].endswith("page 1 of 1")


def test_oversized_upload_is_refused_with_a_sentence(page):
    upload(page, "big.wav", b"\0" * (MAX_UPLOAD_BYTES + 1))

    assert "at most 20 MB" in page.error[0].value
    assert not any(button.key == "clip-chip" for button in page.button)


@pytest.mark.parametrize(("text", "expected"), [
    ("rain + nowhere.wav", "No file named nowhere.wav"),
    ("rain + /etc/passwd.wav", "not a file of this library"),
    ("- rain", "no term beside it"),
])
def test_query_mistakes_are_sentences(page, text, expected):
    search(page, text)

    assert expected in page.error[0].value and "Traceback" not in page.error[0].value


def test_unreadable_upload_is_an_error_sentence_not_a_traceback(page):
    upload(page, "notes.wav", b"just some text")

    assert page.error[0].value.startswith("That clip could not be read")


def test_library_view_counts_files_segments_and_errors(page):
    page.get("button_group")[0].set_value("Library").run()
    metrics = {metric.label: metric.value for metric in page.metric}

    assert metrics["Files indexed"] == str(READABLE) and metrics["Unreadable files"] == "3"
    assert int(metrics["Segments"]) > READABLE  # long files have several
    assert len(page.dataframe[0].value) == 3
    assert not page.sidebar.children  # the search's filters are not shown where they do nothing


def test_library_view_names_a_library_folder_that_is_away(page, library_home, tmp_path):
    folder = library_home[1]["tone"].parent
    unplugged = shutil.move(folder, tmp_path / "unplugged")  # a disk not connected
    try:
        page.get("button_group")[0].set_value("Library").run()
        warnings = [warning.value for warning in page.warning]
        assert any(warning.startswith(f"Library folder not there: `{folder}` ({READABLE + 3} files kept)")
                   for warning in warnings), warnings
    finally:
        shutil.move(unplugged, folder)


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


def duplicates_page(home, tiny_weights, monkeypatch) -> AppTest:
    monkeypatch.setenv("CLAPDEX_HOME", str(home))
    monkeypatch.setenv("CLAPDEX_WEIGHTS", str(tiny_weights))
    monkeypatch.setenv("CLAPDEX_DEVICE", "cpu")
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    app.run()
    app.get("button_group")[0].set_value("Duplicates").run()
    next(slider for slider in app.slider if slider.key == "near_threshold").set_value(0.995).run()
    return app


def duplicate_groups(app: AppTest, folder) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for element in app.get("bidi_component"):
        for row in json.loads(element.proto.json)["rows"]:
            groups.setdefault(row["group"], set()).add(row["name"])
            assert row["folder"] == folder.name and row["audio"].startswith("/clapdex/audio/")
    return groups


def test_duplicates_view_looks_for_near_duplicates_in_the_background_when_asked(duplicates_home, tiny_weights,
                                                                                  monkeypatch):
    home, folder = duplicates_home
    app = duplicates_page(home, tiny_weights, monkeypatch)

    # Nothing kept: the identical files at once, and the offer to look for the rest.
    assert not app.exception
    assert list(duplicate_groups(app, folder).values()) == [{"original.ogg", "copy.ogg"}]
    assert "have not been looked for" in app.info[0].value
    app.button(key="near_start").click().run()
    for _ in range(120):  # the pass runs in a thread of the page's process; the view polls it
        if not app.get("progress"):
            break
        time.sleep(0.5)
        app.run()
    st.cache_resource.clear()

    assert not app.exception and not app.info and not app.warning
    groups = duplicate_groups(app, folder)
    # The copies first; the re-encode groups with the original (and so with its copy); the tone with nothing.
    assert list(groups.values())[0] == {"original.ogg", "copy.ogg"}
    assert any(names >= {"original.ogg", "quieter.wav"} for names in groups.values())
    assert all("tone.wav" not in names for names in groups.values())


def test_duplicates_view_reads_what_the_library_keeps_without_a_pass(duplicates_home, tiny_weights, monkeypatch,
                                                                       caplog):
    home, folder = duplicates_home
    command = subprocess.run([str(CLAPDEX), "--home", str(home), "--weights", str(tiny_weights), "duplicates"],
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert command.returncode == 0, command.stderr
    with Catalog(load_settings(home).catalog_url) as catalog:
        state = catalog.near_state()
    caplog.set_level(logging.INFO, logger="search.duplicates")

    app = duplicates_page(home, tiny_weights, monkeypatch)
    st.cache_resource.clear()

    assert not app.exception and not app.info and not app.warning and not app.get("progress")
    assert any(names >= {"original.ogg", "quieter.wav"} for names in duplicate_groups(app, folder).values())
    # No pass ran: none logged, and the catalog keeps the one the command made.
    assert not [record for record in caplog.records if record.name == "search.duplicates"]
    with Catalog(load_settings(home).catalog_url) as catalog:
        assert catalog.near_state() == state


def test_duplicates_view_lists_its_groups_a_page_at_a_time(duplicates_home, tiny_weights, monkeypatch):
    home, folder = duplicates_home
    command = subprocess.run([str(CLAPDEX), "--home", str(home), "--weights", str(tiny_weights), "duplicates",
                              "--threshold", "0.9"], capture_output=True, text=True, timeout=TIMEOUT)
    assert command.returncode == 0, command.stderr
    monkeypatch.setattr(views, "GROUPS_PER_PAGE", 1)
    app = duplicates_page(home, tiny_weights, monkeypatch)
    next(slider for slider in app.slider if slider.key == "near_threshold").set_value(0.9).run()
    st.cache_resource.clear()

    def shown() -> tuple[list[str], dict]:
        listed = json.loads(app.get("bidi_component")[0].proto.json)
        return sorted({row["group"] for row in listed["rows"]}), listed

    groups, listed = shown()
    assert not app.exception and len(groups) == 1 and groups[0].startswith("Group 1 · ")
    pages = listed["pages"]
    assert pages >= 2 and listed["page"] == 0 and app.metric[0].value == str(pages)
    app.session_state["duplicates_page"] = 1  # what the list's Next sets (ui.views._act)
    app.run()
    groups, listed = shown()
    assert listed["page"] == 1 and groups[0].startswith("Group 2 · ")
    next(slider for slider in app.slider if slider.key == "near_threshold").set_value(0.995).run()
    assert shown()[1]["page"] == 0  # another threshold: its first page


def test_suggested_categories_are_chips_and_an_accepted_one_is_marked(tmp_path, tiny_weights, tiny_encoder,
                                                                      monkeypatch):
    from indexer.tagging import tag_library
    from search.library import Library

    folder = tmp_path / "library"
    folder.mkdir()
    clip = esc10_clips(1)[0]
    shutil.copyfile(clip, folder / clip.name)
    sox_tone(folder / "tone.wav", 3)
    settings = load_settings(tmp_path / "home", weights=str(tiny_weights), device="cpu")
    index_into(settings, [folder], tiny_encoder)
    with Library(settings, encoder=tiny_encoder) as library:
        tag_library(library)
        record = library.catalog.file(str(folder / clip.name))
        suggested = [cat_id for cat_id, _ in library.catalog.suggestions_of([record.id])[record.id].ucs]
    monkeypatch.setenv("CLAPDEX_DEVICE", "cpu")
    app = opened_fresh(monkeypatch, tmp_path / "home", tiny_weights)

    chips = rows(search(app, "a recording"))[clip.name]["suggestions"]
    assert [chip["catId"] for chip in chips] == suggested and not any(chip["accepted"] for chip in chips)
    assert all(chip["label"].startswith(chip["catId"] + " ") and chip["label"].endswith("%") for chip in chips)
    assert chips[0]["title"].startswith("Suggested (") and "Click to accept" in chips[0]["title"]
    # Without a UCS list, categories: by their short form, named in full on hover.
    assert f"likely): {ucs.category_name(chips[0]['catId'])}. Click" in chips[0]["title"]
    assert "suggested tags: " in rows(app)[clip.name]["meta"]

    # Accepting is what the chip's click does (ui.results.act): only a CatID the file was offered.
    with Library(settings, encoder=tiny_encoder) as library:
        assert not library.accept_suggestion(record.id, "NOTACatID")
        assert library.accept_suggestion(record.id, suggested[1])
    chips = rows(search(app, "a recording"))[clip.name]["suggestions"]
    st.cache_resource.clear()
    assert [chip["accepted"] for chip in chips] == [False, True, False]
    assert chips[1]["title"].startswith("Accepted: ")

    # With the user's list (here from the environment, as `clapdex ui` passes it): its CatIDs,
    # and on hover the list's own words for them.
    listed = write_list(tmp_path / "ucs.csv")
    monkeypatch.setenv("CLAPDEX_UCS_LIST", str(listed))
    with Library(load_settings(tmp_path / "home", weights=str(tiny_weights), device="cpu"),
                 encoder=tiny_encoder) as library:
        assert tag_library(library).tagged == 2
    explained = {cat_id: f"{category} › {subcategory}: {explanation}"
                 for cat_id, category, subcategory, _, explanation, _ in MADE_UP_LIST}
    chips = rows(search(app, "a recording"))[clip.name]["suggestions"]
    assert len(chips) == 3 and all(chip["catId"] in explained for chip in chips)
    assert all(explained[chip["catId"]] in chip["title"] for chip in chips)
