"""Metadata read during the scan: header, tags, BWF bext and iXML chunks, UCS names."""

from __future__ import annotations

import pytest
import soundfile
from sounds import append_riff_chunks, bext_chunk, esc10_clips, sox_tone, tagged
from libraries import index_into

from indexer.metadata import parse_ucs_name, read_metadata
from search.catalog import Catalog
from search.config import load_settings
from search.filters import Filters

IXML = b"""<?xml version="1.0" encoding="UTF-8"?>
<BWFXML><IXML_VERSION>1.5</IXML_VERSION><PROJECT>Harbour</PROJECT><SCENE>12A</SCENE><TAKE>3</TAKE>
<TAPE>DAY2</TAPE><NOTE>gulls over the pier</NOTE><USER><KEYWORDS>seagull, harbour</KEYWORDS></USER></BWFXML>"""


def test_bext_and_ixml_chunks_are_read_from_the_riff_file(tmp_path):
    path = sox_tone(tmp_path / "gulls.wav", 1, rate=48000, bits=24)
    append_riff_chunks(path, {b"bext": bext_chunk("Seagulls, close, windy", "Field Recorder X"), b"iXML": IXML})

    metadata = read_metadata(path)

    assert (metadata.description, metadata.originator) == ("Seagulls, close, windy", "Field Recorder X")
    assert (metadata.sample_rate, metadata.channels, metadata.bit_depth, metadata.duration) == (48000, 1, 24, 1.0)
    assert metadata.extra["ixml:project"] == "Harbour" and metadata.extra["ixml:take"] == "3"
    assert metadata.extra["bext:origination_date"] == "2024-05-01"
    assert set(metadata.tags) == {"seagull", "harbour"}


def test_ixml_note_describes_a_file_without_bext(tmp_path):
    path = append_riff_chunks(sox_tone(tmp_path / "x.wav", 0.5), {b"iXML": IXML})
    assert read_metadata(path).description == "gulls over the pier"


@pytest.mark.parametrize("name", ["tagged.mp3", "tagged.flac", "tagged.m4a", "tagged.ogg", "tagged.opus"])
def test_container_tags_are_read(tmp_path, name):
    path = tagged(tmp_path / name, 1, title="Metal Door Slam", artist="Foley Team", genre="Foley; Doors",
                  comment="heavy steel door, reverberant")

    metadata = read_metadata(path)

    assert metadata.title == "Metal Door Slam" and metadata.originator == "Foley Team"
    assert metadata.description == "heavy steel door, reverberant"
    assert set(metadata.tags) == {"Foley", "Doors"}
    assert metadata.sample_rate and metadata.duration == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("source", ["tagged", "esc10"])
def test_ogg_vorbis_header_is_what_libsndfile_says(tmp_path, source):
    # Read from mutagen's parse of the Vorbis headers, not libsndfile's open: the same numbers.
    if source == "tagged":
        path = tagged(tmp_path / "tone.ogg", 2.5, title="Tone")
    else:
        path = esc10_clips(1)[0]
    info = soundfile.info(str(path))

    metadata = read_metadata(path)

    assert (metadata.sample_rate, metadata.channels, metadata.codec, metadata.bit_depth) == (
        info.samplerate, info.channels, f"{info.format}/{info.subtype}".lower(), None)
    assert metadata.duration == info.frames / info.samplerate


def test_a_damaged_ogg_file_still_has_its_name_read(tmp_path):
    path = tmp_path / "DOORWood_Slam_JD_Lib.ogg"
    path.write_bytes(b"OggS" + bytes(200))

    metadata = read_metadata(path)

    assert metadata.sample_rate is None and metadata.ucs_category == "DOOR"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("DOORWood-Front_Door Creak Slow_JD_MyLib.wav", ("DOORWood", "DOOR", "Wood", "Front", "Door Creak Slow", "JD", "MyLib")),
        ("AMBForst_Birds Morning_ABC_Lib_take2.flac", ("AMBForst", "AMB", "Forst", "", "Birds Morning", "ABC", "Lib")),
        ("GUNAuto_Burst_XY_Z.mp3", ("GUNAuto", "GUN", "Auto", "", "Burst", "XY", "Z")),
    ],
)
def test_ucs_names_are_parsed(name, expected):
    parts = parse_ucs_name(name)
    assert tuple(parts[key] for key in ("cat_id", "category", "subcategory", "user_category", "fx_name",
                                        "creator_id", "source_id")) == expected


@pytest.mark.parametrize("name", ["dog_bark.wav", "door_creak_01_final.wav", "take 1.wav", "x__y_z.wav"])
def test_ordinary_names_are_not_ucs(name):
    assert parse_ucs_name(name) is None


def test_metadata_is_catalogued_and_filterable(tmp_path, tiny_encoder):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    append_riff_chunks(sox_tone(sounds / "BIRDSea_Gulls_FR_Harbour.wav", 1, rate=48000, bits=24),
                       {b"bext": bext_chunk("Seagulls, close", "Field Recorder X"), b"iXML": IXML})
    tagged(sounds / "slam.mp3", 1, title="Metal Door Slam", genre="Foley")
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [sounds], tiny_encoder)

    with Catalog(settings.catalog_url) as catalog:
        gulls = catalog.file(str(sounds / "BIRDSea_Gulls_FR_Harbour.wav"))
        assert (gulls.description, gulls.originator, gulls.ucs_category, gulls.ucs_subcategory) == (
            "Seagulls, close", "Field Recorder X", "BIRD", "Sea")
        assert (gulls.bit_depth, gulls.sample_rate, gulls.format, gulls.title) == (24, 48000, "wav", "Gulls")
        assert gulls.tags == ["harbour", "seagull"] and '"ixml:scene": "12A"' in gulls.extra
        slam = catalog.file(str(sounds / "slam.mp3"))
        assert (slam.title, slam.tags, slam.format) == ("Metal Door Slam", ["foley"], "mp3")
        assert catalog.window_ids_matching(Filters(tags=("seagull",))).tolist() == [w.id for w in gulls.windows]
        assert catalog.window_ids_matching(Filters(categories=("BIRD",), formats=("wav",))).tolist() == [
            w.id for w in gulls.windows]
