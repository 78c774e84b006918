"""The catalog (real SQLite and real PostgreSQL) and the FAISS vector store, each on its own."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, text

from postgres import fresh_database
from search.catalog import (
    ERROR, INDEXED, PENDING, Catalog, Embedded, File, Metadata, ModelIdentity, ModelMismatchError, NewFile, file_conditions,
)
from search import catalog as catalog_module
from search.filters import Filters
from search.config import load_settings
from search.store import FaissStore, open_store

MODEL = ModelIdentity("msclap-2023", "sha256:abc", 8)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'home' / 'catalog.sqlite'}" if request.param == "sqlite" else fresh_database()
    with Catalog(url) as opened:
        yield opened


def add_file(catalog, path, spans=((0.0, 7.0), (7.0, 14.0))):
    record = catalog.set_file(None, path, root="/lib", size=100, mtime=1.5)
    removed, (ids,) = catalog.replace_windows_of([Embedded(record, spans, 14.0, 44100, 2, "wav/pcm_16")])
    return record, (removed, ids)


def test_catalog_is_sqlite_in_wal_mode(tmp_path):
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        assert catalog.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_files_get_windows_whose_ids_map_back_to_them(catalog):
    record, (removed, ids) = add_file(catalog, "/lib/a/dog.wav")
    catalog.commit()

    assert removed == [] and len(ids) == 2
    assert (record.folder, record.name, record.status) == ("/lib/a", "dog.wav", INDEXED)
    assert catalog.file_ids_of_windows([ids[1], 999]) == {ids[1]: record.id}
    other, (_, other_ids) = add_file(catalog, "/lib/a/cat.wav")
    catalog.commit()
    windows, files = catalog.window_files()
    assert sorted(zip(windows.tolist(), files.tolist())) == [(i, record.id) for i in ids] + [(i, other.id) for i in other_ids]
    windows, files = catalog.window_files(after=ids[1])  # those added since
    assert (windows.tolist(), files.tolist()) == (list(other_ids), [other.id] * 2)
    assert [(w.id, w.start, w.end) for w in record.windows][1] == (ids[1], 7.0, 14.0)


def test_a_file_located_by_path_is_its_record(catalog):
    """The audio and similar routes read a file and its windows through fixed driver statements:
    the same values as the ORM's record, the windows by start; nothing for a path not catalogued."""
    record, (_, ids) = add_file(catalog, "/lib/a/dog.wav", spans=((7.0, 14.0), (0.0, 7.0)))
    catalog.set_metadata(record, Metadata(duration=14.0, sample_rate=44100, channels=2, codec="flac"))
    record.format = "flac"
    catalog.commit()
    located = catalog.located("/lib/a/dog.wav")
    assert located == (record.id, record.path, record.root, INDEXED, "dog.wav", "flac", 14.0, 44100, 1.5)
    assert catalog.window_spans(record.id) == [(ids[1], 0.0, 7.0), (ids[0], 7.0, 14.0)]
    assert catalog.located("/lib/a/cat.wav") is None and catalog.window_spans(record.id + 1) == []


def test_replacing_windows_never_reuses_ids(catalog):
    record, (_, first) = add_file(catalog, "/lib/dog.wav")
    catalog.commit()
    removed, (second,) = catalog.replace_windows_of([Embedded(record, [(0.0, 3.0)], 3.0, 44100, 1, "x")])
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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_first_model_is_claimed_and_another_refused(tmp_path, backend):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}" if backend == "sqlite" else fresh_database()
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


def catalogue(catalog, path, duration, rate, channels, tags=(), cat_id=None, category=None, content_hash=None):
    record = catalog.set_file(catalog.file(path), path, root="/lib", size=1, mtime=1.0, content_hash=content_hash)
    catalog.set_metadata(record, Metadata(duration=duration, sample_rate=rate, channels=channels, tags=tags,
                                          ucs_cat_id=cat_id, ucs_category=category))
    _, (ids,) = catalog.replace_windows_of([Embedded(record, [(0.0, min(duration, 7.0))], duration, rate, channels, "x")])
    return ids[0]


