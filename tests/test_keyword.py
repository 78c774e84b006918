"""Boolean keyword search over names, folders and what files say, through the catalog's
full-text index, on a real SQLite catalog and a real PostgreSQL one alike."""

from __future__ import annotations

import logging
import os
import random

import pytest
from postgres import fresh_database
from sqlalchemy import func, select, text, update

from search import keyword_index
from search.catalog import ERROR, INDEXED, PENDING, Catalog, File, FileText, Meta, Metadata, NewFile, _passing
from search.filters import Filters
from search.keyword_index import _SEPARATOR as SEPARATOR
from search.keyword import Keyword, parse_keywords

ROOT = "/library"
NAMES = {
    "doors/wood/DOORWood_creak_slow.wav": INDEXED,
    "doors/metal/DOORMetl_slam.wav": INDEXED,
    "doors/gate_latch.flac": INDEXED,
    "weather/rain_on_roof.wav": INDEXED,
    "weather/100%_wet_rain.wav": INDEXED,
    "weather/metal_door_in_rain.wav": INDEXED,
    "weather/door_broken.wav": "error",
    "sommer/Été_ORAGE_Übergang.wav": INDEXED,
}
BACKENDS = ["sqlite", "postgresql"]


def new_catalog(backend: str, folder) -> Catalog:
    return Catalog(f"sqlite:///{folder / 'catalog.sqlite'}" if backend == "sqlite" else fresh_database())


@pytest.fixture(scope="module", params=BACKENDS)
def catalog(request, tmp_path_factory):
    with new_catalog(request.param, tmp_path_factory.mktemp("keywords")) as opened:
        for relative, status in NAMES.items():
            record = opened.set_file(None, f"{ROOT}/{relative}", root=ROOT, size=1, mtime=0.0)
            record.status = status
        described = opened.set_file(None, f"{ROOT}/misc/take_04.wav", root=ROOT, size=1, mtime=0.0)
        opened.set_metadata(described, Metadata(
            description="Thunder clap, distant, rolling", tags=("Storm", "field recording"), ucs_category="AMBIENCE",
            ucs_cat_id="WEATHStorm", ucs_subcategory="Storm",
        ))
        described.status = INDEXED
        opened.commit()
        yield opened


@pytest.fixture(params=BACKENDS)
def empty(request, tmp_path):
    with new_catalog(request.param, tmp_path) as opened:
        yield opened


def found(catalog, text: str) -> list[str]:
    ids = catalog.keyword_ranked(parse_keywords(text))
    return [catalog.file_by_id(file_id).path.removeprefix(ROOT + "/") for file_id in ids]


def test_syntax_space_and_comma_or_dash_not_quotes_phrase():
    query = parse_keywords('door -metal, "gate latch" , ')

    assert query.alternatives == ((Keyword("door"), Keyword("metal", negated=True)), (Keyword("gate latch"),))
    assert query.wanted == ("door", "gate latch")
    assert not parse_keywords("  , ")


def test_space_means_and(catalog):
    assert sorted(found(catalog, "rain metal")) == ["weather/metal_door_in_rain.wav"]


def test_comma_means_or_and_dash_means_not(catalog):
    assert sorted(found(catalog, "door -metal, gate")) == ["doors/gate_latch.flac", "doors/wood/DOORWood_creak_slow.wav"]


def test_folders_below_the_root_match_but_the_root_itself_does_not(catalog):
    assert sorted(found(catalog, "wood")) == ["doors/wood/DOORWood_creak_slow.wav"]
    assert found(catalog, "library") == []


def test_case_is_ignored_and_sql_wildcards_are_plain_characters(catalog):
    assert found(catalog, "DOORMETL") == ["doors/metal/DOORMetl_slam.wav"]
    assert found(catalog, "100%") == ["weather/100%_wet_rain.wav"]
    assert found(catalog, "_wet") == ["weather/100%_wet_rain.wav"]
    assert found(catalog, "'; drop table files; --") == []


def test_a_name_match_ranks_above_a_folder_match(catalog):
    # "door" is in these names, and only in the folder of gate_latch.flac.
    assert found(catalog, "door")[-1] == "doors/gate_latch.flac"


def test_only_indexed_files_are_found(catalog):
    assert "weather/door_broken.wav" not in found(catalog, "door")


@pytest.mark.parametrize("text", ["rolling thunder", "storm", '"field recording"', "ambience", "weathstorm"])
def test_descriptions_tags_and_ucs_categories_match(catalog, text):
    assert found(catalog, text) == ["misc/take_04.wav"]


def test_a_tag_excluded_removes_the_file(catalog):
    assert "misc/take_04.wav" not in found(catalog, "wav -storm")
    assert "misc/take_04.wav" in found(catalog, "wav -door")


def test_words_of_one_and_two_letters_are_found_without_trigrams(catalog):
    assert found(catalog, "04") == ["misc/take_04.wav"]
    assert sorted(found(catalog, "_s")) == ["doors/metal/DOORMetl_slam.wav", "doors/wood/DOORWood_creak_slow.wav"]
    assert found(catalog, "in metal") == ["weather/metal_door_in_rain.wav"]
    assert found(catalog, "in -rain -rolling -ing") == []


def test_a_query_of_exclusions_alone_keeps_every_other_file(catalog):
    assert found(catalog, "-wav") == ["doors/gate_latch.flac"]
    assert sorted(found(catalog, "-door -weather -xyz")) == ["misc/take_04.wav", "sommer/Été_ORAGE_Übergang.wav"]


