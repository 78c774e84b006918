"""The query engine over a real indexed library: every kind of query, filters inside the
vector search, keyword fusion, pages and sorting. Random weights make semantic ranking
meaningless, so these check exact properties: a clip matches itself, windows, filters,
orders, Boolean keywords."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from sounds import build_library, sox_tone
from libraries import index_into, searching
from postgres import fresh_database

from search import engine
from search.catalog import Catalog
from search.config import load_settings
from search.filters import Filters
from search.keyword import parse_keywords
from search.query import Query, QueryError, Sound, Term, Text, parse_query

GOOD = {"tone": "tone.wav", "stereo": "stereo.flac", "mp3": "beep.mp3", "m4a": "chirp.m4a", "long": "long.wav"}


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_encoder):
    files = build_library(tmp_path_factory.mktemp("engine") / "sounds")
    settings = load_settings(tmp_path_factory.mktemp("engine-home"), batch_size=8)
    index_into(settings, [files["tone"].parent], tiny_encoder)
    return settings, files


@pytest.fixture(scope="module")
def searcher(library, tiny_encoder):
    with searching(library[0], encoder=tiny_encoder) as opened:
        yield opened


@pytest.fixture(scope="module")
def page_searcher(library, tiny_encoder):
    """As the page opens it: sounds only from the library, clips bounded."""
    with searching(library[0], encoder=tiny_encoder, library_only=True, max_clip_seconds=30) as opened:
        yield opened


def names(results) -> list[str]:
    return [hit.name for hit in results.hits]


def test_pages_partition_the_ranking_best_first(searcher):
    everything = searcher.search(Query.text("a steady tone"), page_size=50)
    pages = [searcher.search(Query.text("a steady tone"), page=number, page_size=3) for number in range(3)]

    assert everything.total == 7 and pages[0].pages == 3
    assert sum((names(page) for page in pages), []) == names(everything)
    scores = [hit.score for hit in everything.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(("sort", "key", "reverse"), [
    ("name", lambda hit: hit.name.lower(), False),
    ("shortest", lambda hit: hit.duration, False),
    ("longest", lambda hit: hit.duration, True),
])
def test_sorting_orders_the_ranked_files(searcher, sort, key, reverse):
    hits = searcher.search(Query.text("a steady tone"), sort=sort, page_size=50).hits

    assert len(hits) == 7 and hits == sorted(hits, key=key, reverse=reverse)


@pytest.mark.parametrize(("filters", "expected"), [
    (Filters(formats=("m4a",)), ["chirp.m4a"]),
    (Filters(channels=(2,)), None),  # every stereo file: checked below
    (Filters(min_duration=10.0), ["long.wav"]),
    (Filters(max_duration=2.5, formats=("mp3", "m4a")), None),
])
def test_a_selective_filter_still_fills_the_page(searcher, library, filters, expected):
    """Filters act inside the vector search: a page of one still finds a file whose every
    window ranks below the unfiltered top."""
    unfiltered = searcher.search(Query.text("a steady tone"), page_size=50).hits
    allowed = [hit for hit in unfiltered if _passes(hit, filters)]

    results = searcher.search(Query.text("a steady tone"), filters=filters, page_size=1)

    assert results.total == len(allowed) > 0
    assert names(results) == [allowed[0].name]
    if expected is not None:
        assert [hit.name for hit in allowed] == expected


def _passes(hit, filters: Filters) -> bool:
    return (
        (not filters.formats or hit.format in filters.formats)
        and (not filters.channels or hit.channels in filters.channels)
        and (filters.min_duration is None or hit.duration >= filters.min_duration)
        and (filters.max_duration is None or hit.duration <= filters.max_duration)
    )


@pytest.mark.parametrize(("filters", "listed"), [
    (Filters(max_duration=15.0), False),  # every file but long.wav: checked on the unfiltered ranking
    (Filters(formats=("m4a",)), True),  # one file: searched among the windows it allows
])
def test_a_broad_filter_is_applied_to_the_unfiltered_ranking(searcher, monkeypatch, filters, listed):
    """Where most of the best files pass, the filtered ranking is the unfiltered one's files that
    pass, found without listing the windows the filter allows (millions at 10^6 files)."""
    unfiltered = searcher.search(Query.text("a steady tone"), page_size=50).hits
    monkeypatch.setattr(searcher, "_allowed", engine.AllowedWindows())  # no filter's windows kept from other tests
    windows_listed = []
    for method in ("window_ids_matching", "file_ids_matching"):  # the allowed windows, either way
        original = getattr(Catalog, method)
        monkeypatch.setattr(Catalog, method, lambda catalog, asked, original=original, **options:
                            windows_listed.append(asked) or original(catalog, asked, **options))
    monkeypatch.setattr(engine, "RESULT_LIMIT", 3)  # a library of seven files is "large" then

    results = searcher.search(Query.text("a steady tone"), filters=filters, page_size=50)

    assert names(results) == [hit.name for hit in unfiltered if _passes(hit, filters)][:3]
    assert bool(windows_listed) == listed
    unfiltered_rankings = []
    original_rank = type(searcher)._rank_by_vector
    monkeypatch.setattr(type(searcher), "_rank_by_vector", lambda self, vector, restriction, *rest, **options:
                        unfiltered_rankings.append(not restriction) or original_rank(self, vector, restriction, *rest, **options))
    monkeypatch.setattr(searcher, "_rankings", engine.KeptRankings())  # ranked again, not read from the first
    again = searcher.search(Query.text("a steady tone"), filters=filters, page=1, page_size=2)
    assert names(again) == names(results)[2:4]
    assert unfiltered_rankings == ([False] if listed else [True])  # a selective filter is known as such


def test_a_search_asks_the_store_for_exact_order_as_deep_as_its_page(searcher, monkeypatch):
    """The first page's files need their exact order, and from the second page on every file's,
    kept for the next pages; other sorts and keywords fused with the sounds use the whole
    ranking, and leave the depth to the store."""
    searcher.calibration()  # its own searches, before any page's
    monkeypatch.setattr(searcher, "_rankings", engine.KeptRankings())  # none kept from other tests
    asked = []
    original = type(searcher.store).search
    monkeypatch.setattr(type(searcher.store), "search", lambda store, queries, k, **options:
                        asked.append((k, options.get("exact"))) or original(store, queries, k, **options))
    for page in (0, 1, 2, 0):
        searcher.search(Query.text("a steady tone"), page=page, page_size=3)
    (wanted, first), (_, second) = asked  # the third page and the first again: the kept rankings
    assert first == math.ceil(wanted * 3 / engine.RESULT_LIMIT) and second == wanted
    asked.clear()
    searcher.search(Query.text("a steady tone"), sort="name")
    searcher.search(Query.text("a steady tone"), keywords_text="tone")
    assert [exact for _, exact in asked] == [None, None]


def test_a_folder_filter_takes_files_below_it(searcher, library):
    _, files = library
    results = searcher.search(Query.text("x"), filters=Filters(folders=(str(files["stereo"].parent),)), page_size=50)

    assert sorted(names(results)) == ["beep.mp3", "chirp.m4a", "stereo.flac"]


def test_filters_alone_list_what_they_let_through_by_name(searcher):
    results = searcher.search(filters=Filters(formats=("wav",)), page_size=50)

    assert names(results) == ["long.wav", "tone.wav"] and all(hit.score is None for hit in results.hits)


def test_a_time_range_finds_the_file_that_holds_those_samples(searcher, library):
    _, files = library
    hits = searcher.search(Query.sound(str(files["long"]), 7.0, 14.0), page_size=2).hits

    assert hits[0].name == "tone.wav" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert "long.wav" not in [hit.name for hit in hits]  # more like this leaves its own file out


def test_a_time_range_of_an_unindexed_file_is_decoded(searcher, library, tmp_path):
    _, files = library
    copy = shutil.copyfile(files["long"], tmp_path / "elsewhere.wav")

    hits = searcher.search(Query.sound(str(copy), 7.0, 14.0), page_size=2).hits

    assert {hit.name for hit in hits} == {"tone.wav", "long.wav"}
    assert all(hit.score == pytest.approx(1.0, abs=1e-3) for hit in hits)
    assert {hit.name: (hit.start, hit.end) for hit in hits}["long.wav"] == (7.0, 14.0)


def test_a_clip_query_from_bytes_matches_itself(page_searcher, library):
    _, files = library
    hits = page_searcher.search(Query.clip(files["tone"].read_bytes(), "recording.wav"), page_size=2).hits

    assert {hit.name for hit in hits} == {"tone.wav", "long.wav"}
    assert all(hit.score == pytest.approx(1.0, abs=1e-3) for hit in hits)


def test_arithmetic_is_the_normalised_weighted_sum(searcher):
    rain, thunder = searcher.embed_text("rain"), searcher.embed_text("thunder")
    expected = 2 * rain / np.linalg.norm(rain) - thunder / np.linalg.norm(thunder)

    vector = searcher.embed_query(parse_query("2:rain - thunder"))

    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-6)
    with pytest.raises(QueryError, match="cancel"):
        searcher.embed_query(Query((Term(Text("rain")), Term(Text("rain"), -1.0))))


def test_repeated_text_is_embedded_once(searcher):
    searcher.kept_texts.clear()
    searcher.search(Query.text("door creak"), page=0)
    searcher.search(Query.text("door creak"), page=1)

    assert (searcher.kept_texts.hits, searcher.kept_texts.misses) == (1, 1)


def test_texts_embedded_ahead_count_once_per_asking(searcher):
    """A server's batch embeds its new texts ahead, then each search asks for its own: a text
    made for a search is that search's miss, never a miss and a hit."""
    searcher.kept_texts.clear()
    asked = [Query.text("door creak"), Query.text("door creak"), parse_query("rain + door creak")]

    searcher.embed_texts_ahead([*asked, None])
    assert (searcher.kept_texts.hits, searcher.kept_texts.misses) == (0, 0)  # nobody has asked yet
    for query in asked:
        searcher.search(query, page_size=1)
    # "door creak" and "rain" made once each; "door creak" found kept twice after.
    assert (searcher.kept_texts.hits, searcher.kept_texts.misses) == (2, 2)

    searcher.embed_texts_ahead([Query.text("rain")])  # kept already: nothing made, nothing counted
    searcher.search(Query.text("rain"), page_size=1)
    assert (searcher.kept_texts.hits, searcher.kept_texts.misses) == (3, 2)


