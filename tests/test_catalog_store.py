"""The catalog (real SQLite) and the FAISS vector store, each on its own."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from search.catalog import ERROR, INDEXED, Catalog, ModelIdentity, ModelMismatchError
from search.config import load_settings
from search.store import FaissStore, open_store

MODEL = ModelIdentity("msclap-2023", "sha256:abc", 8)


@pytest.fixture
def catalog(tmp_path):
    with Catalog(f"sqlite:///{tmp_path / 'home' / 'catalog.sqlite'}") as opened:
        yield opened


def add_file(catalog, path, spans=((0.0, 7.0), (7.0, 14.0))):
    record = catalog.upsert_file(path, root="/lib", size=100, mtime=1.5)
    spans = catalog.replace_windows(record, spans, duration=14.0, sample_rate=44100, channels=2, codec="wav/pcm_16")
    return record, spans


def test_catalog_is_sqlite_in_wal_mode(catalog):
    assert catalog.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_files_get_windows_whose_ids_map_back_to_them(catalog):
    record, (removed, ids) = add_file(catalog, "/lib/a/dog.wav")
    catalog.commit()

    assert removed == [] and len(ids) == 2
    assert (record.folder, record.name, record.status) == ("/lib/a", "dog.wav", INDEXED)
    found = catalog.windows_by_id([ids[1], 999])
    assert list(found) == [ids[1]]
    assert (found[ids[1]].start, found[ids[1]].end, found[ids[1]].file.path) == (7.0, 14.0, "/lib/a/dog.wav")


def test_replacing_windows_never_reuses_ids(catalog):
    record, (_, first) = add_file(catalog, "/lib/dog.wav")
    catalog.commit()
    removed, second = catalog.replace_windows(record, [(0.0, 3.0)], duration=3.0, sample_rate=44100, channels=1, codec="x")
    catalog.commit()

    assert removed == first
    assert set(second).isdisjoint(first) and catalog.window_ids() == second


def test_errors_drop_windows_and_are_listed(catalog):
    record, (_, ids) = add_file(catalog, "/lib/dog.wav")
    add_file(catalog, "/lib/cat.wav")
    assert catalog.mark_error(record, "not readable as audio") == ids
    catalog.commit()

    assert [(f.path, f.status, f.error) for f in catalog.errors()] == [("/lib/dog.wav", ERROR, "not readable as audio")]
    assert catalog.counts() == {"pending": 0, "indexed": 1, "error": 1, "windows": 2}


def test_the_first_model_is_claimed_and_another_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    with Catalog(url) as catalog:
        catalog.check_model(MODEL)  # an empty index accepts any model
        catalog.claim_model(MODEL)
        catalog.commit()
    with Catalog(url) as catalog:
        assert catalog.model() == MODEL
        catalog.claim_model(MODEL)
        other = ModelIdentity("msclap-2023", "sha256:def", 8)
        with pytest.raises(ModelMismatchError, match="sha256:abc.*sha256:def"):
            catalog.check_model(other)


def unit_rows(count, dim=8, seed=0):
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_store_finds_vectors_by_cosine_under_their_ids(tmp_path):
    store = FaissStore(tmp_path / "windows.faiss", 8)
    vectors = unit_rows(5)
    store.add(np.array([10, 11, 12, 13, 14]), vectors)

    scores, ids = store.search(vectors[[3]], 10)

    assert ids.shape == (1, 5) and ids[0, 0] == 13 and scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(scores[0]) <= 0)
    assert np.allclose(store.reconstruct(np.array([12, 10])), vectors[[2, 0]])


def test_store_removes_saves_atomically_and_reloads(tmp_path):
    settings = load_settings(tmp_path / "home")
    store = open_store(settings, 8)
    store.add(np.arange(4), unit_rows(4))
    assert store.remove(np.array([1, 3, 99])) == 2
    store.save()

    reopened = open_store(settings, 8)
    assert len(reopened) == 2 and sorted(reopened.ids()) == [0, 2]
    assert [p.name for p in settings.vectors_dir.iterdir()] == ["windows.faiss"]  # no temp file left behind


def test_empty_store_searches_to_nothing(tmp_path):
    scores, ids = FaissStore(tmp_path / "windows.faiss", 8).search(unit_rows(2), 5)
    assert scores.shape == ids.shape == (2, 0)


def test_store_search_restricted_to_allowed_ids_still_fills_the_page(tmp_path):
    store = FaissStore(tmp_path / "windows.faiss", 8)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.add(np.arange(1000, 1200), vectors)
    allowed = np.arange(1000, 1200, 20)  # a selective filter: 10 of 200

    scores, ids = store.search(vectors[:2], 5, allowed_ids=allowed)
    assert ids.shape == (2, 5) and set(ids.ravel()) <= set(allowed)
    expected = np.argsort(-(vectors[allowed - 1000] @ vectors[:2].T), axis=0)[:5].T
    assert (ids == allowed[expected]).all()
    assert np.all(np.diff(scores, axis=1) <= 0)
    # Fewer allowed windows than asked for: all of them, no padding.
    assert store.search(vectors[:1], 50, allowed_ids=allowed)[1].shape == (1, 10)
    assert store.search(vectors[:1], 5, allowed_ids=np.array([], np.int64))[1].shape == (1, 0)
