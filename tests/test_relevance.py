"""How well a hit matches, placed among this library's own scores (search.relevance), with the
shipped model over real recordings: the page's notice and `--json`'s fields."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from libraries import index_into, searching
from sounds import esc10_clips, sox_tone

from search.config import load_settings
from search.query import Query, parse_query
from search.relevance import made_up_words


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    library = tmp_path_factory.mktemp("relevance-library")
    for clip in esc10_clips(4):
        shutil.copyfile(clip, library / clip.name)
    for number, kind in enumerate(("sine", "square", "sawtooth", "triangle") * 2):
        sox_tone(library / f"{kind}_{number}.wav", 0.3 + 0.2 * number, tone=f"{kind} {300 + 200 * number}")
    home = tmp_path_factory.mktemp("relevance-home")
    index_into(load_settings(home, model="clapdex-compact", device="cpu"), [library])
    return home, library


def test_made_up_words_are_the_same_every_time_and_not_words():
    words = made_up_words()
    assert words == made_up_words() and len(set(words)) == len(words) == 32
    assert all(word.replace(" ", "").isalpha() for word in words)


def test_nonsense_is_weak_and_a_described_sound_is_not(home):
    with searching(load_settings(home[0])) as searcher:
        nonsense = searcher.search(parse_query("asdkjh qwe zzz"))
        rain = searcher.search(parse_query("rain falling"))

    assert nonsense.best_match == "weak"
    assert all(hit.match == "weak" and 0 <= hit.relevance < 0.8 for hit in nonsense.hits)
    assert rain.best_match in ("strong", "fair") and rain.hits[0].relevance >= 0.8
    relevances = [hit.relevance for hit in rain.hits]
    assert relevances == sorted(relevances, reverse=True)  # a placing of the scores: same order


def test_a_sound_query_is_placed_among_sounds(home):
    with searching(load_settings(home[0])) as searcher:
        found = searcher.search(Query.sound(str(home[1] / "sine_0.wav")))
        # A library file against itself (not left out this time): nearer than any neighbour is.
        itself = searcher.search(parse_query(str(home[1] / "sine_0.wav")))

    assert all(hit.relevance is not None for hit in found.hits)
    assert itself.hits[0].name == "sine_0.wav" and itself.hits[0].match == "strong"


def test_keywords_alone_and_words_mixed_with_sounds_have_no_relevance(home):
    with searching(load_settings(home[0])) as searcher:
        keywords = searcher.search(keywords_text="sine")
        mixed = searcher.search(parse_query(f"rain + {home[1] / 'sine_0.wav'}"))

    for found in (keywords, mixed):
        assert found.hits and found.best_match is None and all(hit.relevance is None for hit in found.hits)
    assert all(hit.score is not None for hit in mixed.hits)


def test_json_hits_carry_relevance_and_match(home):
    done = subprocess.run(
        [sys.executable, "-m", "clapdex", "--home", str(home[0]), "search", "asdkjh qwe zzz", "--json", "--top", "3"],
        capture_output=True, text=True, timeout=300,
    )
    hits = json.loads(done.stdout)

    assert done.returncode == 0 and len(hits) == 3
    assert all(hit["match"] == "weak" and 0 <= hit["relevance"] < 0.8 for hit in hits)