def test_the_page_names_sounds_by_library_file_name_only(page_searcher, library):
    _, files = library
    hits = page_searcher.search(parse_query("tone.wav + 0.01:hum"), page_size=2).hits
    assert {hit.name for hit in hits} == {"tone.wav", "long.wav"}

    with pytest.raises(PermissionError):
        page_searcher.search(Query((Term(Sound("/etc/passwd")),)))
    with pytest.raises(PermissionError):
        page_searcher.search(Query((Term(Sound(str(files["tone"].parent / ".." / "x.wav"))),)))
    with pytest.raises(QueryError, match="no file named"):
        page_searcher.search(parse_query("rain + missing.wav"))


def test_keywords_alone_rank_matching_files(searcher):
    results = searcher.search(keywords_text="beep, chirp", page_size=50)

    assert sorted(names(results)) == ["beep.mp3", "chirp.m4a"]
    assert all(hit.keyword_match and hit.score is None for hit in results.hits)


def test_keyword_weight_moves_the_fused_ranking(searcher):
    text = Query.text("a steady tone")
    by_sound = names(searcher.search(text, page_size=50))

    only_sound = searcher.search(text, keywords_text="chirp", keyword_weight=0.0, page_size=50)
    only_keywords = searcher.search(text, keywords_text="chirp, beep", keyword_weight=1.0, page_size=50)
    fused = searcher.search(text, keywords_text="chirp", keyword_weight=0.5, page_size=50)

    assert names(only_sound) == by_sound
    assert [hit.keyword_match for hit in only_sound.hits] == [name == "chirp.m4a" for name in by_sound]
    assert sorted(names(only_keywords)) == ["beep.mp3", "chirp.m4a"]
    assert all(hit.score is not None for hit in only_keywords.hits)  # still scored against the sound
    # Half weight: chirp's two shares, 0.5/(K+r) + 0.5/(K+1), beat any file's single 0.5/(K+1).
    assert names(fused)[0] == "chirp.m4a" and fused.total == 7


