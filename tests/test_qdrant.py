"""The Qdrant store through qdrant-client's local mode: the same calls as FAISS, plus the files'
metadata as payload, kept in sync, and filters applied inside the search."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sounds import sox_tone
from libraries import index_into

from search.catalog import Catalog
from search.config import ConfigError, load_settings
from search.filters import Filters
from search.qdrant_store import QdrantStore, QdrantURL, parse_qdrant_url
from search.store import open_store


def unit_rows(count, dim=8, seed=0):
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_urls_name_a_server_or_a_local_folder():
    assert parse_qdrant_url("qdrant://127.0.0.1:6333") == QdrantURL({"host": "127.0.0.1", "port": 6333}, "clapdex", {})
    assert parse_qdrant_url("qdrant://db.example/sfx") == QdrantURL({"host": "db.example", "port": 6333}, "sfx", {})
    assert parse_qdrant_url("qdrant+local:///srv/q#lib") == QdrantURL({"path": "/srv/q"}, "lib", {})
    with pytest.raises(ConfigError, match="names its server"):
        parse_qdrant_url("qdrant://")
    for port in ("0", "65536", "http"):
        with pytest.raises(ConfigError, match="port"):
            parse_qdrant_url(f"qdrant://db.example:{port}")


def test_store_calls_behave_like_faiss_and_persist(tmp_path):
    url = f"qdrant+local://{tmp_path / 'qdrant'}"
    store = QdrantStore(url, 8)
    vectors = unit_rows(5)
    store.add(np.array([10, 11, 12, 13, 14]), vectors)

    scores, ids = store.search(vectors[[3, 1]], 3)
    assert ids.shape == (2, 3) and ids[0, 0] == 13 and ids[1, 0] == 11
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5) and np.all(np.diff(scores, axis=1) <= 0)
    assert store.search(vectors[[0]], 5, allowed_ids=np.array([12, 14]))[1].tolist() in ([[12, 14]], [[14, 12]])
    assert store.search(vectors[[0]], 5, allowed_ids=np.array([], np.int64))[1].shape == (1, 0)
    assert np.allclose(store.reconstruct(np.array([12, 10])), vectors[[2, 0]], atol=1e-6)
    assert store.remove(np.array([11, 99])) == 1
    store.save()
    store.close()

    reopened = QdrantStore(url, 8)
    assert len(reopened) == 4 and reopened.ids().tolist() == [10, 12, 13, 14]
    reopened.close()
    with pytest.raises(ConfigError, match="8-dim"):
        QdrantStore(url, 16)


def test_index_keeps_payload_in_sync_and_filters_run_inside_qdrant(tmp_path, tiny_encoder):
    sounds = tmp_path / "sounds"
    (sounds / "doors").mkdir(parents=True)
    sox_tone(sounds / "doors" / "DOORWood_Creak_JD_Lib.wav", 2, rate=48000, tone="square 300")
    sox_tone(sounds / "hum.flac", 2, channels=2, tone="sine 60")
    sox_tone(sounds / "long.wav", 9, tone="sine 900")
    settings = load_settings(tmp_path / "home", store=f"qdrant+local://{tmp_path / 'qdrant'}", batch_size=4)
    index_into(settings, [sounds], tiny_encoder)

    store = open_store(settings, tiny_encoder.dim)
    assert isinstance(store, QdrantStore)
    query = tiny_encoder.embed_text(["a door"])

    def found(filters: Filters) -> set[str]:
        _, ids = store.search(query, 20, filters=filters)
        return {store.payload(i)["path"].removeprefix(str(sounds) + os.sep) for i in ids[0]}

    with Catalog(settings.catalog_url) as catalog:
        assert store.ids().tolist() == sorted(catalog.window_ids())
        door = catalog.file(str(sounds / "doors" / "DOORWood_Creak_JD_Lib.wav"))
        assert store.payload(door.windows[0].id)["categories"] == ["DOOR", "DOORWood"]
    everything = {"doors/DOORWood_Creak_JD_Lib.wav", "hum.flac", "long.wav"}
    assert found(Filters()) == everything
    for named in ("DOOR", "DOORS", "doors", "DOORWood"):  # prefix, category name, whole CatID
        assert found(Filters(categories=(named,))) == {"doors/DOORWood_Creak_JD_Lib.wav"}, named
    assert found(Filters(categories=("WOOD",))) == set()
    assert found(Filters(formats=("flac",))) == {"hum.flac"}
    assert found(Filters(channels=(2,))) == {"hum.flac"}
    assert found(Filters(sample_rates=(44100,), min_duration=5.0)) == {"long.wav"}
    assert found(Filters(folders=(str(sounds / "doors"),))) == {"doors/DOORWood_Creak_JD_Lib.wav"}
    assert found(Filters(folders=(str(sounds),))) == everything
    # Same answer as the catalog's SQL for the same filters.
    with Catalog(settings.catalog_url) as catalog:
        for filters in (Filters(max_duration=3.0), Filters(formats=("wav",), channels=(1,))):
            _, ids = store.search(query, 20, filters=filters)
            assert sorted(ids[0].tolist()) == catalog.window_ids_matching(filters).tolist()

    os.rename(sounds / "hum.flac", sounds / "doors" / "hum.flac")  # payload follows the move
    store.close()  # local mode: one client at a time
    report = index_into(settings, [sounds], tiny_encoder)
    assert (report.moved, report.indexed) == (1, 0)
    store = open_store(settings, tiny_encoder.dim)
    assert found(Filters(folders=(str(sounds / "doors"),))) == {"doors/DOORWood_Creak_JD_Lib.wav", "doors/hum.flac"}
    store.close()
