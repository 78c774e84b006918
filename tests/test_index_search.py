"""Indexing a real library and querying it, end to end, with the tiny random checkpoint.

Random weights make semantic ranking meaningless, so these tests check what must hold for
any weights: a clip matches itself with cosine 1, hits point at the right window, nothing
is duplicated, bad files are reported and skipped.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
from checkpoints import write_tiny_msclap_checkpoint
from sounds import BAD, build_library, sox_tone
from libraries import index_into, searching

from encoders import load_encoder
from encoders.audio import load_audio
from search.catalog import ERROR, INDEXED, Catalog, ModelMismatchError
from search.config import load_settings
from search.library import Library
from search.query import Query
from search.store import open_store

GOOD = ("tone", "stereo", "mp3", "m4a", "long", "esc0", "esc1")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build_library(tmp_path_factory.mktemp("library") / "sounds")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, library, tiny_encoder):
    """A home with ``library`` indexed once, and that run's report."""
    settings = load_settings(tmp_path_factory.mktemp("home"), batch_size=4)
    report = index_into(settings, [library["tone"].parent], tiny_encoder)
    return settings, report


@pytest.fixture(scope="module")
def searcher(indexed, tiny_encoder):
    with searching(indexed[0], encoder=tiny_encoder) as opened:
        yield opened


def test_index_run_catalogs_good_files_and_reports_bad_ones(indexed, library, tiny_encoder):
    settings, report = indexed

    assert report.indexed == len(GOOD) and report.unchanged == 0
    assert sorted(path for path, _ in report.errors) == sorted(str(library[name]) for name in BAD)
    assert all(reason for _, reason in report.errors)
    with Catalog(settings.catalog_url) as catalog:
        assert catalog.counts() == {"pending": 0, "indexed": len(GOOD), "error": len(BAD), "windows": len(GOOD) + 4}
        assert {f.path for f in catalog.errors()} == {str(library[name]) for name in BAD}
        long = catalog.file(str(library["long"]))
        assert (long.status, long.duration, long.channels) == (INDEXED, 20.0, 1)
        # A 3.5 s hop, the last window aligned to the end.
        assert [(w.start, w.end) for w in long.windows] == [(0.0, 7.0), (3.5, 10.5), (7.0, 14.0), (10.5, 17.5), (13.0, 20.0)]
        assert catalog.model().weights_id == tiny_encoder.weights_id
        assert sorted(open_store(settings, tiny_encoder.dim).ids()) == sorted(catalog.window_ids())


def test_similar_finds_the_window_that_is_the_query_file(searcher, library):
    hits = searcher.search(Query.sound(str(library["tone"])), page_size=3).hits

    assert hits[0].path == str(library["long"])
    assert (hits[0].start, hits[0].end) == (7.0, 14.0)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert str(library["tone"]) not in [hit.path for hit in hits]


def test_audio_query_matches_itself_first(searcher, library, tmp_path):
    clip = tmp_path / "tone-22k.wav"  # at another rate: the searcher resamples
    soundfile.write(clip, load_audio(library["tone"], 22050), 22050)

    hits = searcher.search(Query.clip(clip.read_bytes(), clip.name), page_size=2).hits

    assert {hit.path for hit in hits} == {str(library["tone"]), str(library["long"])}
    assert all(hit.score == pytest.approx(1.0, abs=1e-3) for hit in hits)


def test_similar_decodes_a_file_outside_the_index(searcher, library, tmp_path):
    outside = sox_tone(tmp_path / "copy.wav", 7)  # the same tone as tone.wav, not indexed

    hits = searcher.search(Query.sound(str(outside)), page_size=2).hits

    assert {hit.path for hit in hits} == {str(library["tone"]), str(library["long"])}


def test_text_search_ranks_distinct_files_by_best_window(searcher):
    hits = searcher.search(Query.text("a dog barking in the rain"), page_size=5).hits

    assert len(hits) == 5 and len({hit.path for hit in hits}) == 5
    assert all(os.path.isabs(hit.path) for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(0 <= hit.start < hit.end <= hit.duration + 1e-6 for hit in hits)


def test_asking_for_more_files_than_indexed_returns_every_file(searcher):
    assert len(searcher.search(Query.text("thunder"), page_size=50).hits) == len(GOOD)


def test_reindex_skips_unchanged_and_reembeds_changed_files(tmp_path, tiny_encoder):
    files = build_library(tmp_path / "sounds")
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [tmp_path / "sounds"], tiny_encoder)
    with Catalog(settings.catalog_url) as catalog:
        before = set(catalog.window_ids())
        old_stereo_ids = {w.id for w in catalog.file(str(files["stereo"])).windows}

    again = index_into(settings, [tmp_path / "sounds", files["tone"]], tiny_encoder)
    # The unreadable files too: unchanged, they are not read again.
    assert (again.indexed, again.unchanged, len(again.errors)) == (0, len(GOOD) + len(BAD), 0)

    sox_tone(files["stereo"], 10, channels=2)  # now two windows
    os.utime(files["stereo"], (1, 1))
    changed = index_into(settings, [tmp_path / "sounds"], tiny_encoder)
    assert (changed.indexed, changed.unchanged) == (1, len(GOOD) + len(BAD) - 1)
    with Catalog(settings.catalog_url) as catalog:
        stereo = catalog.file(str(files["stereo"]))
        assert [(w.start, w.end) for w in stereo.windows] == [(0.0, 7.0), (3.0, 10.0)]  # 3.5 s would overshoot
        after = set(catalog.window_ids())
        assert after == (before - old_stereo_ids) | {w.id for w in stereo.windows}
        assert sorted(open_store(settings, tiny_encoder.dim).ids()) == sorted(after)
        assert {f.path for f in catalog.errors()} == {str(files[name]) for name in BAD}
        assert catalog.file(str(files["corrupt"])).status == ERROR


def test_another_model_is_refused_by_indexer_and_searcher(indexed, library, tmp_path):
    other = load_encoder("msclap-2023", weights=write_tiny_msclap_checkpoint(tmp_path, seed=1), device="cpu")
    settings, _ = indexed

    with pytest.raises(ModelMismatchError) as caught:
        index_into(settings, [library["tone"]], other)
    assert other.weights_id in str(caught.value)
    with pytest.raises(ModelMismatchError):
        Library(settings, encoder=other)


def test_an_interrupted_run_leaves_no_orphan_vectors(tmp_path, tiny_encoder):
    """Vectors saved without their catalog commit (a crash between the two) are dropped next run."""
    settings = load_settings(tmp_path / "home")
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    sox_tone(sounds / "a.wav", 2)
    index_into(settings, [sounds], tiny_encoder)
    store = open_store(settings, tiny_encoder.dim)
    store.add(np.array([9999]), np.ones((1, tiny_encoder.dim), np.float32) / np.sqrt(tiny_encoder.dim))
    store.save()

    sox_tone(sounds / "b.wav", 2)
    index_into(settings, [sounds], tiny_encoder)

    with Catalog(settings.catalog_url) as catalog:
        assert sorted(open_store(settings, tiny_encoder.dim).ids()) == sorted(catalog.window_ids())
