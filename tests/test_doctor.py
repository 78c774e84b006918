"""clapdex doctor: finds where catalog, vectors and disk disagree; --fix makes them agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from sounds import sox_tone
from libraries import index_into

from indexer.consistency import examine
from search.catalog import INDEXED, Catalog
from search.config import load_settings
from search.store import open_store

CLAPDEX = Path(sys.executable).with_name("clapdex")


def test_doctor_finds_and_fixes_orphans_missing_vectors_and_vanished_files(tmp_path, tiny_weights, tiny_encoder):
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for number, seconds in enumerate((1, 9, 2)):
        sox_tone(sounds / f"s{number}.wav", seconds, tone=f"sine {300 + 200 * number}")
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [sounds], tiny_encoder)
    with Catalog(settings.catalog_url) as catalog:
        damaged = catalog.file(str(sounds / "s1.wav"))
        damaged_ids = np.array([w.id for w in damaged.windows])
        store = open_store(settings, tiny_encoder.dim)
        before = store.reconstruct(damaged_ids)
        assert examine(catalog, store, full=True).healthy
        store.remove(damaged_ids[:1])  # a lost vector
        store.add(np.array([10_000]), before[:1])  # a vector no window names
        store.save()
    (sounds / "s2.wav").unlink()  # gone from disk

    def doctor(*flags):
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        command = [str(CLAPDEX), "--home", str(settings.home), "--device", "cpu", "--weights", str(tiny_weights), "doctor"]
        return subprocess.run([*command, *flags], capture_output=True, text=True, env=env, timeout=300)

    found = doctor()
    assert found.returncode == 1, found.stderr
    assert found.stdout.splitlines() == [
        "1 vectors belong to no window",
        f"missing vectors: {sounds / 's1.wav'}",
        f"missing on disk: {sounds / 's2.wav'}",
        "run `clapdex doctor --fix` to repair",
    ]

    fixed = doctor("--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "repaired; 1 files embedded again, 0 errors" in fixed.stdout
    assert doctor().stdout.strip() == "catalog, vectors and disk agree"
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, tiny_encoder.dim)
        assert sorted(record.path for record in catalog.files()) == [str(sounds / "s0.wav"), str(sounds / "s1.wav")]
        again = catalog.file(str(sounds / "s1.wav"))
        assert again.status == INDEXED and len(again.windows) == len(damaged_ids)
        assert np.allclose(store.reconstruct(np.array([w.id for w in again.windows])), before, atol=1e-4)
        assert sorted(store.ids()) == sorted(catalog.window_ids())


def indexed_tones(tmp_path, encoder, count: int):
    """``count`` 9-s tones of different pitches, indexed: (their folder, the settings)."""
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for number in range(count):
        sox_tone(sounds / f"s{number}.wav", 9, tone=f"sine {300 + 200 * number}")
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_into(settings, [sounds], encoder)
    return sounds, settings


def test_a_lost_vector_names_the_file_of_its_window(tmp_path, tiny_encoder):
    """Window ids and file ids differ: the missing vector's window leads to its own file."""
    sounds, settings = indexed_tones(tmp_path, tiny_encoder, 3)
    with Catalog(settings.catalog_url) as catalog:
        last = catalog.file(str(sounds / "s2.wav"))
        store = open_store(settings, tiny_encoder.dim)
        store.remove(np.array([last.windows[-1].id]))
        assert last.windows[-1].id != last.id
        assert examine(catalog, store).files_missing_vectors == [last.path]


def test_a_catalog_row_deleted_by_hand_leaves_no_orphans_behind(tmp_path, tiny_weights, tiny_encoder):
    """sqlite3's shell leaves foreign keys off: deleting a file's row there keeps its windows,
    their vectors and its tags. Searches must not count them, and doctor must clear them."""
    import json
    import sqlite3

    sounds, settings = indexed_tones(tmp_path, tiny_encoder, 5)
    with sqlite3.connect(settings.home / "catalog.sqlite") as connection:
        file_id, = connection.execute("SELECT id FROM files WHERE name = 's2.wav'").fetchone()
        connection.execute("INSERT INTO file_tags (file_id, tag) VALUES (?, 'deleted')", (file_id,))
        connection.execute("DELETE FROM files WHERE id = ?", (file_id,))
        orphans = connection.execute("SELECT count(*) FROM windows WHERE file_id = ?", (file_id,)).fetchone()[0]
    assert orphans == 2

    def clapdex(*args):
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        command = [str(CLAPDEX), "--home", str(settings.home), "--device", "cpu", "--weights", str(tiny_weights)]
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)

    # The tone just under s2's: its windows would otherwise crowd the top of the ranking.
    found = clapdex("similar", str(sounds / "s2.wav"), "--top", "3", "--json")
    assert len(json.loads(found.stdout)) == 3, found.stderr

    report = clapdex("doctor")
    assert report.returncode == 1
    assert report.stdout.splitlines()[:2] == ["2 windows belong to no file (its catalog row was deleted)",
                                             "1 tags belong to no file"]
    assert clapdex("doctor", "--fix").returncode == 0
    assert clapdex("doctor").stdout == "catalog, vectors and disk agree\n"
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, tiny_encoder.dim)
        assert sorted(store.ids()) == sorted(catalog.window_ids()) and len(catalog.window_ids()) == 8


def test_reading_verbs_warn_when_the_vectors_are_gone(tmp_path, tiny_weights, tiny_encoder):
    import shutil

    sounds = tmp_path / "sounds"
    sounds.mkdir()
    sox_tone(sounds / "tone.wav", 2)
    settings = load_settings(tmp_path / "home")
    index_into(settings, [sounds], tiny_encoder)
    shutil.rmtree(settings.vectors_dir)  # a home restored without its vectors

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [str(CLAPDEX), "--home", str(settings.home), "--device", "cpu", "--weights", str(tiny_weights)]
    warning = ("clapdex: warning: the catalog names 1 windows but the vector store holds 0 vectors, so results may "
               "be missing; run `clapdex doctor` to see why and `clapdex doctor --fix` to repair\n")
    for verb, status, after in ((["search", "a tone"], 1, "clapdex: no files match\n"), (["status"], 0, "")):
        result = subprocess.run([*command, *verb], capture_output=True, text=True, env=env, timeout=300)
        assert (result.returncode, result.stderr) == (status, warning + after)
