"""Concurrent calls gathered into batches (search.batching), and a Searcher used by many
threads at once giving what it gives one at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from search.batching import Gathered


def test_concurrent_calls_share_batches_and_each_gets_its_own_answer():
    batches = []

    def slow_squares(items):
        batches.append(list(items))
        time.sleep(0.05)  # while one batch runs, the other callers queue up
        return [item * item for item in items]

    squared = Gathered(slow_squares)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(squared, range(64)))
    assert answers == [n * n for n in range(64)]
    assert sorted(item for batch in batches for item in batch) == list(range(64))  # each item once
    assert len(batches) < 16 and max(map(len, batches)) > 1


def test_a_lone_call_runs_at_once_and_batches_are_bounded():
    sizes = []
    gathered = Gathered(lambda items: sizes.append(len(items)) or items, most=4)
    assert gathered("alone") == "alone" and sizes == [1]
    barrier = threading.Barrier(12)

    def call(item):
        barrier.wait()
        return gathered(item)

    with ThreadPoolExecutor(12) as pool:
        assert list(pool.map(call, range(12))) == list(range(12))
    assert max(sizes) <= 4


def test_one_batch_runs_at_a_time():
    running, most_running, lock = [0], [0], threading.Lock()

    def counted(items):
        with lock:
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return [-item for item in items]

    gathered = Gathered(counted)
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(gathered, range(48))) == [-n for n in range(48)]
    assert most_running[0] == 1


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_runs():
    def picky(items):
        time.sleep(0.02)
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    gathered = Gathered(picky)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(gathered, item) for item in ["a", "b", "bad", "c", "d", "e", "f", "g"]]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=10))
            except ValueError as error:
                outcomes.append(str(error))
    assert outcomes[2] == "bad item"
    assert all(outcome in ("bad item", item.upper()) for outcome, item in zip(outcomes, "abXcdefg"))
    assert gathered("after") == "AFTER"  # nothing stuck behind the failed batch


def test_results_counted_wrong_are_an_error_not_a_mixup():
    gathered = Gathered(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="gave 0 results for 1 items"):
        gathered("x")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_encoder):
    from libraries import index_into
    from sounds import build_library

    from search.config import load_settings

    files = build_library(tmp_path_factory.mktemp("concurrent") / "sounds")
    settings = load_settings(tmp_path_factory.mktemp("concurrent-home"))
    index_into(settings, [files["tone"].parent], tiny_encoder)
    return settings, files


def test_many_threads_searching_at_once_get_what_one_thread_gets(indexed, tiny_encoder):
    """A server's requests: each thread reads the catalog through its own session, text queries
    are embedded together, and no answer is another's."""
    from libraries import searching

    from search.filters import Filters
    from search.query import Query

    settings, files = indexed
    queries = [(Query.text(words), Filters()) for words in ("a steady tone", "rain", "a bell", "noise", "chirp")]
    queries += [(Query.sound(str(files["tone"])), Filters()), (Query.text("tone"), Filters(max_duration=2.0))]
    with searching(settings, encoder=tiny_encoder, library_only=True) as searcher:
        def run(pair):
            found = searcher.search(pair[0], filters=pair[1], page_size=5)
            return [(hit.path, hit.start) for hit in found.hits], [hit.score for hit in found.hits], found.total

        alone = [run(pair) for pair in queries]
        searcher.kept_texts.clear()  # the words embedded again, now in batches
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(run, queries * 6))
    # One caption alone or in a batch is the same arithmetic up to rounding in the last bits.
    for (hits, scores, total), (alone_hits, alone_scores, alone_total) in zip(together, alone * 6):
        assert (hits, total) == (alone_hits, alone_total)
        np.testing.assert_allclose(scores, alone_scores, atol=1e-5)


def test_a_searcher_takes_up_what_an_index_run_elsewhere_saved(tmp_path, tiny_encoder):
    """The page and the server stay open while `clapdex index` adds files: their next searches find them."""
    from libraries import index_into, searching
    from sounds import sox_tone

    from search.config import load_settings
    from search.query import Query

    folder = tmp_path / "sounds"
    folder.mkdir()
    sox_tone(folder / "first.wav", 1)
    settings = load_settings(tmp_path / "home")
    index_into(settings, [folder], tiny_encoder)
    with searching(settings, encoder=tiny_encoder, library_only=True) as searcher:
        assert searcher.search(Query.text("tone"), page_size=10).total == 1
        sox_tone(folder / "second.wav", 2, tone="sine 880")
        index_into(settings, [folder], tiny_encoder)  # as another process would: its own Library
        time.sleep(1.2)
        found = searcher.search(Query.text("tone"), page_size=10)
        assert sorted(hit.name for hit in found.hits) == ["first.wav", "second.wav"]
        # Its stored vectors are read from the new index; the file itself is left out of its likes.
        similar = searcher.search(Query.sound(str(folder / "second.wav")), page_size=10)
        assert [hit.name for hit in similar.hits] == ["first.wav"]