def test_a_phrase_is_found_whole_and_never_across_two_fields(catalog):
    assert found(catalog, '"thunder clap"') == ["misc/take_04.wav"]
    assert found(catalog, '"clap thunder"') == []
    # The description ends "rolling", the UCS CatID that follows it is "WEATHStorm".
    assert found(catalog, '"rolling weathstorm"') == []
    assert found(catalog, '"metal_door"') == ["weather/metal_door_in_rain.wav"]
    # The character the catalog puts between fields, quoted into a phrase, joins none.
    assert found(catalog, '"rolling\x1fweathstorm"') == []
    assert "misc/take_04.wav" in found(catalog, '-"rolling\x1fweathstorm"')


def test_parts_of_words_are_found_anywhere_in_them(catalog):
    assert found(catalog, "oorwoo") == ["doors/wood/DOORWood_creak_slow.wav"]
    assert sorted(found(catalog, "ath")) == ["misc/take_04.wav", "weather/100%_wet_rain.wav",
                                             "weather/metal_door_in_rain.wav", "weather/rain_on_roof.wav"]
    assert found(catalog, "slo") == ["doors/wood/DOORWood_creak_slow.wav"]


def test_or_of_ands_with_nots(catalog):
    assert sorted(found(catalog, "slam, latch")) == ["doors/gate_latch.flac", "doors/metal/DOORMetl_slam.wav"]
    assert sorted(found(catalog, "rain -metal -100, storm")) == ["misc/take_04.wav", "weather/rain_on_roof.wav"]
    assert found(catalog, 'd"oor -x') == []  # a quote inside a word is a character to find, not FTS5 syntax


@pytest.mark.parametrize("text", ["été", "ÉTÉ", "Ét", "übergang", "ÜBER", "orage", "ü"])
def test_case_is_folded_beyond_ascii_alike_on_every_backend(catalog, text):
    # Python's str.lower() folds both the text and the words: "É" is "é", but "é" is not "e".
    assert found(catalog, text) == ["sommer/Été_ORAGE_Übergang.wav"]


def test_accents_are_kept(catalog):
    assert found(catalog, "ete") == []
    assert found(catalog, "uber") == []


def test_pending_files_and_one_excluded(catalog):
    everything = catalog.keyword_ranked(parse_keywords("door"), pending=True)
    assert "weather/door_broken.wav" not in found(catalog, "door")  # an error, not pending
    first = everything[0]
    assert first not in catalog.keyword_ranked(parse_keywords("door"), exclude_id=first)


@pytest.mark.parametrize("text", ["door", "oor -metal", "rain -roof -xyz", "ath", "wav", "rain", "door, rain",
                                  "wav -metal, ath", "oor wav", "rain -100, storm door"])
@pytest.mark.parametrize("pending", [False, True])
def test_the_first_files_of_a_ranking_are_its_beginning_whatever_the_limit(catalog, text, pending):
    # A small limit makes SQLite rank the search tier by tier of relevance, each walked in name
    # order or sorted, from what FTS5 finds of each word: the same files as ranking every match.
    query = parse_keywords(text)
    everything = catalog.keyword_ranked(query, pending=pending)
    assert len(everything) >= 2
    for limit in range(len(everything) + 2):
        assert catalog.keyword_ranked(query, pending=pending, limit=limit) == everything[:limit]
    for excluded in everything:
        assert catalog.keyword_ranked(query, pending=pending, exclude_id=excluded, limit=2) == \
            [file_id for file_id in everything if file_id != excluded][:2]


def keys_in_name_order(catalog: Catalog) -> list[int]:
    """The rank keys of the catalog's texts, their files taken in the database's name order:
    what ranking relies on is that they only ever grow, on SQLite (FTS5's row ids) and on
    PostgreSQL alike; on SQLite, FTS5's index is checked to hold them and be whole."""
    keys = catalog.session.scalars(select(FileText.rank_key).join(File, File.id == FileText.file_id)
                                   .order_by(File.name, File.id)).all()
    assert None not in keys and keys == sorted(set(keys))
    if catalog.engine.dialect.name == "sqlite":
        assert catalog.session.scalars(text("SELECT rowid FROM file_text_index ORDER BY rowid")).all() == keys
        catalog.session.execute(text("INSERT INTO file_text_index(file_text_index) VALUES ('integrity-check')"))
    return keys


def add(catalog: Catalog, relative: str, **described) -> int:
    record = catalog.set_file(None, f"{ROOT}/{relative}", root=ROOT, size=1, mtime=0.0)
    if described:
        catalog.set_metadata(record, Metadata(**described))
    record.status = INDEXED
    catalog.commit()
    return record.id


def test_a_file_moved_renamed_retagged_or_described_anew_is_found_by_its_new_text_only(empty):
    file_id = add(empty, "dogs/bark_loud.wav", tags=("kennel",), description="A big dog")
    assert found(empty, "bark kennel dogs big") == ["dogs/bark_loud.wav"]

    record = empty.file_by_id(file_id)
    empty.move_file(record, f"{ROOT}/cats/meow_soft.wav", root=ROOT, mtime=1.0)
    empty.set_metadata(record, Metadata(tags=("cattery", "indoor"), description="A small cat"))
    empty.commit()
    for old in ("bark", "dogs", "kennel", "big", "og"):
        assert found(empty, old) == []
    assert found(empty, "meow cats cattery indoor small") == ["cats/meow_soft.wav"]

    empty.set_file(record, f"{ROOT}/birds/tweet.wav", root=ROOT, size=2, mtime=2.0)
    empty.commit()
    assert found(empty, "meow") == [] and found(empty, "tweet birds cattery") == ["birds/tweet.wav"]