def test_bad_sort_and_weight_are_sentences(searcher):
    with pytest.raises(QueryError, match="sort"):
        searcher.search(Query.text("x"), sort="size")
    with pytest.raises(QueryError, match="between 0 and 1"):
        searcher.search(Query.text("x"), keywords_text="x", keyword_weight=2)


def test_facets_offer_what_the_library_holds(searcher):
    facets = searcher.library.facets()

    assert facets.formats == ["flac", "m4a", "mp3", "ogg", "wav"]
    assert facets.channels == [1, 2] and 44100 in facets.sample_rates
    assert facets.max_duration == pytest.approx(20.0)


def test_files_catalogued_but_not_embedded_are_found_by_keywords_and_filters(tmp_path, tiny_encoder):
    """The scan catalogues first; until the embedding phase reaches a file, keywords and filters
    find it (the whole file, no score), and the page may play it. A sound query cannot yet."""
    root = tmp_path / "library"
    root.mkdir()
    sox_tone(root / "door_creak.wav", 2)
    settings = load_settings(tmp_path / "home")
    index_into(settings, [root], tiny_encoder)
    waiting = sox_tone(root / "door_slam.wav", 3, rate=48000)
    with Catalog(settings.catalog_url) as catalog:  # what the scan phase leaves behind
        catalog.set_file(None, str(waiting), root=str(root), size=waiting.stat().st_size, mtime=waiting.stat().st_mtime)
        catalog.commit()

    with searching(settings, encoder=tiny_encoder) as searcher:
        found = {hit.name: hit for hit in searcher.search(keywords_text="door", page_size=10).hits}
        assert sorted(found) == ["door_creak.wav", "door_slam.wav"]
        slam = found["door_slam.wav"]
        assert (slam.window_id, slam.score, slam.start) == (None, None, 0.0) and slam.keyword_match
        assert found["door_creak.wav"].window_id is not None
        listed = searcher.search(filters=Filters(folders=(str(root),)), page_size=10).hits
        assert sorted(hit.name for hit in listed) == ["door_creak.wav", "door_slam.wav"]
        assert searcher.library_file(waiting) == waiting.resolve()
        by_sound = searcher.search(Query.text("a door"), keywords_text="door", page_size=10).hits
        assert [hit.name for hit in by_sound] == ["door_creak.wav"]


