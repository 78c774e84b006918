"""An index run as one stream: decoders started before the model, no vector file rewritten
for nothing."""

from __future__ import annotations

import os

from libraries import index_into
from sounds import sox_tone

from indexer.pipeline import start_index_workers
from search.config import load_settings
from search.store import faiss_file


def children() -> set[int]:
    pids = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            pids.update(int(pid) for pid in listing.read().split())
    return pids


def test_a_run_uses_the_workers_started_before_it_and_starts_no_others(tmp_path, tiny_encoder):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for number in range(80):  # more than one scan batch, so the scan's readers work too
        sox_tone(sounds / f"tone{number:02d}.wav", 0.5, tone=f"sine {200 + 10 * number}")
    start_index_workers()
    started = children()
    assert started, "no worker processes were started"
    report = index_into(load_settings(tmp_path / "home", batch_size=4), [sounds], tiny_encoder)
    assert report.indexed == 80 and not report.errors
    assert children() == started


def test_an_unchanged_run_leaves_the_vector_file_alone(tmp_path, tiny_encoder):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for number in range(3):
        sox_tone(sounds / f"tone{number}.wav", 1, tone=f"sine {300 + 100 * number}")
    settings = load_settings(tmp_path / "home", batch_size=4)
    assert index_into(settings, [sounds], tiny_encoder).indexed == 3
    before = os.stat(faiss_file(settings))
    again = index_into(settings, [sounds], tiny_encoder)
    assert (again.indexed, again.unchanged) == (0, 3)
    after = os.stat(faiss_file(settings))
    # The file is replaced, never written in place: a rewrite shows as a new inode.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