def test_filters_become_sql_over_indexed_files(catalog):
    door = catalogue(catalog, "/lib/doors/DOORWood_Creak_JD_Lib.wav", 3.0, 48000, 2, ("Wood", "creak"), "DOORWood", "DOOR")
    rain = catalogue(catalog, "/lib/rain/heavy.flac", 30.0, 44100, 2, ("weather",))
    bird = catalogue(catalog, "/lib/rain/birds/dawn.mp3", 12.0, 44100, 1, ("weather", "birds"))
    odd = catalogue(catalog, "/lib/rain_and_more/x.wav", 1.0, 96000, 16)  # a sibling folder sharing a prefix
    pending = catalog.set_file(None, "/lib/rain/new.wav", root="/lib", size=1, mtime=1.0)
    catalog.commit()

    def matching(**given):
        return catalog.window_ids_matching(Filters(**given)).tolist()

    assert matching() == sorted([door, rain, bird, odd])
    assert matching(min_duration=2.0, max_duration=12.0) == sorted([door, bird])
    assert matching(sample_rates=(44100,)) == sorted([rain, bird])
    assert matching(channels=(1, 16)) == sorted([bird, odd])
    assert matching(formats=("flac", "mp3")) == sorted([rain, bird])
    assert matching(folders=("/lib/rain",)) == sorted([rain, bird])
    assert matching(folders=("/lib/rain/birds/", "/lib/doors")) == sorted([door, bird])
    assert matching(tags=("weather",)) == sorted([rain, bird])
    assert matching(tags=("Weather", "birds")) == [bird]  # all of them, any case
    assert matching(categories=("DOOR",)) == [door] and matching(categories=("DOORWood",)) == [door]
    assert matching(categories=("DOORMetal",)) == []
    assert matching(formats=("wav",), max_duration=2.0) == [odd]
    # The windows' owners, whatever their status: the pending file too (it has no windows yet);
    # read through the driver's cursor, so every kind of condition is bound as SQLAlchemy binds it.
    for given in ({"min_duration": 2.0, "max_duration": 12.0}, {"formats": ("flac", "mp3")}, {"channels": (1, 16)},
                  {"tags": ("Weather", "birds")}, {"categories": ("DOOR",)}, {"folders": ("/lib/rain/birds/", "/lib/doors")}):
        owners = catalog.file_ids_of_windows(matching(**given)).values()
        assert sorted(catalog.file_ids_matching(Filters(**given)).tolist()) == sorted(owners), given
    assert sorted(catalog.file_ids_matching(Filters(folders=("/lib/rain",))).tolist()) == sorted(
        [*catalog.file_ids_of_windows([rain, bird]).values(), pending.id])
    assert catalog.file_ids_matching(Filters(folders=("/nowhere",))).tolist() == []
    # Listed up to a number: all of them within it, none past it.
    rain_files = sorted(catalog.file_ids_matching(Filters(folders=("/lib/rain",))).tolist())
    assert sorted(catalog.file_ids_matching(Filters(folders=("/lib/rain",)), at_most=len(rain_files)).tolist()) == rain_files
    assert catalog.file_ids_matching(Filters(folders=("/lib/rain",)), at_most=len(rain_files) - 1) is None
    # Pending files match by metadata before they have windows.
    assert pending.id in catalog.session.scalars(select(File.id).where(*file_conditions(Filters(folders=("/lib/rain",)))))


def test_exact_duplicates_are_grouped_by_content_hash(catalog):
    catalogue(catalog, "/lib/a.wav", 1.0, 44100, 1, content_hash="h1")
    catalogue(catalog, "/lib/b/a-copy.wav", 1.0, 44100, 1, content_hash="h1")
    catalogue(catalog, "/lib/c.wav", 1.0, 44100, 1, content_hash="h2")
    catalog.commit()

    assert [[f.path for f in group] for group in catalog.exact_duplicates()] == [["/lib/a.wav", "/lib/b/a-copy.wav"]]


def test_the_files_passing_a_filter_are_the_indexed_ones_among_those_asked_however_many(catalog):
    # More than one statement's worth of ids (the catalog asks 500 at a time), some asked twice,
    # one unknown; pending and failed files never pass.
    new = [NewFile(f"/lib/f{number:04d}.wav", "/lib", 1, 0.0, None, Metadata(duration=number % 7))
           for number in range(1200)]
    ids = catalog.add_files(new)
    embedded = [Embedded(catalog.file_by_id(file_id), [(0.0, 1.0)], number % 7, 44100, 1, "x")
                for number, file_id in enumerate(ids) if number % 5]
    catalog.replace_windows_of(embedded)
    catalog.mark_error(catalog.file_by_id(ids[1]), "unreadable")
    catalog.commit()
    indexed = {file_id for number, file_id in enumerate(ids) if number % 5 and number != 1}
    long_enough = {file_id for number, file_id in enumerate(ids) if number % 7 >= 3} & indexed
    asked = ids[::-1] + ids[:40] + [max(ids) + 10]
    assert catalog.passing(asked, Filters()) == indexed
    assert catalog.passing(asked, Filters(min_duration=3.0)) == long_enough
    assert catalog.passing([], Filters(min_duration=3.0)) == set()


