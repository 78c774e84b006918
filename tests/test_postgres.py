"""The whole index run and its queries with the catalog in a real PostgreSQL database."""

from __future__ import annotations

import os

import numpy as np
from postgres import fresh_database
from sounds import sox_tone
from libraries import index_into, searching

from indexer.consistency import examine
from search.catalog import Catalog
from search.config import load_settings
from search.filters import Filters
from search.query import Query
from search.store import open_store


def test_index_search_and_reindex_on_postgresql(tmp_path, tiny_encoder):
    sounds = tmp_path / "sounds"
    (sounds / "doors").mkdir(parents=True)
    sox_tone(sounds / "doors" / "DOORWood_Creak Slow_JD_Lib.wav", 11, tone="square 300")
    sox_tone(sounds / "hum.flac", 2, tone="sine 60")
    (sounds / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    settings = load_settings(tmp_path / "home", catalog=fresh_database(), batch_size=4)

    first = index_into(settings, [sounds], tiny_encoder)
    assert (first.indexed, len(first.errors)) == (2, 1)

    with Catalog(settings.catalog_url) as catalog:
        assert catalog.engine.dialect.name == "postgresql"
        door = catalog.file(str(sounds / "doors" / "DOORWood_Creak Slow_JD_Lib.wav"))
        assert (door.ucs_category, door.ucs_subcategory, door.format, len(door.windows)) == ("DOOR", "Wood", "wav", 3)
        assert len(catalog.window_ids_matching(Filters(categories=("DOOR",)))) == 3
        store = open_store(settings, tiny_encoder.dim)
        assert examine(catalog, store, full=True).healthy
    with searching(settings, encoder=tiny_encoder) as searcher:
        assert searcher.search(Query.sound(str(sounds / "hum.flac")), page_size=1).hits[0].path == str(door.path)

    os.rename(sounds / "hum.flac", sounds / "doors" / "hum.flac")
    second = index_into(settings, [sounds], tiny_encoder)
    assert (second.indexed, second.moved, second.unchanged) == (0, 1, 2)  # the door, and broken.wav, unreadable
    with Catalog(settings.catalog_url) as catalog:
        assert sorted(open_store(settings, tiny_encoder.dim).ids()) == sorted(catalog.window_ids())
        assert np.array_equal(catalog.window_ids_matching(Filters(folders=(str(sounds / "doors"),))),
                              np.array(sorted(catalog.window_ids())))