def test_window_files_are_learned_once_and_only_unknown_ids_are_asked():
    from search.engine import WindowFiles

    asked = []

    def catalog(ids):
        asked.append(sorted(ids))
        return {window: 100 + window for window in ids if window != 7}  # window 7: its file is gone

    files = WindowFiles()
    assert files.of(np.array([3, 5, -1, 7]), catalog).tolist() == [103, 105, -1, -1]
    assert files.of(np.array([5, 3, 9]), catalog).tolist() == [105, 103, 109]
    assert asked == [[3, 5, 7], [9]]  # 3 and 5 were known; -1 (FAISS's "no more") never asked
    assert files.of(np.array([7]), catalog).tolist() == [-1] and asked[-1] == [7]  # not learned: asked again


@pytest.mark.parametrize("filters", [
    Filters(formats=("m4a",)), Filters(channels=(2,)), Filters(min_duration=10.0), Filters(formats=("ogg",)),
])
def test_the_windows_a_filter_allows_come_from_the_learned_files_and_the_catalog_alike(searcher, filters):
    """The Searcher lists a filter's windows from the files that pass and what it learned of each
    window's file; windows added after it learned come from the catalog."""
    searcher.search(Query.text("x"))  # a first search learns every window's file
    with searcher.library.reading() as catalog:
        expected = catalog.window_ids_matching(filters).tolist()
        window_ids, file_ids = catalog.window_files()
        learned = engine.WindowFiles()
        assert learned.windows_of(catalog.file_ids_matching(filters), catalog) is None  # not learned whole
        order = np.argsort(window_ids)
        learned.learn_all(window_ids[order][:-3], file_ids[order][:-3])  # as if the last three came later
        assert learned.windows_of(catalog.file_ids_matching(filters), catalog).tolist() == expected
        assert searcher._window_files.windows_of(catalog.file_ids_matching(filters), catalog).tolist() == expected