def test_a_deleted_file_is_never_found_again_not_even_under_its_id(empty):
    file_id = add(empty, "doomed/horn_blast.wav", tags=("brass",))
    empty.delete_file(empty.file_by_id(file_id))
    empty.commit()
    assert found(empty, "horn") == [] and found(empty, "brass") == []
    add(empty, "kept/chime.wav")  # SQLite may give it the deleted file's id
    assert found(empty, "horn") == [] and found(empty, "brass") == [] and found(empty, "chime") == ["kept/chime.wav"]
    assert empty.session.scalar(select(func.count()).select_from(FileText)) == 1


def test_files_added_in_bulk_are_found_and_status_changes_keep_their_text(empty):
    new = [NewFile(f"{ROOT}/bulk/clip_{index}.wav", ROOT, 1, 0.0, None, Metadata(tags=(f"take{index}",)))
           for index in range(3)]
    ids = empty.add_files(new)
    empty.commit()
    assert found(empty, "clip") == []  # pending
    assert empty.keyword_ranked(parse_keywords("take1"), pending=True) == [ids[1]]
    record = empty.file_by_id(ids[1])
    empty.mark_error(record, "unreadable")
    empty.commit()
    assert empty.keyword_ranked(parse_keywords("take1"), pending=True) == []
    empty.mark_pending(record)
    empty.commit()
    assert empty.keyword_ranked(parse_keywords("take1 bulk"), pending=True) == [ids[1]]
    assert record.status == PENDING and ERROR != PENDING


def every_way_of_reading_a_tier(catalog: Catalog, caplog, monkeypatch, queries) -> None:
    """``queries`` ranked as ``reference`` ranks them for few files wanted (walked for) and many
    (found by index); on PostgreSQL, walked along the rank keys, then (the keys' walk made too
    costly to be chosen) along the names, each way seen taken."""
    caplog.set_level(logging.DEBUG, logger="search.keyword_index")
    ways = ("files walked by key for", "files walked for") if catalog.engine.dialect.name == "postgresql" else (None,)
    for way in ways:
        caplog.clear()
        for text_ in queries:
            expected = reference(catalog, text_, Filters(), False, None)
            assert expected or text_ in ("9k", "éé"), text_
            for limit in (1, 2, 3, 5, 100):
                ranked = catalog.keyword_ranked(parse_keywords(text_), limit=limit)
                assert ranked == expected[:limit], (text_, limit, way)
        if way:
            assert way in caplog.text and "files found by index" in caplog.text, way
        monkeypatch.setattr(keyword_index, "_KEY_STEP_IN_ORDER", 1e9)
        monkeypatch.setattr(keyword_index, "_KEY_STEP_SCATTERED", 1e9)


def test_two_letters_are_found_wherever_they_stand_and_however_a_tier_is_read(empty, caplog, monkeypatch):
    # Followed by a letter, a digit, a character beyond ASCII, punctuation, the end of a field;
    # in a name whose capital Python lowers into ASCII (the Kelvin sign), upper case, a folder,
    # a tag; many files hold them in the name, so that a tier is walked for few files wanted.
    for relative, tags in [("mix/a\u212aa.wav", ()), ("mix/kaé.wav", ()), ("mix/ka.wav", ()), ("mix/zKA9.wav", ()),
                           ("mix/z9ka_x.wav", ()), ("ka/plain.wav", ()), ("mix/tagged.wav", ("ka",)),
                           ("mix/none.wav", ("k a",)), ("kafka/kaka.wav", ("kayak",)),
                           *((f"mix/zka_{number}.wav", ()) for number in range(20))]:
        add(empty, relative, tags=tags)
    # In the name and elsewhere; then in the name, by name (the Kelvin sign's name first: "a" and
    # a character beyond ASCII sort before "ka"); then elsewhere.
    assert found(empty, "ka")[:3] == ["kafka/kaka.wav", "mix/a\u212aa.wav", "mix/ka.wav"]
    assert found(empty, "ka")[-2:] == ["ka/plain.wav", "mix/tagged.wav"] and len(found(empty, "ka")) == 28
    every_way_of_reading_a_tier(empty, caplog, monkeypatch, ("ka", "ka -kafka", "a9", "ka, zz", "9k", "éé"))


def test_a_longer_word_is_found_wherever_it_stands_and_however_a_tier_is_read(empty, caplog, monkeypatch):
    # As two letters are (above), a word of more, characters of regular expressions in it: many
    # files hold it in the name, so that a tier is walked for few files wanted, found by index for many.
    for relative, tags in [("mix/a(B].wav", ()), ("mix/X.a(b]Y.wav", ("a(b]",)), ("a(b]/plain.wav", ()),
                           ("mix/tagged.wav", ("za(b]z",)), ("mix/none.wav", ("a(b ]",)), ("mix/Kelvin_a\u212aa.wav", ()),
                           ("mix/a\\b.wav", ()), *((f"mix/a(b]_{number}.wav", ()) for number in range(20))]:
        add(empty, relative, tags=tags)
    every_way_of_reading_a_tier(empty, caplog, monkeypatch, ("a(b]", "a(b] -plain", "kelvin_aka", "a\\b", "(b]_1"))


