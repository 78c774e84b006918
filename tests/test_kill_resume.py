"""kill -9 an index run at several moments, rerun, and get what one uninterrupted run gets."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import exists, func, select
from sounds import ffmpeg_tone, sox_tone
from libraries import index_into

from search.library import describe_run, read_progress
from search.catalog import Catalog, File, FileText, Meta
from search.keyword_index import _OWED_KEY
from search.config import load_settings
from search.store import open_store

CLAPDEX = Path(sys.executable).with_name("clapdex")


def start_index(home: Path, library: Path, weights: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLAPDEX_BATCH_SIZE": "2"}
    command = [str(CLAPDEX), "--home", str(home), "--device", "cpu", "--weights", str(weights),
               "index", str(library), "--commit-every", "1"]
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run.home = home
    return run


def indexed_count(home: Path) -> int:
    try:
        with sqlite3.connect(f"file:{home / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT count(*) FROM files WHERE status != 'pending'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or its tables not yet
        return -1


def outcome(home: Path, dim: int) -> dict:
    """path -> (status, [(start, end, vector)]), after checking catalog and vectors agree."""
    settings = load_settings(home)
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, dim)
        ids = catalog.window_ids()
        assert len(ids) == len(set(ids)) and sorted(store.ids()) == sorted(ids), "catalog and vectors disagree"
        # Every file has its keyword text, those the killed run's scan owed too.
        assert catalog.session.scalar(select(func.count()).select_from(File).where(
            ~exists().where(FileText.file_id == File.id))) == 0
        assert catalog.session.scalar(select(Meta.value).where(Meta.key == _OWED_KEY)) is None
        return {
            record.path: (record.status, [(w.start, w.end, store.reconstruct(np.array([w.id]))[0]) for w in record.windows])
            for record in catalog.files()
        }


def assert_same(resumed: dict, reference: dict) -> None:
    assert sorted(resumed) == sorted(reference)
    for path, (status, windows) in reference.items():
        assert resumed[path][0] == status, path
        assert [w[:2] for w in resumed[path][1]] == [w[:2] for w in windows], path
        for (_, _, got), (_, _, expected) in zip(resumed[path][1], windows):
            assert np.allclose(got, expected, atol=1e-4), path


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    for number in range(24):
        sox_tone(folder / f"tone{number:02d}.wav", 1 + number % 4 * 2.5, tone=f"sine {200 + 90 * number}")
    ffmpeg_tone(folder / "coded.mp3", 4, frequency=900)
    (folder / "broken.flac").write_bytes(b"fLaC" + bytes(500))
    return folder


def run_paced(run: subprocess.Popen, until, active: float = 0.05, paused: float = 0.25) -> None:
    """Let ``run`` go on in short bursts, stopped (SIGSTOP) in between, until ``until()`` holds or it
    ends. However fast the machine, the run is then caught mid-way, at a moment the test chose:
    stopping a process changes nothing of what it computes. Its start-up (imports, the model)
    runs unpaced."""
    def started() -> bool:
        progress = read_progress(run.home) or {}
        return progress.get("pid") == run.pid and progress.get("phase") != "starting"

    while run.poll() is None and not started():
        time.sleep(0.01)
    while run.poll() is None:
        os.kill(run.pid, signal.SIGCONT)
        time.sleep(active)
        os.kill(run.pid, signal.SIGSTOP)
        if until():
            return
        time.sleep(paused)


def status(home: Path) -> str:
    return subprocess.run([str(CLAPDEX), "--home", str(home), "status"], capture_output=True, text=True).stdout


def test_killed_at_several_moments_then_resumed_equals_an_uninterrupted_run(tmp_path, library, tiny_weights, tiny_encoder):
    reference_settings = load_settings(tmp_path / "reference-home", batch_size=2)
    index_into(reference_settings, [library], tiny_encoder)
    reference = outcome(reference_settings.home, tiny_encoder.dim)

    home = tmp_path / "home"
    kills, seen_running, seen_interrupted = [], [], []
    # Kill during startup or the scan, then after 4 and after 8 more files are done.
    for step in (0, 4, 8):
        target = max(indexed_count(home), 0) + step
        run = start_index(home, library, tiny_weights)
        if step == 0:
            time.sleep(1.0)
        elif step == 4:
            run_paced(run, lambda: indexed_count(home) >= target)
        else:
            # Another process (this one) sees the run's progress, written once a second, while it goes on.
            def embedding_with_eta() -> bool:
                progress = read_progress(home)
                if indexed_count(home) >= target and progress and progress["running"] and progress.get("eta_seconds") is not None:
                    seen_running.append(describe_run(progress))
                    return True
                return False

            run_paced(run, embedding_with_eta)
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
            kills.append(step)
            run.wait(timeout=60)
            progress = read_progress(home)
            if progress is not None:  # none yet if killed while Python was still starting
                seen_interrupted.append(describe_run(progress))
        run.wait(timeout=60)
    assert len(kills) >= 2, f"the runs finished before they could be killed: {kills}"
    assert all(line.startswith("embedding ") and "files/s" in line and "ETA" in line for line in seen_running)
    assert seen_running, "no progress seen while a run was embedding"
    assert seen_interrupted and all("interrupted while" in line for line in seen_interrupted)

    final = start_index(home, library, tiny_weights)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    # Each of the 26 files is counted once: embedded now, or unchanged since an earlier run; the
    # unreadable one is this run's error, or unchanged where an earlier run found it so.
    indexed, unchanged, moved, removed, errors = map(int, re.findall(r"\d+", final.stdout.read()))
    assert indexed + unchanged + errors == 26 and (moved, removed) == (0, 0) and errors <= 1

    assert_same(outcome(home, tiny_encoder.dim), reference)
    after = status(home)
    assert "25 indexed, 1 errors, 0 pending" in after and "last run finished" in after