def test_many_files_added_and_given_windows_at_once(catalog):
    """The index run's batched writes: what one file at a time would have written, in a few statements."""
    described = Metadata(duration=3.0, sample_rate=48000, channels=2, codec="wav/pcm_24", title="Creak",
                         tags=("Wood", " creak"), ucs_cat_id="DOORWood", ucs_category="DOOR", extra={"ucs:fx_name": "Creak"})
    new = [NewFile("/lib/doors/DOORWood_Creak_JD_Lib.wav", "/lib", 10, 1.5, "h1", described),
           NewFile("/lib/b.flac", "/lib", 20, 2.5, "h2", Metadata()),
           NewFile("/lib/sub/c.FLAC", "/lib", 30, 3.5, "h1", Metadata())]
    ids = catalog.add_files(new)
    catalog.commit()

    records = [catalog.file(file.path) for file in new]
    assert [record.id for record in records] == ids
    door = records[0]
    assert (door.folder, door.name, door.format, door.size, door.mtime, door.status) == (
        "/lib/doors", "DOORWood_Creak_JD_Lib.wav", "wav", 10, 1.5, PENDING)
    assert (door.title, door.codec, door.ucs_category, door.tags, door.extra) == (
        "Creak", "wav/pcm_24", "DOOR", ["creak", "wood"], '{"ucs:fx_name": "Creak"}')
    assert (records[2].format, records[2].tags, records[2].extra) == ("flac", [], None)
    same = [(ids[0], new[0].path, PENDING), (ids[2], new[2].path, PENDING)]
    assert catalog.files_with_hashes(["h1", "h3"]) == {"h1": same}

    spans = [[(0.0, 3.0)], [(0.0, 7.0), (3.5, 10.5)], []]
    removed, added = catalog.replace_windows_of(
        [Embedded(record, file_spans, 10.5, 44100, 1, "x", None, 3.5) for record, file_spans in zip(records, spans)]
    )
    catalog.commit()
    assert removed == [] and [len(window_ids) for window_ids in added] == [1, 2, 0]
    assert catalog.file_ids_of_windows(sum(added, [])) == {
        added[0][0]: ids[0], added[1][0]: ids[1], added[1][1]: ids[1]}
    assert [(w.id, w.start, w.end) for w in records[1].windows] == [(added[1][0], 0.0, 7.0), (added[1][1], 3.5, 10.5)]
    assert (door.status, door.hop, door.bit_depth, door.indexed_at is not None) == (INDEXED, 3.5, None, True)

    again, renewed = catalog.replace_windows_of(
        [Embedded(records[1], [(0.0, 1.0)], 1.0, 44100, 1, "x"), Embedded(door, [], 3.0, 48000, 2, "y")])
    catalog.commit()
    assert sorted(again) == sorted(added[0] + added[1]) and set(renewed[0]).isdisjoint(again)
    assert catalog.window_ids() == renewed[0]


def test_every_commit_that_changes_files_windows_or_tags_gives_a_new_generation(catalog):
    """What the page keeps (facets, status) is computed again once, and only once, this changes."""
    seen = [catalog.generation()]

    def changed() -> bool:
        seen.append(catalog.generation())
        return seen[-1] != seen[-2]

    catalog.add_files([NewFile("/lib/a.wav", "/lib", 10, 1.5, "h1", Metadata(tags=("wood",)))])  # bulk INSERTs
    catalog.commit()
    assert seen[0] is None and changed() and seen[-1] is not None
    record = catalog.file("/lib/a.wav")
    catalog.replace_windows_of([Embedded(record, [(0.0, 1.0)], 1.0, 44100, 1, "x")])
    catalog.commit()
    assert changed()
    catalog.counts(), catalog.facets()
    catalog.commit()  # reading only
    assert not changed()
    catalog.add_key("alice", "read", "0" * 64)
    catalog.commit()  # not the library's files
    assert not changed()
    catalog.mark_error(record, "unreadable")
    catalog.rollback()  # a change undone is no change
    catalog.commit()
    assert not changed()
    catalog.set_metadata(catalog.file("/lib/a.wav"), Metadata(tags=("metal",)))  # its tag rows, through the ORM
    catalog.commit()
    assert changed()
    other = catalog.reader()  # another thread's session sees the token that commit wrote
    assert other.generation() == seen[-1]
    other.close()