def test_a_filter_once_broad_then_passed_by_few_files_finds_exactly_those(empty):
    ids = [add(empty, f"mix/door_{number:02d}.wav", duration=2.0) for number in range(40)]
    longer = Filters(min_duration=1.0)
    assert empty.keyword_ranked(parse_keywords("door"), longer, limit=3) == ids[:3]  # remembered as broad
    empty.session.execute(update(File).where(File.id.in_(ids[:-1])).values(duration=0.5))
    empty.commit()
    assert empty.keyword_ranked(parse_keywords("door"), longer, limit=3) == [ids[-1]]
    assert empty.keyword_ranked(parse_keywords("oo"), longer, limit=3) == [ids[-1]]


def test_a_postgresql_catalog_made_before_the_index_of_texts_beyond_ascii_gets_it_when_opened_for_writing():
    url = fresh_database()
    with Catalog(url) as made:  # as a catalog made before it
        made.session.execute(text("DROP INDEX file_text_beyond_ascii"))
        made.commit()
    indexed = text("SELECT indexdef FROM pg_indexes WHERE indexname = 'file_text_beyond_ascii'")
    with Catalog(url) as opened:
        assert "(name || about)" in opened.session.scalar(indexed)


def test_a_postgresql_catalog_made_before_the_joined_index_is_read_as_before_and_gets_it_when_opened_for_writing():
    url = fresh_database()
    several = ["rain metal", "DOOR -metal, gate", "storm, latch -gate", "door rain", "or in", "door, rain -wood"]
    with Catalog(url) as made:
        for relative, status in NAMES.items():
            add(made, relative)
        built = {query: found(made, query) for query in QUERIES + several}
        made.session.execute(text("DROP INDEX file_text_joined"))  # as a catalog made before it
        made.commit()
    with Catalog(url, create=False) as reader:
        assert not keyword_index._joined_kept(reader.session)
        assert {query: found(reader, query) for query in QUERIES + several} == built
    with Catalog(url) as writer:
        assert keyword_index._joined_kept(writer.session)
        # Its expression analysed with it: the planner knows how many texts hold a word.
        assert writer.session.scalar(text("SELECT count(*) FROM pg_stats WHERE tablename = 'file_text_joined'")) == 1
        assert {query: found(writer, query) for query in QUERIES + several} == built


def test_postgresql_finds_several_words_through_the_index_of_the_joined_text():
    # The words' condition must be the index's own expression, or PostgreSQL reads every text.
    with Catalog(fresh_database()) as opened:
        ids = {relative: add(opened, relative) for relative in NAMES}
        anywhere = keyword_index._anywhere(opened.session)
        statement = select(FileText.file_id).where(anywhere("door"), anywhere("rain"))
        compiled = statement.compile(opened.engine, compile_kwargs={"literal_binds": True})
        opened.session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(opened.session.scalars(text(f"EXPLAIN {compiled}")))
        assert "file_text_joined" in plan and "file_text_trigrams" not in plan, plan
        assert sorted(opened.session.scalars(statement)) == sorted(
            file_id for relative, file_id in ids.items() if "door" in relative.lower() and "rain" in relative.lower())


def test_every_postgresql_connection_plans_each_statement_for_its_own_words():
    # A keyword search's statement is the same text whatever its words: planned once for any
    # words (after psycopg prepares it), "a -b, c" had pg_trgm's index read each word twice.
    with Catalog(fresh_database()) as opened:
        for _ in range(7):  # past psycopg's threshold for preparing a statement
            opened.keyword_ranked(parse_keywords("door -metal, gate"))
        opened.session.rollback()
        reader = opened.reader()
        with opened.engine.connect() as third:
            modes = [opened.session.scalar(text("SHOW plan_cache_mode")),
                     reader.session.scalar(text("SHOW plan_cache_mode")),
                     third.scalar(text("SHOW plan_cache_mode"))]
        reader.close()
    assert modes == ["force_custom_plan"] * 3


QUERIES = ["door", "DOOR -metal, gate", "rain metal", "in", "_s", "04", "-wav", '"thunder clap"', "ath",
           "storm, latch -gate", "wood", "library", "100%", "x"]


def test_a_catalog_made_before_the_index_is_read_as_before_and_built_when_opened_for_writing(empty):
    for relative, status in NAMES.items():
        if relative.isascii():
            add(empty, relative)
    add(empty, "misc/take_04.wav", description="Thunder clap, distant, rolling", tags=("Storm", "field recording"),
        ucs_category="AMBIENCE", ucs_cat_id="WEATHStorm", ucs_subcategory="Storm")
    built = {query: found(empty, query) for query in QUERIES}
    url = empty.engine.url.render_as_string(hide_password=False)
    empty.rollback()  # its reading done: PostgreSQL drops no table a transaction has read
    with empty.engine.begin() as connection:  # as a catalog made before file_text was
        for statement in ("DROP TABLE file_text_index", "DROP TABLE file_text") if "sqlite" in url else (
                "DROP TABLE file_text",):
            connection.execute(text(statement))
        connection.execute(Meta.__table__.delete().where(Meta.key == "keyword_text"))

    with Catalog(url, create=False) as reader:
        assert {query: found(reader, query) for query in QUERIES} == built
        with pytest.raises(Exception):
            reader.session.execute(select(FileText.file_id)).all()
    with Catalog(url) as writer:
        assert writer.session.scalar(select(func.count()).select_from(FileText)) == len(NAMES)
        assert {query: found(writer, query) for query in QUERIES} == built
        add(writer, "late/door_bell.wav")
        assert found(writer, "bell") == ["late/door_bell.wav"]


