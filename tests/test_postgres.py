"""The whole index run and its queries with the catalog in a real PostgreSQL database."""

from __future__ import annotations

import os

import numpy as np
from sqlalchemy import select
from postgres import fresh_database
from sounds import sox_tone
from libraries import index_into, searching

from indexer.consistency import examine
from search.catalog import Catalog, File, Metadata, NewFile, file_conditions
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


def test_a_folders_files_are_read_from_the_paths_index_alone(tmp_path):
    # A folder filter's files come from the paths' index with their ids (a folder's files lie
    # one to a page at scale); a catalog made with the index before it gets it when opened for writing.
    url = fresh_database()
    with Catalog(url) as catalog:
        root = str(tmp_path / "library")
        paths = [f"{root}/{folder}/{number}.wav" for number in range(200) for folder in ("Rain", "Rain_Heavy", "Wind")]
        ids = dict(zip(paths, catalog.add_files([NewFile(path, root, 1, 1.0, None, Metadata()) for path in paths])))
        catalog.commit()
        with catalog.engine.begin() as connection:  # as a catalog made before
            connection.exec_driver_sql("DROP INDEX ix_files_path_pattern_id")
            connection.exec_driver_sql("CREATE INDEX ix_files_path_pattern ON files (path text_pattern_ops)")
    with Catalog(url) as catalog:
        with catalog.engine.begin() as connection:
            assert {name for name, in connection.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_files_path%%'")} == {"ix_files_path_pattern_id"}
        # "_" and "%" in a folder's name are themselves, not LIKE's wildcards.
        rain = sorted(ids[path] for path in paths if "/Rain/" in path)
        assert sorted(catalog.file_ids_matching(Filters(folders=(f"{root}/Rain",))).tolist()) == rain
        connection = catalog.session.connection()
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        query = select(File.__table__.c.id).where(*file_conditions(Filters(folders=(f"{root}/Rain_Heavy",))))
        sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        plan = "\n".join(row for row, in connection.exec_driver_sql("EXPLAIN " + sql.replace("%", "%%")))
        assert "Index Only Scan using ix_files_path_pattern_id" in plan, plan