def test_window_files_are_kept_in_32_bits_until_a_file_id_needs_more():
    from search.engine import WindowFiles

    files = WindowFiles()
    files.learn_all(np.array([1, 2, 5]), np.array([10, 10, 11]))
    assert files.files.dtype == np.int32
    big = 2**40
    assert files.of(np.array([9, 2]), lambda ids: {9: big}).tolist() == [big, 10]
    assert files.files.dtype == np.int64


def test_a_filters_windows_are_kept_until_the_catalog_changes(tmp_path, tiny_encoder, monkeypatch):
    """The windows a filter allows are listed once per state of the catalog: the next words in the
    same folder reuse them, and a file an index run adds there is found by the next search."""
    from search import library as library_module

    monkeypatch.setattr(library_module, "STORE_CHECK_SECONDS", 0.0)
    root = tmp_path / "library"
    (root / "doors").mkdir(parents=True)
    sox_tone(root / "doors" / "creak.wav", 2)
    sox_tone(root / "hum.wav", 2, tone="square 100")
    settings = load_settings(tmp_path / "home")
    index_into(settings, [root], tiny_encoder)
    doors = Filters(folders=(str(root / "doors"),))
    with searching(settings, encoder=tiny_encoder) as searcher:
        listed = []
        original = engine.Searcher._allowed_windows

        def listing(self, filters, *most):
            found = original(self, filters, *most)
            if found is not None:  # not a listing declined as too long
                listed.append(filters)
            return found

        monkeypatch.setattr(engine.Searcher, "_allowed_windows", listing)
        assert names(searcher.search(Query.text("a door"), filters=doors)) == ["creak.wav"]
        assert names(searcher.search(Query.text("a hum"), filters=doors)) == ["creak.wav"]
        assert listed == [doors]  # the second search took the first one's windows

        sox_tone(root / "doors" / "slam.wav", 3, tone="square 300")
        index_into(settings, [root], tiny_encoder)
        assert sorted(names(searcher.search(Query.text("a door"), filters=doors))) == ["creak.wav", "slam.wav"]
        assert listed == [doors, doors]


def test_a_small_folders_first_search_goes_straight_to_its_windows(tmp_path, tiny_encoder, monkeypatch):
    """A folder of at most a quarter of the windows is searched within them from its first search,
    without ranking the whole library first; one holding most of it is still tried on the
    unfiltered ranking."""
    root = tmp_path / "library"
    for number in range(8):
        (root / f"take{number}").mkdir(parents=True)
        sox_tone(root / f"take{number}" / f"tone{number}.wav", 2, tone=f"sine {200 + 150 * number}")
    settings = load_settings(tmp_path / "home")
    index_into(settings, [root], tiny_encoder)
    with searching(settings, encoder=tiny_encoder) as searcher:
        restrictions = []
        original_rank = engine.Searcher._rank_by_vector
        monkeypatch.setattr(engine.Searcher, "_rank_by_vector", lambda self, vector, restriction, *rest, **options:
                            restrictions.append(bool(restriction)) or original_rank(self, vector, restriction, *rest, **options))
        small = Filters(folders=(str(root / "take3"),))
        assert names(searcher.search(Query.text("a tone"), filters=small)) == ["tone3.wav"]
        assert restrictions == [True]  # its windows only, the first time already
        restrictions.clear()
        whole = Filters(folders=(str(root),))
        assert len(searcher.search(Query.text("a tone"), filters=whole, page_size=50).hits) == 8
        assert restrictions[0] is False  # the unfiltered ranking first: most of the library passes


def test_a_kept_ranking_serves_pages_as_deep_as_it_is_exact_and_only_in_its_state():
    kept = engine.KeptRankings(most=2)
    kept.put("rain", ("store", 10, "g1"), 50, "ranking of rain")
    assert kept.get("rain", ("store", 10, "g1"), 50) == "ranking of rain"
    assert kept.get("rain", ("store", 10, "g1"), 51) is None  # a deeper page than it was ranked for
    assert kept.get("rain", ("store", 11, "g1"), 10) is None and kept.get("rain", ("store", 10, "g2"), 10) is None
    kept.put("wind", ("store", 10, None), 500, "ranking of wind")  # no generation: changes unseen, not kept
    assert kept.get("wind", ("store", 10, None), 10) is None
    kept.put("door", ("store", 10, "g1"), 500, "door")
    kept.put("bird", ("store", 10, "g1"), 500, "bird")  # the least recent, rain, is dropped
    assert kept.get("rain", ("store", 10, "g1"), 10) is None and kept.get("door", ("store", 10, "g1"), 500) == "door"