def test_a_catalog_made_before_rank_keys_is_read_as_before_and_built_again_when_opened_for_writing(empty):
    for relative in NAMES:
        add(empty, relative)
    built = {query: found(empty, query) for query in QUERIES}
    url = empty.engine.url.render_as_string(hide_password=False)
    empty.rollback()
    with empty.engine.begin() as connection:  # as the version before: no rank keys
        if "sqlite" in url:
            for statement in ("DROP TRIGGER file_text_added", "DROP TRIGGER file_text_removed",
                              "DROP TRIGGER file_text_changed", "DROP TABLE file_text_terms",
                              "DROP TABLE file_text_index", "DROP INDEX ix_file_text_rank_key"):
                connection.execute(text(statement))
            connection.execute(update(Meta).where(Meta.key == "keyword_text").values(value="1"))
        connection.execute(text("ALTER TABLE file_text DROP COLUMN rank_key"))

    with Catalog(url, create=False) as reader:
        assert {query: found(reader, query) for query in QUERIES} == built
    with Catalog(url) as writer:
        assert {query: found(writer, query) for query in QUERIES} == built
        assert len(keys_in_name_order(writer)) == len(NAMES)
        add(writer, "late/door_bell.wav")
        assert found(writer, "bell") == ["late/door_bell.wav"]
        keys_in_name_order(writer)


BOTH_FILTERS = (Filters(), Filters(formats=("wav",)))  # none, and one most files pass


def test_a_postgresql_catalog_whose_texts_lack_rank_keys_is_read_as_before_and_keyed_when_opened_for_writing():
    # As main left PostgreSQL's catalogs (texts without keys), or as an older version leaves one
    # it wrote a text in: read through the texts' indexes and the names' order, as before; opened
    # for writing, every text written again with its key.
    url = fresh_database()
    with Catalog(url) as made:
        ids = [add(made, f"mix/{name}_door.wav", tags=("kept",)) for name in ("b", "a", "c", "ab", "A")]
        ids += made.add_files([NewFile(f"{ROOT}/bulk/door_{number:02d}.wav", ROOT, 1, 0.0, None, Metadata())
                               for number in range(30)])
        made.session.execute(update(File).values(status=INDEXED))
        made.commit()
        expected = {query: [reference(made, query, filters, False, None) for filters in BOTH_FILTERS]
                    for query in ("door", "do", "kept", "door -bulk", "oor, mix")}
        assert len(keys_in_name_order(made)) == len(ids)
    for lacking in ("every text", "one text"):
        with Catalog(url) as opened:
            keyless = update(FileText).values(rank_key=None)
            opened.session.execute(keyless if lacking == "every text" else keyless.where(FileText.file_id == ids[2]))
            opened.commit()
        with Catalog(url, create=False) as reader:
            assert not keyword_index.keys_kept(reader.session)
            for query, rankings in expected.items():
                for filters, ranking in zip(BOTH_FILTERS, rankings):
                    for limit in (1, 4, 100):
                        assert reader.keyword_ranked(parse_keywords(query), filters, limit=limit) == ranking[:limit]
        with Catalog(url) as writer:
            assert keyword_index.keys_kept(writer.session)
            assert len(keys_in_name_order(writer)) == len(ids)
            # Written in key order: the table holds them so, for a walk along the keys.
            stored = writer.session.scalars(text("SELECT rank_key FROM file_text ORDER BY ctid")).all()
            assert stored == sorted(stored)
            for query, rankings in expected.items():
                for filters, ranking in zip(BOTH_FILTERS, rankings):
                    for limit in (1, 4, 100):
                        assert writer.keyword_ranked(parse_keywords(query), filters, limit=limit) == ranking[:limit]


def test_postgresql_places_rank_keys_in_its_own_collation_not_pythons():
    # Under ICU's English order, "_x" < "a" < "B" < "z" < "Z" by name; Python (and C) put
    # capitals, then "_", first. Files added one at a time, in batches and renamed find their
    # places among the others as the database orders them, and rankings follow it.
    url = fresh_database("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    rng = random.Random(3)
    stems = ["_x", "a", "B", "b", "z", "Z", "Ab", "aB", "é", "e", "E", "10", "9"]
    with Catalog(url) as catalog:
        for stem in stems[:5]:
            add(catalog, f"one/{stem}_tone.wav")
        names = [f"{rng.choice(stems)}{rng.choice(stems)}_tone {number}" for number in range(60)]
        catalog.add_files([NewFile(f"{ROOT}/batch/{name}.wav", ROOT, 1, 0.0, None, Metadata(tags=("take",)))
                           for name in names])
        catalog.session.execute(update(File).values(status=INDEXED))
        catalog.commit()
        for file_id in rng.sample(catalog.session.scalars(select(File.id)).all(), 10):
            record = catalog.file_by_id(file_id)
            catalog.move_file(record, f"{ROOT}/moved/{rng.choice(stems)}_{record.name}", root=ROOT, mtime=1.0)
        catalog.commit()
        ordered = catalog.session.scalars(select(File.name).order_by(File.name, File.id)).all()
        assert ordered != sorted(ordered)  # the database's order is not Python's
        assert len(keys_in_name_order(catalog)) == 65
        for query in ("tone", "to", "take", "tone -moved", "_t"):
            expected = reference(catalog, query, Filters(), False, None)
            assert len(expected) > 3
            for limit in (1, 3, 17, 100):
                assert catalog.keyword_ranked(parse_keywords(query), limit=limit) == expected[:limit], (query, limit)


def test_a_postgresql_database_that_cannot_make_pg_trgm_is_refused_in_one_line():
    import uuid

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from search.catalog import KeywordIndexUnavailable

    url = make_url(fresh_database())
    owner = url.set(drivername="postgresql").render_as_string(hide_password=False)
    role, password = f"clapdex_plain_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(owner, autocommit=True) as connection:
        try:  # generated names: identifiers cannot be bound
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                                 sql.Literal(password)))
        except psycopg.errors.InsufficientPrivilege:
            if os.environ.get("CI"):  # .ci/run gives its role CREATEROLE: this must run there
                raise
            pytest.skip("the test server's user may not create roles")
        # It may make tables, but not extensions (CREATE on the database is what pg_trgm asks).
        connection.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        # Its member, so that what it makes can be dropped after (needed short of a superuser).
        connection.execute(f'GRANT "{role}" TO CURRENT_USER')
    try:
        with pytest.raises(KeywordIndexUnavailable) as refused:
            Catalog(url.set(username=role, password=password).render_as_string(hide_password=False))
        message = str(refused.value)
        assert "\n" not in message and "CREATE EXTENSION pg_trgm" in message and "permission denied" in message
    finally:
        with psycopg.connect(owner, autocommit=True) as connection:
            connection.execute(f'DROP OWNED BY "{role}"')
            connection.execute(f'DROP ROLE "{role}"')


