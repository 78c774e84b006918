"""`clapdex search` and `similar` with the page's filters, keywords, arithmetic and time ranges."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sounds import build_library, sox_tone
from test_cli import clapdex


@pytest.fixture(scope="module")
def indexed_home(tmp_path_factory, tiny_weights):
    library = build_library(tmp_path_factory.mktemp("library") / "sounds")
    home = tmp_path_factory.mktemp("home")
    assert clapdex("index", str(library["tone"].parent), home=home, weights=tiny_weights).returncode == 0
    return home, library


def listed(result) -> list[str]:
    """The names of the hits printed; nothing found is exit status 1, as grep's."""
    names = [Path(hit["path"]).name for hit in json.loads(result.stdout)]
    assert result.returncode == (0 if names else 1), result.stderr
    assert ("clapdex: no files match" in result.stderr) == (not names)
    return names


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


@pytest.fixture(scope="module")
def awkward_home(tmp_path_factory, tiny_weights):
    """Real recordings under folders named like ESC-10's ("001 - Dog bark"), and UCS-named files."""
    from checkpoints import TEST_DATA

    library = tmp_path_factory.mktemp("awkward") / "esc"
    shutil.copytree(TEST_DATA / "esc10", library)
    sox_tone(library / "DOORWood_Creaky door slow_CLPX_Test.wav", 2, tone="sine 180")
    sox_tone(library / "GLASBreak_Bottle smash_CLPX_Test.wav", 2, tone="square 2500")
    sox_tone(library / "SWSH_Fast pass_CLPX_Test.wav", 1, tone="pinknoise")
    home = tmp_path_factory.mktemp("home")
    assert clapdex("index", str(library), home=home, weights=tiny_weights).returncode == 0
    return home, library


def test_a_quoted_path_with_dashes_and_spaces_is_a_sound(awkward_home, tiny_weights):
    home, library = awkward_home
    dog = library / "001 - Dog bark" / "1-100032-A.ogg"

    alone = clapdex("search", f'"{dog}"', "--top", "1", "--json", home=home, weights=tiny_weights)
    assert json.loads(alone.stdout)[0]["path"] == str(dog) and json.loads(alone.stdout)[0]["score"] > 0.999
    mixed = clapdex("search", f"rain + 2:'{dog}' - \"hiss - hum\"", "--json", home=home, weights=tiny_weights)
    assert mixed.returncode == 0 and json.loads(mixed.stdout)[0]["path"] == str(dog), mixed.stderr
    # Unquoted, the dashes are operators: the pieces name no file, and clapdex says so.
    split = clapdex("search", f"{dog}", "--json", home=home, weights=tiny_weights)
    assert split.returncode == 2 and "no such audio file" in split.stderr and "in quotes" in split.stderr


@pytest.mark.parametrize("value, expected", [
    ("DOORS", ["DOORWood_Creaky door slow_CLPX_Test.wav"]),  # the category's name
    ("doors", ["DOORWood_Creaky door slow_CLPX_Test.wav"]),
    ("DOOR", ["DOORWood_Creaky door slow_CLPX_Test.wav"]),  # the CatID's prefix
    ("DOORWood", ["DOORWood_Creaky door slow_CLPX_Test.wav"]),  # the whole CatID
    ("GLASS", ["GLASBreak_Bottle smash_CLPX_Test.wav"]),
    ("SWOOSHES", ["SWSH_Fast pass_CLPX_Test.wav"]),  # a category whose CatIDs have no subcategory
    ("WOOD", []),  # a category of its own, not DOORS' subcategory
])
def test_ucs_filters_take_the_category_name_the_catid_and_its_prefix(awkward_home, tiny_weights, value, expected):
    home, _ = awkward_home

    result = clapdex("search", "--category", value, "--json", home=home, weights=tiny_weights)

    assert listed(result) == expected
