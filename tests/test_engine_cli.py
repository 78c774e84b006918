"""`clapdex search` and `similar` with the page's filters, keywords, arithmetic and time ranges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sounds import build_library
from test_cli import clapdex


@pytest.fixture(scope="module")
def indexed_home(tmp_path_factory, tiny_weights):
    library = build_library(tmp_path_factory.mktemp("library") / "sounds")
    home = tmp_path_factory.mktemp("home")
    assert clapdex("index", str(library["tone"].parent), home=home, weights=tiny_weights).returncode == 0
    return home, library


def listed(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [Path(hit["path"]).name for hit in json.loads(result.stdout)]


def test_filters_keywords_and_arithmetic(indexed_home, tiny_weights):
    home, library = indexed_home

    result = clapdex(
        "search", f"tone + {library['tone']} - 0.5:noise", "--format", "wav", "--format", "flac",
        "--keywords", "sub -beep, long", "--keyword-weight", "1", "--sort", "name", "--json",
        home=home, weights=tiny_weights,
    )

    # Keywords alone rank at weight 1; within the wav/flac filter: long.wav, and stereo.flac (in sub/).
    assert listed(result) == ["long.wav", "stereo.flac"]


def test_similar_to_a_time_range(indexed_home, tiny_weights):
    home, library = indexed_home

    result = clapdex("similar", str(library["long"]), "--start", "0:07", "--end", "14", "--top", "1", "--json",
                     home=home, weights=tiny_weights)

    assert listed(result) == ["tone.wav"] and json.loads(result.stdout)[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_search_needs_something_to_look_for(indexed_home, tiny_weights):
    home, _ = indexed_home

    result = clapdex("search", home=home, weights=tiny_weights)
    assert result.returncode == 2 and "give a description" in result.stderr and "Traceback" not in result.stderr