# A library large enough for every way of ranking: tiers walked in name order or sorted, with
# filters, words too short for trigrams. Each file's name, folder and what it says are drawn
# from a few syllables, so that words match many files, in the name, elsewhere or both.
SYLLABLES = ("do", "or", "ra", "in", "me", "ta", "wo", "od", "cr", "ea", "k", "é")
VARIED_QUERIES = [
    "door", "or", "d", "é", "crea", "rain", "me", "raint", "door rain", "door -rain", "door, rain", "or -in, ta",
    "wood -k, meta", "-door", "-door, ra", "ra -or -in", '"or ra"', "do or ra", "take", "wav", "zzz", "k me, é -or",
    "door -metal, gate",
]
VARIED_FILTERS = [Filters(), Filters(formats=("flac",)), Filters(categories=("DOOR",)), Filters(min_duration=2.0),
                  Filters(folders=(f"{ROOT}/orra",)), Filters(tags=("crea",))]


@pytest.fixture(scope="module", params=BACKENDS)
def varied(request, tmp_path_factory):
    rng = random.Random(15)

    def words(count: int) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(count))

    with new_catalog(request.param, tmp_path_factory.mktemp("varied")) as opened:
        new, ids = [], []
        for number in range(400):
            extension = rng.choice(("wav", "flac", "WAV"))
            name = f"{words(rng.randint(1, 3)).title()}_{words(2)} {number % 37:03d}.{extension}"
            folder = rng.choice(("orra", "dome", "take 1", "k"))
            new.append(NewFile(
                f"{ROOT}/{folder}/{name}", ROOT, 1, 0.0, None, Metadata(
                    duration=rng.uniform(0.5, 4.0), description=words(3) if rng.random() < 0.4 else None,
                    tags=tuple(words(2) for _ in range(rng.randint(0, 2))),
                    ucs_category=rng.choice(("DOOR", "RAIN", None)))))
            if number in (150, 300, 399):  # in three commits: files added among others, as scans do
                ids += opened.add_files(new)
                opened.commit()
                new = []
        for file_id in ids:
            opened.session.execute(update(File).where(File.id == file_id).values(
                status=rng.choice((INDEXED, INDEXED, PENDING, ERROR))))
        for file_id in rng.sample(ids, 30):  # renamed: a new place in name order
            record = opened.file_by_id(file_id)
            opened.move_file(record, f"{ROOT}/{record.folder.rsplit('/', 1)[-1]}/{words(2)}_{record.name}",
                             root=ROOT, mtime=1.0)
        opened.commit()
        yield opened


def reference(catalog: Catalog, text_: str, filters: Filters, pending: bool, exclude_id: int | None) -> list[int]:
    """The ranking keyword search promises, worked out in Python from each file's text: 2 for
    a word wanted in the name, 1 elsewhere; then the database's name order; then the id."""
    query = parse_keywords(text_)
    texts = {file_id: (name, about) for file_id, name, about in catalog.session.execute(
        select(FileText.file_id, FileText.name, FileText.about))}
    passing = set(catalog.session.scalars(select(File.id).where(_passing(filters, pending))))
    name_order = {file_id: place for place, file_id in enumerate(catalog.session.scalars(
        select(File.id).order_by(File.name, File.id)))}

    def holds(field: str, word: str) -> bool:
        return SEPARATOR not in word and word in field

    ranked = []
    for file_id in passing - {exclude_id}:
        name, about = texts[file_id]
        if any(all(holds(name, k.word) or holds(about, k.word) for k in group if not k.negated)
               and not any(holds(name, k.word) or holds(about, k.word) for k in group if k.negated)
               for group in query.alternatives):
            relevance = sum(2 * holds(name, word) + holds(about, word) for word in query.wanted)
            ranked.append((-relevance, name_order[file_id], file_id))
    return [file_id for *_, file_id in sorted(ranked)]


def test_rank_keys_follow_name_order_as_files_come_and_go(varied):
    # Rank keys (FTS5's row ids on SQLite) follow name order exactly: what ranking relies on.
    # Files added in later commits, and renamed ones, took keys between their neighbours'.
    assert len(keys_in_name_order(varied)) == 400