def test_kept_windows_stay_within_their_budget_the_latest_first():
    kept = engine.AllowedWindows(budget=3 * 4 * 100)  # three filters of 100 windows (32-bit ids)
    filters = [Filters(formats=(name,)) for name in ("wav", "flac", "mp3", "ogg")]
    computed = []

    def windows(number):
        return lambda: computed.append(number) or np.arange(100 * number, 100 * number + 100, dtype=np.int64)

    for number, each in enumerate(filters):
        assert kept.of(each, "g1", windows(number)).tolist() == list(range(100 * number, 100 * number + 100))
    assert kept.of(filters[3], "g1", windows(3)).dtype == np.int32 and computed == [0, 1, 2, 3]
    kept.of(filters[1], "g1", windows(1))  # still kept; "wav", the oldest, was dropped
    kept.of(filters[0], "g1", windows(0))
    assert computed == [0, 1, 2, 3, 0]
    kept.of(filters[1], "g2", windows(1))  # a new generation: computed again, the others dropped
    kept.of(filters[1], None, windows(1))  # no generation: never kept
    assert computed == [0, 1, 2, 3, 0, 1, 1] and kept.of(filters[1], "g2", windows(1)).flags.writeable is False


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def on_each_catalog(request, tmp_path_factory, tiny_encoder):
    """The same small library indexed with its catalog in SQLite, then in PostgreSQL."""
    files = build_library(tmp_path_factory.mktemp("hybrid") / "sounds")
    url = fresh_database() if request.param == "postgresql" else None
    settings = load_settings(tmp_path_factory.mktemp("hybrid-home"), batch_size=8, catalog=url)
    index_into(settings, [files["tone"].parent], tiny_encoder)
    return settings, files


def test_sounds_with_keywords_fuse_the_two_rankings_each_made_alone(on_each_catalog, tiny_encoder):
    # The keywords are ranked on a thread of their own while the sound half runs: the fused
    # ranking must be the one made of each ranking made alone, the file a query starts from left out.
    settings, files = on_each_catalog
    weight = 0.3
    with searching(settings, encoder=tiny_encoder) as searcher:
        for query, words in ((Query.text("a steady tone"), "sub"), (Query.sound(str(files["tone"])), "wav, flac -chirp"),
                             (Query.sound(str(files["m4a"])), "chirp, beep")):
            by_sound = [hit.file_id for hit in searcher.search(query, page_size=engine.RESULT_LIMIT).hits]
            with searcher.library.reading() as catalog:
                excluded = catalog.located(str(query.exclude_path)) if query.exclude_path else None
                by_keywords = catalog.keyword_ranked(parse_keywords(words), exclude_id=excluded and excluded.id)
            assert by_keywords, words
            fused: dict[int, float] = {}
            for rank, file_id in enumerate(by_sound, 1):
                fused[file_id] = (1 - weight) / (engine.RRF_K + rank)
            for rank, file_id in enumerate(by_keywords, 1):
                fused[file_id] = fused.get(file_id, 0.0) + weight / (engine.RRF_K + rank)
            expected = sorted(fused, key=fused.__getitem__, reverse=True)

            found = searcher.search(query, keywords_text=words, keyword_weight=weight, page_size=50).hits
            assert [hit.file_id for hit in found] == expected
            assert [hit.keyword_match for hit in found] == [file_id in by_keywords for file_id in expected]
            assert excluded is None or excluded.id not in expected
        # The sound half failing is the caller's error; the keyword threads serve the next search.
        with pytest.raises(QueryError, match="cancel out"):
            searcher.search(Query((Term(Text("a tone")), Term(Text("a tone"), -1.0))), keywords_text="wav")
        assert {hit.name for hit in searcher.search(Query.text("a tone"), keywords_text="chirp", keyword_weight=1.0,
                                                     page_size=50).hits} == {"chirp.m4a"}
