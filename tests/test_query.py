"""Query arithmetic as rclip writes it, and the times a user types."""

from __future__ import annotations

import pytest

from search.query import Clip, Query, QueryError, Sound, Term, Text, parse_query, parse_time


def test_a_plain_description_is_one_text_term():
    assert parse_query("glass shattering on concrete, close") == Query((Term(Text("glass shattering on concrete, close")),))


def test_terms_are_added_and_subtracted_and_paths_are_sounds():
    query = parse_query("rain + ./thunder.wav - traffic")

    assert query.terms == (Term(Text("rain")), Term(Sound("./thunder.wav")), Term(Text("traffic"), -1.0))


def test_weights_scale_terms():
    query = parse_query("2:golden retriever + 0.5:/sfx/pool.flac - 1.5:fruit")

    assert [term.weight for term in query.terms] == [2.0, 0.5, -1.5]
    assert query.terms[1].source == Sound("/sfx/pool.flac")


def test_hyphens_and_slashes_inside_words_are_not_operators_or_paths():
    query = parse_query("lo-fi hiss + AC/DC amp hum")

    assert query.terms == (Term(Text("lo-fi hiss")), Term(Text("AC/DC amp hum")))


@pytest.mark.parametrize("text", ["rain +  ", "- traffic", "0:rain"])
def test_unreadable_arithmetic_is_a_sentence(text):
    with pytest.raises(QueryError):
        parse_query(text)


def test_queries_print_as_typed_and_hash_so_embeddings_can_be_cached():
    query = parse_query("2:rain + thunder.wav - traffic")

    assert str(query) == "2:rain + thunder.wav - traffic"
    assert hash(query) == hash(parse_query("2:rain + thunder.wav - traffic"))
    assert hash(Query.clip(b"RIFF", "mic.wav")) == hash(Query.clip(b"RIFF", "mic.wav"))
    assert str(Query((Term(Clip(b"", "mic.wav")),))) == "mic.wav"


def test_a_region_query_leaves_out_its_own_file():
    query = Query.sound("/sfx/long.wav", 12.0, 15.0)

    assert query.exclude_path == "/sfx/long.wav"
    assert str(query) == "long.wav 0:12.0–0:15.0"
    with pytest.raises(QueryError):
        Sound("/sfx/long.wav", 15.0, 12.0)
    with pytest.raises(QueryError):
        Sound("/sfx/long.wav", 15.0, None)


@pytest.mark.parametrize(("text", "seconds"), [("75", 75.0), ("1:15", 75.0), ("0:12.5", 12.5), ("1:02:03", 3723.0)])
def test_times_read_as_seconds_or_minutes(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1:xx", "-3"])
def test_a_bad_time_is_a_sentence(text):
    with pytest.raises(QueryError):
        parse_time(text)


def test_a_quoted_term_stays_whole_and_is_a_sound_when_it_looks_like_a_path():
    query = parse_query('''rain + "/sfx/001 - Dog bark/a.ogg" - 2:'./b - c.wav' + "heavy - slow"''')

    assert query.terms == (
        Term(Text("rain")), Term(Sound("/sfx/001 - Dog bark/a.ogg")), Term(Sound("./b - c.wav"), -2.0),
        Term(Text("heavy - slow")),
    )
    # Apostrophes inside words open no quote.
    assert parse_query("dog's bark - cat's meow").terms == (Term(Text("dog's bark")), Term(Text("cat's meow"), -1.0))


@pytest.mark.parametrize("text, says", [
    ('rain + "./a - b.wav', "not closed"),
    ('"./a.wav"b + rain', "not closed"),
    ('rain + "./a.wav" wind', "after a quoted term"),
    ('rain + ""', "no term beside it"),
])
def test_a_quote_that_does_not_close_a_term_is_a_sentence(text, says):
    with pytest.raises(QueryError, match=says):
        parse_query(text)


@pytest.mark.parametrize("text", [
    "rain", 'rain + "/sfx/a b/c.wav@0:07.0-0:14.0" - 2:traffic', "take.wav@1:02.0-1:05.5", "lo-fi hiss + ./x.flac",
])
def test_a_query_reads_back_from_its_typed_form(text):
    query = parse_query(text)
    assert parse_query(query.as_typed()) == query


def test_a_region_is_typed_after_an_at_sign():
    (term,) = parse_query("take.wav@62-65.5").terms
    assert term.source == Sound("take.wav", 62.0, 65.5)
    assert Query.sound("/x/y z.wav", 1.0, 2.5).as_typed() == '"/x/y z.wav@0:01.0-0:02.5"'
    assert parse_query("user@host").terms[0].source == Text("user@host")  # not a path: stays words


def test_a_clip_is_left_out_of_the_typed_form_and_marks_a_sound_query():
    query = Query(parse_query("rain").terms + Query.clip(b"RIFF", "x.wav").terms)
    assert query.as_typed() == "rain" and query.has_sound and not parse_query("rain").has_sound