@pytest.mark.parametrize("filters", VARIED_FILTERS, ids=range(len(VARIED_FILTERS)))
def test_every_ranking_is_the_one_promised_whatever_the_query_filters_and_limit(varied, filters):
    excluded = varied.session.scalar(select(File.id).where(File.status == INDEXED).order_by(File.id))
    for text_ in VARIED_QUERIES:
        for pending in (False, True):
            for exclude_id in (None, excluded):
                expected = reference(varied, text_, filters, pending, exclude_id)
                for limit in (0, 1, 3, 17, 60, 1000):
                    assert varied.keyword_ranked(parse_keywords(text_), filters, pending=pending, exclude_id=exclude_id,
                                                 limit=limit) == expected[:limit], (text_, pending, exclude_id, limit)


@pytest.mark.parametrize("varied", ["postgresql"], indirect=True)  # the joined index is PostgreSQL's
def test_postgresql_ranks_several_words_alike_with_and_without_the_joined_index(varied):
    assert varied.engine.dialect.name == "postgresql"
    queries = [query for query in VARIED_QUERIES if len(parse_keywords(query).wanted) > 1 or "-" in query]
    cases = [(query, filters, limit) for query in queries for filters in (Filters(), Filters(min_duration=2.0))
             for limit in (1, 17, 1000)]
    joined = [varied.keyword_ranked(parse_keywords(query), filters, limit=limit) for query, filters, limit in cases]
    connection = varied.session.connection()
    info = connection.info  # the database connection's: what it has seen of the index
    connection.execute(text("DROP INDEX file_text_joined"))  # undone by the rollback below
    info.pop(keyword_index._JOINED_SEEN, None)
    try:
        assert not keyword_index._joined_kept(varied.session)
        assert [varied.keyword_ranked(parse_keywords(query), filters, limit=limit)
                for query, filters, limit in cases] == joined
    finally:
        varied.rollback()
        info.pop(keyword_index._JOINED_SEEN, None)
    assert keyword_index._joined_kept(varied.session)


@pytest.mark.parametrize("backend", BACKENDS)
def test_room_is_made_in_name_order_for_files_added_between_two_others(tmp_path, backend):
    # Two files whose keys were given when the index was built have _SPACING - 1 keys free
    # between them; hundreds of files named between them, added one at a time, in batches and
    # by renaming, in any order, make the files around them move apart, the keys kept exact.
    rng = random.Random(7)
    with new_catalog(backend, tmp_path) as catalog:
        for relative in ("edge/a.wav", "edge/b.wav", "edge/c.wav"):
            add(catalog, relative, tags=("edge",))
        numbers = list(range(400))
        rng.shuffle(numbers)
        for number in numbers[:60]:
            add(catalog, f"one/a_{number:03d}.wav", tags=(f"take{number % 7}",))
        catalog.add_files([NewFile(f"{ROOT}/batch/a_{number:03d}.wav", ROOT, 1, 0.0, None,
                                   Metadata(tags=(f"take{number % 7}",))) for number in numbers[60:]])
        catalog.commit()
        for file_id in rng.sample(catalog.session.scalars(select(File.id)).all(), 40):
            record = catalog.file_by_id(file_id)
            catalog.move_file(record, f"{ROOT}/moved/{rng.choice('abc')}_{record.name}", root=ROOT, mtime=1.0)
        catalog.commit()

        assert len(keys_in_name_order(catalog)) == 403
        for text_ in ("a_", "take3", "take3 -moved, edge", "wav", "a_1"):
            expected = reference(catalog, text_, Filters(), True, None)
            assert len(expected) > 1
            for limit in (1, 7, 100, 1000):
                assert catalog.keyword_ranked(parse_keywords(text_), pending=True, limit=limit) == expected[:limit]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_whose_first_files_move_others_is_placed_before_its_last_ones_find_their_neighbours(tmp_path, backend):
    # When the first run of a batch's files (between b and d) has no room and moves keys, the
    # files after it (between d and f, and after f) are placed by their neighbours' moved keys.
    with new_catalog(backend, tmp_path) as catalog:
        catalog.add_files([NewFile(f"{ROOT}/first/{name}.wav", ROOT, 1, 0.0, None, Metadata()) for name in "bdf"])
        catalog.commit()
        batch = [f"c_{number:03d}" for number in range(150)] + ["e", "g"]
        catalog.add_files([NewFile(f"{ROOT}/batch/{name}.wav", ROOT, 1, 0.0, None, Metadata(tags=("take",)))
                           for name in batch])
        catalog.commit()
        named = catalog.session.scalars(select(File.name).join(FileText, FileText.file_id == File.id)
                                        .order_by(File.name, File.id)).all()
        assert named == sorted(f"{name}.wav" for name in [*"bdf", *batch])
        assert len(keys_in_name_order(catalog)) == len(named)
        assert catalog.keyword_ranked(parse_keywords("take"), pending=True, limit=1000) == \
            reference(catalog, "take", Filters(), True, None)


