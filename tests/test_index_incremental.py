"""Re-running the indexer: only what changed is processed; moves keep their vectors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from sounds import sox_tone
from libraries import index_into

import indexer.pipeline
from search.catalog import INDEXED, PENDING, Catalog
from search.config import load_settings
from search.store import open_store


@pytest.fixture
def library(tmp_path):
    sounds = tmp_path / "sounds"
    (sounds / "sub").mkdir(parents=True)
    sox_tone(sounds / "a.wav", 2, tone="sine 300")
    sox_tone(sounds / "sub" / "b.flac", 9, tone="square 500")  # three windows at a 3.5 s hop
    sox_tone(sounds / "c.wav", 1, tone="sawtooth 800")
    return sounds


@pytest.fixture(params=[indexer.pipeline.SCAN_BATCH, 2])
def scan_batch(request, monkeypatch):
    """The scan's batch size: one batch read in this process, or several read by worker processes."""
    monkeypatch.setattr(indexer.pipeline, "SCAN_BATCH", request.param)
    return request.param


def state(settings, dim):
    """path -> (status, windows, their vectors), and whether catalog and store agree."""
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, dim)
        assert sorted(store.ids()) == sorted(catalog.window_ids())
        return {
            record.path: (record.status, [(w.id, w.start, w.end) for w in record.windows],
                          store.reconstruct(np.array([w.id for w in record.windows], dtype=np.int64)))
            for record in catalog.files()
        }


def test_unchanged_touched_moved_changed_and_deleted_files(library, tmp_path, tiny_encoder, scan_batch):
    settings = load_settings(tmp_path / "home", batch_size=4)
    first = index_into(settings, [library], tiny_encoder)
    assert (first.indexed, first.unchanged) == (3, 0)
    before = state(settings, tiny_encoder.dim)
    assert [span[1:] for span in before[str(library / "sub" / "b.flac")][1]] == [(0.0, 7.0), (2.0, 9.0)]

    os.utime(library / "a.wav", (12345, 12345))  # touched: same bytes, new mtime
    os.rename(library / "sub" / "b.flac", library / "b-renamed.flac")  # moved and renamed
    (library / "c.wav").unlink()  # deleted
    sox_tone(library / "d.wav", 3, tone="sine 1200")  # new
    seen = []
    second = index_into(settings, [library], tiny_encoder, progress=lambda path, outcome: seen.append(outcome))

    assert (second.indexed, second.unchanged, second.moved, second.removed) == (1, 1, 1, 1)
    assert sorted(seen) == sorted(["unchanged", "moved", "pending", "indexed"])
    after = state(settings, tiny_encoder.dim)
    assert sorted(after) == sorted(str(library / name) for name in ("a.wav", "b-renamed.flac", "d.wav"))
    # The moved file keeps its windows, ids and vectors: nothing was embedded again.
    assert after[str(library / "b-renamed.flac")][1] == before[str(library / "sub" / "b.flac")][1]
    assert np.array_equal(after[str(library / "b-renamed.flac")][2], before[str(library / "sub" / "b.flac")][2])
    assert after[str(library / "a.wav")][1] == before[str(library / "a.wav")][1]
    with Catalog(settings.catalog_url) as catalog:
        moved = catalog.file(str(library / "b-renamed.flac"))
        assert (moved.folder, moved.name, moved.status) == (str(library), "b-renamed.flac", INDEXED)
        assert catalog.file(str(library / "a.wav")).mtime == 12345

    sox_tone(library / "a.wav", 2, tone="sine 600")  # same name, new sound
    third = index_into(settings, [library], tiny_encoder)
    assert (third.indexed, third.unchanged) == (1, 2)
    final = state(settings, tiny_encoder.dim)
    assert not np.allclose(final[str(library / "a.wav")][2], after[str(library / "a.wav")][2], atol=1e-3)


def test_a_moved_file_is_moved_once_however_many_copies_appear(library, tmp_path, tiny_encoder, scan_batch):
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [library], tiny_encoder)
    before = state(settings, tiny_encoder.dim)
    os.rename(library / "sub" / "b.flac", library / "sub" / "b1.flac")
    for name in ("b2.flac", "b3.flac"):
        shutil.copy2(library / "sub" / "b1.flac", library / "sub" / name)

    report = index_into(settings, [library], tiny_encoder)

    assert (report.moved, report.indexed, report.unchanged) == (1, 2, 2)
    after = state(settings, tiny_encoder.dim)
    assert after[str(library / "sub" / "b1.flac")][1] == before[str(library / "sub" / "b.flac")][1]
    assert {after[str(library / "sub" / name)][0] for name in ("b2.flac", "b3.flac")} == {INDEXED}


def test_a_copy_is_indexed_as_its_own_file(library, tmp_path, tiny_encoder):
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [library], tiny_encoder)
    shutil.copy2(library / "a.wav", library / "a-copy.wav")

    report = index_into(settings, [library], tiny_encoder)

    assert (report.indexed, report.moved) == (1, 0)
    current = state(settings, tiny_encoder.dim)
    assert np.allclose(current[str(library / "a-copy.wav")][2], current[str(library / "a.wav")][2], atol=1e-5)


def test_the_scan_catalogues_pending_files_with_metadata_before_embedding(library, tmp_path, tiny_encoder):
    """Phase one alone (the embedding interrupted at once) leaves every file findable by metadata."""
    settings = load_settings(tmp_path / "home", batch_size=4)

    def stop_at_first_embedding(path, outcome):
        if outcome == "indexed":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_into(settings, [library], tiny_encoder, progress=stop_at_first_embedding)

    with Catalog(settings.catalog_url) as catalog:
        records = {record.name: record for record in catalog.files()}
        assert set(records) == {"a.wav", "b.flac", "c.wav"}
        assert {record.status for record in records.values()} == {PENDING}
        assert (records["b.flac"].duration, records["b.flac"].format, records["b.flac"].sample_rate) == (9.0, "flac", 44100)
        assert catalog.window_ids() == []

    resumed = index_into(settings, [library], tiny_encoder)
    assert (resumed.indexed, resumed.unchanged) == (3, 0)  # each file counted once


def test_files_windowed_with_another_hop_are_embedded_again(library, tmp_path, tiny_encoder):
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [library], tiny_encoder)
    with Catalog(settings.catalog_url) as catalog:
        catalog.file(str(library / "sub" / "b.flac")).hop = 7.0  # as an index built with another hop
        catalog.commit()

    report = index_into(settings, [library], tiny_encoder)

    assert (report.indexed, report.unchanged) == (1, 2)
    with Catalog(settings.catalog_url) as catalog:
        assert catalog.file(str(library / "sub" / "b.flac")).hop == 3.5
    state(settings, tiny_encoder.dim)
