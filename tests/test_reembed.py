"""`clapdex index --reembed`: a library indexed with other weights, or another model (an older
clapdex's shipped model), is embedded again in place, keeping its catalog: the result is the
index a new home would get from the same files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from checkpoints import write_tiny_msclap_checkpoint
from sounds import build_library

from encoders import load_encoder
from search import duplicates
from search.catalog import INDEXED, Catalog, ModelIdentity, ModelMismatchError
from search.config import load_settings
from search.library import SHIPPED_MODEL, STORE_CHECK_SECONDS, Library, ModelReplaced
from search.store import open_store

CLAPDEX = Path(sys.executable).with_name("clapdex")


def clapdex(home: Path, *args: str, store: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("CLAPDEX_WEIGHTS", None)
    options = ["--home", str(home), "--device", "cpu"] + (["--store", store] if store else [])
    return subprocess.run([str(CLAPDEX), *options, *args], capture_output=True, text=True, env=env, timeout=300)


def vectors_by_window(home: Path, store: str | None = None) -> dict[tuple[str, float], np.ndarray]:
    """(path, start) -> the window's vector, and the catalog's model, as a fresh reader sees them."""
    settings = load_settings(home, **({"store": store} if store else {}))
    with Catalog(settings.catalog_url) as catalog:
        dim = catalog.model().dim
        windows = {(record.path, window.start): window.id
                   for record in catalog.files(INDEXED) for window in record.windows}
    opened = open_store(settings, dim)
    try:
        ids = np.array(list(windows.values()), np.int64)
        return dict(zip(windows, opened.reconstruct(ids))) if len(ids) else {}
    finally:
        opened.close()


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    return build_library(tmp_path_factory.mktemp("library") / "sounds")["tone"].parent


@pytest.fixture(scope="module")
def new_weights(tmp_path_factory):
    return write_tiny_msclap_checkpoint(tmp_path_factory.mktemp("new-weights"), seed=1)


def test_other_weights_are_refused_then_reembedded_in_place(tmp_path, sounds, tiny_weights, new_weights):
    home, fresh = tmp_path / "home", tmp_path / "fresh"
    assert clapdex(home, "--weights", str(tiny_weights), "index", str(sounds)).returncode == 0
    assert clapdex(fresh, "--weights", str(new_weights), "index", str(sounds)).returncode == 0

    refused = clapdex(home, "--weights", str(new_weights), "search", "rain")
    assert refused.returncode == 3
    assert "clapdex index --reembed" in refused.stderr and "Traceback" not in refused.stderr

    again = clapdex(home, "--weights", str(new_weights), "index", "--reembed")

    assert again.returncode == 0, again.stderr
    assert "embedding all 7 files again, with msclap-2023" in again.stderr
    assert "7 indexed, 0 skipped unchanged" in again.stdout
    reembedded, expected = vectors_by_window(home), vectors_by_window(fresh)
    assert reembedded.keys() == expected.keys()
    for window, vector in expected.items():
        np.testing.assert_allclose(reembedded[window], vector, atol=1e-5)
    doctor = clapdex(home, "--weights", str(new_weights), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert clapdex(home, "--weights", str(new_weights), "search", "rain").returncode == 0
    assert clapdex(home, "--weights", str(tiny_weights), "search", "rain").returncode == 3
    # The same weights again: nothing to do.
    same = clapdex(home, "--weights", str(new_weights), "index", "--reembed")
    assert same.returncode == 0 and "0 indexed, 0 skipped unchanged" in same.stdout, same.stderr


@pytest.mark.parametrize("store", ["faiss", "qdrant"])
def test_another_model_with_another_dimension_and_kept_near_duplicates(tmp_path, sounds, tiny_weights, store):
    home = tmp_path / "home"
    url = f"qdrant+local://{tmp_path / 'qdrant'}" if store == "qdrant" else None
    assert clapdex(home, "--weights", str(tiny_weights), "index", str(sounds), store=url).returncode == 0
    kept = clapdex(home, "duplicates", store=url)
    assert kept.returncode == 0, kept.stderr

    again = clapdex(home, "--model", SHIPPED_MODEL, "index", "--reembed", store=url)

    assert again.returncode == 0, again.stderr
    assert "7 indexed" in again.stdout and "near duplicates brought up to date in" in again.stdout
    settings = load_settings(home, **({"store": url} if url else {}))
    with Catalog(settings.catalog_url) as catalog:
        model = catalog.model()
        assert model.name == SHIPPED_MODEL
        now = duplicates.kept(catalog)
        opened = open_store(settings, model.dim)
        try:
            assert len(opened) == catalog.counts()["windows"]
            assert now.current and now.pairs == duplicates.near_duplicates(catalog, opened)
        finally:
            opened.close()
    hits = clapdex(home, "search", "rain", "--json", store=url)
    assert hits.returncode == 0, hits.stderr


def test_a_run_killed_after_the_change_is_finished_by_any_index_run(tmp_path, sounds, tiny_weights, new_weights):
    home = tmp_path / "home"
    assert clapdex(home, "--weights", str(tiny_weights), "index", str(sounds)).returncode == 0
    settings = load_settings(home)
    # What a kill right after the change leaves: the new model named, no vector, every file waiting.
    with Library(settings, create=True, reembed=True,
                 encoder=load_encoder("msclap-2023", weights=new_weights, device="cpu")):
        pass
    with Catalog(settings.catalog_url) as catalog:
        assert catalog.counts()["pending"] == 7 and catalog.counts()["windows"] == 0

    # Any folder, even one with none of the files: the waiting files are embedded too.
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    finished = clapdex(home, "--weights", str(new_weights), "index", str(elsewhere))

    assert finished.returncode == 0, finished.stderr
    assert "7 indexed" in finished.stdout
    assert len(vectors_by_window(home)) == 11


def test_a_file_moved_while_waiting_is_counted_once(tmp_path, tiny_weights, new_weights):
    library = build_library(tmp_path / "library" / "sounds")
    home = tmp_path / "home"
    assert clapdex(home, "--weights", str(tiny_weights), "index", str(tmp_path / "library")).returncode == 0
    settings = load_settings(home)
    with Library(settings, create=True, reembed=True,
                 encoder=load_encoder("msclap-2023", weights=new_weights, device="cpu")):
        pass
    (library["tone"].parent / "renamed").mkdir()
    library["tone"].rename(library["tone"].parent / "renamed" / library["tone"].name)

    finished = clapdex(home, "--weights", str(new_weights), "index", str(tmp_path / "library"))

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.startswith("7 indexed,") and ", 0 moved," in finished.stdout, finished.stdout
    assert len(vectors_by_window(home)) == 11


def test_reembed_mistakes_are_one_line(tmp_path):
    no_path = clapdex(tmp_path / "home", "index")
    assert no_path.returncode == 2 and "index needs a PATH" in no_path.stderr
    assert len(no_path.stderr.strip().splitlines()) == 1
    no_folders = clapdex(tmp_path / "home", "index", "--reembed", "--watch")
    assert no_folders.returncode == 2 and "--watch needs the folders to watch" in no_folders.stderr
    nothing = clapdex(tmp_path / "home", "index", "--reembed")
    assert nothing.returncode == 3 and "no index in" in nothing.stderr
    assert not (tmp_path / "home" / "catalog.sqlite").exists()


def test_a_running_server_refuses_to_search_once_the_library_is_embedded_again(tmp_path, sounds, tiny_weights,
                                                                                  new_weights):
    from test_serve import Api, answers, started_server

    home = tmp_path / "home"
    assert clapdex(home, "--weights", str(tiny_weights), "index", str(sounds)).returncode == 0
    key = clapdex(home, "keys", "add", "reader", "--role", "read").stdout.strip()
    server, url = started_server(home, tiny_weights, "--workers", "2")
    api = Api(url, {"reader": key}, {}, home)
    try:
        deadline = time.monotonic() + 120
        while not answers(api):
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.5)
        assert api.get("/v1/search?q=tone&top=3")[0] == 200

        assert clapdex(home, "--weights", str(new_weights), "index", "--reembed").returncode == 0

        deadline = time.monotonic() + 30
        while (answer := api.get("/v1/search?q=tone&top=3"))[0] == 200:
            assert time.monotonic() < deadline, "the server went on searching with the replaced model"
            time.sleep(0.5)
        status, body, _ = answer
        assert status == 503, body
        assert "restart it to search with the new model" in json.loads(body)["detail"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_reading_library_on_qdrant_notices_the_library_embedded_again(tmp_path, sounds, tiny_weights,
                                                                         new_weights):
    # A Qdrant collection is replaced in place, with no file to watch: the reader reads the
    # catalog's model, which `index --reembed` in another process (or on another host) changes.
    home, url = tmp_path / "home", f"qdrant+local://{tmp_path / 'qdrant'}"
    assert clapdex(home, "--weights", str(tiny_weights), "index", str(sounds), store=url).returncode == 0
    settings = load_settings(home, store=url)
    reader = Library(settings, encoder=load_encoder("msclap-2023", weights=tiny_weights, device="cpu"))
    try:
        reader.encoder
        assert len(reader.store) == 11
        time.sleep(STORE_CHECK_SECONDS + 0.1)
        assert len(reader.store) == 11  # looked again: the same model, so the same store

        newer = ModelIdentity.of(load_encoder("msclap-2023", weights=new_weights, device="cpu"))
        with Catalog(settings.catalog_url) as catalog:
            catalog.change_model(newer)
            catalog.commit()
        time.sleep(STORE_CHECK_SECONDS + 0.1)

        with pytest.raises(ModelReplaced, match="restart it to search with the new model"):
            reader.store
        with pytest.raises(ModelReplaced):  # and from then on, without looking
            reader.store
    finally:
        reader.close()


def test_a_model_mismatch_crosses_processes_whole():
    indexed = ModelIdentity("msclap-2023", "a" * 16, 1024, "/w/old.pth", True)
    requested = ModelIdentity(SHIPPED_MODEL, "b" * 16, 512)
    error = pickle.loads(pickle.dumps(ModelMismatchError(indexed, requested)))
    assert (error.indexed, error.requested) == (indexed, requested)
    assert str(error) == str(ModelMismatchError(indexed, requested))
    replaced = pickle.loads(pickle.dumps(ModelReplaced(requested, indexed)))
    assert (replaced.loaded, replaced.indexed) == (requested, indexed)
    assert str(replaced) == str(ModelReplaced(requested, indexed))