def test_texts_owed_by_a_scan_are_found_once_paid_and_those_of_a_run_killed_before_paying_by_the_next(empty):
    # An index run's scan owes its new files' texts (Catalog.owe_texts) and writes them at once
    # (pay_texts); a run killed after committing files whose texts it owed leaves a note in meta
    # that the next run's pay_texts finds. Placed among files that have their texts, in name order.
    url = empty.engine.url.render_as_string(hide_password=False)
    empty.add_files([NewFile(f"{ROOT}/kept/{name}.wav", ROOT, 1, 0.0, None, Metadata(tags=("kept",))) for name in "bdf"])
    empty.commit()
    empty.owe_texts()
    owed = ["a", "c_1", "c_2", "e", "g", *(f"d_{number:03d}" for number in range(100))]
    ids = empty.add_files([NewFile(f"{ROOT}/new/{name}.wav", ROOT, 1, 0.0, None, Metadata(tags=("owed",))) for name in owed])
    moved = empty.file_by_id(ids[0])  # a file changed before the texts are paid has its text already
    empty.move_file(moved, f"{ROOT}/new/h.wav", root=ROOT, mtime=1.0)
    empty.commit()
    assert empty.owes_texts
    assert empty.keyword_ranked(parse_keywords("owed"), pending=True) == [ids[0]]
    empty.close()  # as if killed: the files and the note are committed, the texts not written

    with Catalog(url) as reopened:
        # Paid in steps (as an index run does between decoders' pieces), the first by name first; a
        # file given its text between two steps (changed by the run) is not written again.
        assert reopened.pay_texts(at_most=10) == 10
        renamed = reopened.file_by_id(ids[owed.index("g")])
        reopened.move_file(renamed, f"{ROOT}/new/gg.wav", root=ROOT, mtime=1.0)
        paid = 10
        while step := reopened.pay_texts(at_most=10):
            paid += step
        assert paid == len(owed) - 1
        reopened.commit()
        assert reopened.pay_texts() == 0
        assert reopened.session.scalar(select(func.count()).select_from(FileText)) == 3 + len(owed)
        assert sorted(reopened.keyword_ranked(parse_keywords("owed"), pending=True, limit=1000)) == sorted(ids)
        assert reopened.keyword_ranked(parse_keywords("owed"), pending=True, limit=1000) == \
            reference(reopened, "owed", Filters(), True, None)
        keys_in_name_order(reopened)


@pytest.mark.parametrize("scripts", ["latin", "many"])
def test_words_of_two_letters_are_found_by_the_trigrams_they_begin_however_many_characters_names_hold(tmp_path, scripts):
    # SQLite finds a word of two letters as the trigrams it begins: the word followed by each
    # character the texts hold, kept in meta; past _CHARACTERS_MOST characters (names in many
    # scripts), by reading FTS5's vocabulary. Either way, the ranking promised.
    from search.keyword_index import _CHARACTERS_KEY, _CHARACTERS_MOST

    rng = random.Random(3)
    extra = [chr(0x4E00 + number) for number in range(_CHARACTERS_MOST + 50)] if scripts == "many" else ["é", "ü"]
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        for number in range(120):
            stem = "".join(rng.choice(["ab", "ba", "ca", "a", "b", *extra]) for _ in range(rng.randint(2, 6)))
            add(catalog, f"{rng.choice(['ab', 'x'])}/{stem}_{number}.wav", tags=(rng.choice(["cab", "b a", "ab"]),))
        characters = catalog.session.scalar(select(Meta.value).where(Meta.key == _CHARACTERS_KEY))
        assert set("abcx_.wv") <= set(characters) and (len(characters) > _CHARACTERS_MOST) == (scripts == "many")
        for text_ in ("ab", "ba", "a_", "b ", "ab -ca", "ab, ba", "ab cab", extra[0] + extra[1], "a" + extra[0]):
            expected = reference(catalog, text_, Filters(), False, None)
            for limit in (1, 5, 1000):
                assert catalog.keyword_ranked(parse_keywords(text_), limit=limit) == expected[:limit], (text_, limit)


def test_a_word_whose_trigrams_are_mostly_common_is_found_by_its_rare_part_and_tested_exactly(empty):
    # Every file's tags hold "take" and a number: "tak", "ake" and "ke1" are in most files, so
    # SQLite finds the few that may hold "take1005" by "e1005" (sparse: FTS5 skips the dense
    # lists), which decoys hold too ("fade1005", "e1005" in a description, across two fields).
    rng = random.Random(11)
    new = [NewFile(f"{ROOT}/takes/clip_{number:03d}.wav", ROOT, 1, 0.0, None,
                   Metadata(tags=(f"take{rng.randint(1100, 1999)}",))) for number in range(400)]
    new += [NewFile(f"{ROOT}/takes/take1005_{number}.wav", ROOT, 1, 0.0, None, Metadata(tags=("take1005",) * (number % 2)))
            for number in range(3)]
    new += [NewFile(f"{ROOT}/takes/tagged_{number}.wav", ROOT, 1, 0.0, None, Metadata(tags=("take1005", "fade1005")))
            for number in range(4)]
    new += [NewFile(f"{ROOT}/decoys/fade1005_{number}.wav", ROOT, 1, 0.0, None,
                    Metadata(tags=("take1200",), description="e1005 take")) for number in range(6)]
    new += [NewFile(f"{ROOT}/decoys/tak.wav", ROOT, 1, 0.0, None, Metadata(description="e1005"))]
    empty.add_files(new)
    empty.commit()
    empty.session.execute(update(File).values(status=INDEXED))
    empty.commit()
    if empty.engine.dialect.name == "sqlite":
        from search.keyword_index import _sparse_part

        cursor = empty.session.connection().connection.cursor()
        assert _sparse_part(cursor, "take1005") == "e1005" and _sparse_part(cursor, "fade") == "fade"
        cursor.close()
    for text_ in ("take1005", "take1005 -fade1005", "take1005, fade1005", "ake1005 -decoys", "take1005 clip, tak"):
        expected = reference(empty, text_, Filters(), False, None)
        assert expected
        for limit in (1, 3, 5, 60, 1000):  # few wanted: FTS5's tiers, by the word; more: tested from "e1005"
            assert empty.keyword_ranked(parse_keywords(text_), limit=limit) == expected[:limit], (text_, limit)
