"""Boolean keyword search over names and folders, in SQL, on a real SQLite catalog."""

from __future__ import annotations

import pytest

from search.catalog import INDEXED, Catalog, Metadata
from search.keyword import Keyword, parse_keywords

ROOT = "/library"
NAMES = {
    "doors/wood/DOORWood_creak_slow.wav": INDEXED,
    "doors/metal/DOORMetl_slam.wav": INDEXED,
    "doors/gate_latch.flac": INDEXED,
    "weather/rain_on_roof.wav": INDEXED,
    "weather/100%_wet_rain.wav": INDEXED,
    "weather/metal_door_in_rain.wav": INDEXED,
    "weather/door_broken.wav": "error",
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    with Catalog(f"sqlite:///{tmp_path_factory.mktemp('keywords') / 'catalog.sqlite'}") as opened:
        for relative, status in NAMES.items():
            record = opened.set_file(None, f"{ROOT}/{relative}", root=ROOT, size=1, mtime=0.0)
            record.status = status
        described = opened.set_file(None, f"{ROOT}/misc/take_04.wav", root=ROOT, size=1, mtime=0.0)
        opened.set_metadata(described, Metadata(
            description="Thunder clap, distant, rolling", tags=("Storm", "field recording"), ucs_category="AMBIENCE",
            ucs_cat_id="WEATHStorm", ucs_subcategory="Storm",
        ))
        described.status = INDEXED
        opened.commit()
        yield opened


def found(catalog, text: str) -> list[str]:
    ids = catalog.keyword_ranked(parse_keywords(text))
    return [catalog.file_by_id(file_id).path.removeprefix(ROOT + "/") for file_id in ids]


def test_syntax_space_and_comma_or_dash_not_quotes_phrase():
    query = parse_keywords('door -metal, "gate latch" , ')

    assert query.alternatives == ((Keyword("door"), Keyword("metal", negated=True)), (Keyword("gate latch"),))
    assert query.wanted == ("door", "gate latch")
    assert not parse_keywords("  , ")


def test_space_means_and(catalog):
    assert sorted(found(catalog, "rain metal")) == ["weather/metal_door_in_rain.wav"]


def test_comma_means_or_and_dash_means_not(catalog):
    assert sorted(found(catalog, "door -metal, gate")) == ["doors/gate_latch.flac", "doors/wood/DOORWood_creak_slow.wav"]


def test_folders_below_the_root_match_but_the_root_itself_does_not(catalog):
    assert sorted(found(catalog, "wood")) == ["doors/wood/DOORWood_creak_slow.wav"]
    assert found(catalog, "library") == []


def test_case_is_ignored_and_sql_wildcards_are_plain_characters(catalog):
    assert found(catalog, "DOORMETL") == ["doors/metal/DOORMetl_slam.wav"]
    assert found(catalog, "100%") == ["weather/100%_wet_rain.wav"]
    assert found(catalog, "_wet") == ["weather/100%_wet_rain.wav"]
    assert found(catalog, "'; drop table files; --") == []


def test_a_name_match_ranks_above_a_folder_match(catalog):
    # "door" is in these names, and only in the folder of gate_latch.flac.
    assert found(catalog, "door")[-1] == "doors/gate_latch.flac"


def test_only_indexed_files_are_found(catalog):
    assert "weather/door_broken.wav" not in found(catalog, "door")


@pytest.mark.parametrize("text", ["rolling thunder", "storm", '"field recording"', "ambience", "weathstorm"])
def test_descriptions_tags_and_ucs_categories_match(catalog, text):
    assert found(catalog, text) == ["misc/take_04.wav"]


def test_a_tag_excluded_removes_the_file(catalog):
    assert "misc/take_04.wav" not in found(catalog, "wav -storm")
    assert "misc/take_04.wav" in found(catalog, "wav -door")