def test_values_set_again_to_what_they_were_are_no_new_generation(catalog):
    """An unchanged rescan records each unreadable file as found again: that changes nothing kept."""
    record = catalog.set_file(None, "/lib/broken.wav", root="/lib", size=0, mtime=2.5)
    catalog.mark_error(record, "empty file")
    catalog.commit()
    before = catalog.generation()
    record = catalog.set_file(catalog.file("/lib/broken.wav"), "/lib/broken.wav", root="/lib", size=0, mtime=2.5)
    catalog.mark_error(record, "empty file")
    catalog.commit()
    assert catalog.generation() == before
    catalog.mark_error(catalog.file("/lib/broken.wav"), "not readable as audio")
    catalog.commit()
    assert catalog.generation() != before


def test_what_the_catalog_knows_of_a_batch_of_paths(catalog):
    paths = ["/lib/a.wav", "/lib/it's, {odd} \"name\".wav", "/lib/ü/β.flac", *(f"/lib/many/{i}.wav" for i in range(1200))]
    catalog.add_files([NewFile(path, "/lib", 10 + i, 2.5, f"h{i}", Metadata()) for i, path in enumerate(paths)])
    catalog.commit()

    known = catalog.known_at(iter(paths + ["/lib/none.wav"]))
    assert sorted(known) == sorted(paths)
    odd = known[paths[1]]
    assert (odd.path, odd.size, odd.mtime, odd.status, odd.content_hash) == (paths[1], 11, 2.5, PENDING, "h1")
    assert catalog.known_at([]) == {}


def test_errors_are_listed_by_path(catalog):
    for path in ("/lib/b.wav", "/lib/a.wav", "/lib/c/a.wav"):
        catalog.mark_error(catalog.set_file(None, path, root="/lib", size=0, mtime=1.0), "empty file")
    catalog.commit()
    assert [record.path for record in catalog.errors()] == ["/lib/a.wav", "/lib/b.wav", "/lib/c/a.wav"]


def test_a_folder_filter_is_the_folders_exact_prefix_read_from_the_paths_index(catalog):
    inside = catalogue(catalog, "/lib/Take_1%/x.wav", 1.0, 44100, 1)
    deeper = catalogue(catalog, "/lib/Take_1%/sub/y.wav", 1.0, 44100, 1)
    for other in ("/lib/take_1%/z.wav", "/lib/TakeX1%/z.wav", "/lib/Take_1x/z.wav", "/lib/Take_1%z/z.wav"):
        catalogue(catalog, other, 1.0, 44100, 1)  # another case, "_" and "%" as any character, a sibling
    catalog.commit()

    assert sorted(catalog.window_ids_matching(Filters(folders=("/lib/Take_1%",)))) == sorted([inside, deeper])
    # What an index run reads to find the files gone from a folder.
    below = catalog.known_at(["/lib/Take_1%/x.wav", "/lib/Take_1%/sub/y.wav"])
    assert sorted(catalog.file_ids_matching(Filters(folders=("/lib/Take_1%",))).tolist()) == \
        sorted(known.id for known in below.values())
    if catalog.engine.dialect.name == "sqlite":
        query = select(File.id).where(*file_conditions(Filters(folders=("/lib/Take_1%",))))
        compiled = query.compile(catalog.engine)
        plan = catalog.session.connection().exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params[name] for name in compiled.positiontup)).all()
        assert "(path>? AND path<?)" in " ".join(row[3] for row in plan)


def test_a_sqlite_catalog_gathers_its_planners_statistics_after_a_change(tmp_path, monkeypatch):
    """Without them SQLite's planner reads every file of a format to find one category's."""
    monkeypatch.setattr(catalog_module, "_statistics_refreshed", 0.0)
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        catalog.add_files([NewFile(f"/lib/{number}.wav", "/lib", 10, 1.5, None, Metadata()) for number in range(50)])
        catalog.commit()
        stats = dict(catalog.session.execute(text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'files'")).all())
        assert stats["ix_files_format"].startswith("50 ")
        catalog.add_files([NewFile("/lib/more.wav", "/lib", 10, 1.5, None, Metadata())])
        catalog.commit()  # minutes have not passed: not again
        assert catalog.session.scalar(text("SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_files_format'")).startswith("50 ")


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
