"""clapdex doctor: finds where catalog, vectors and disk disagree; --fix makes them agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from sounds import sox_tone

from indexer import index_paths
from indexer.doctor import examine
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
    index_paths(settings, [sounds], encoder=tiny_encoder)
    with Catalog(settings.catalog_url) as catalog:
        damaged = catalog.file(str(sounds / "s1.wav"))
        damaged_ids = np.array([w.id for w in damaged.windows])
        store = open_store(settings, tiny_encoder.dim)
        before = store.reconstruct(damaged_ids)
        assert examine(catalog, store, check_disk=True).healthy
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
    assert doctor().stdout.strip() == "catalog and vectors agree"
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, tiny_encoder.dim)
        assert sorted(record.path for record in catalog.files()) == [str(sounds / "s0.wav"), str(sounds / "s1.wav")]
        again = catalog.file(str(sounds / "s1.wav"))
        assert again.status == INDEXED and len(again.windows) == len(damaged_ids)
        assert np.allclose(store.reconstruct(np.array([w.id for w in again.windows])), before, atol=1e-4)
        assert sorted(store.ids()) == sorted(catalog.window_ids())


def test_a_lost_vector_names_the_file_of_its_window(tmp_path, tiny_encoder):
    """Window ids and file ids differ: the missing vector's window leads to its own file."""
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    for number in range(3):
        sox_tone(sounds / f"s{number}.wav", 9, tone=f"sine {300 + 200 * number}")
    settings = load_settings(tmp_path / "home", batch_size=4)
    index_paths(settings, [sounds], encoder=tiny_encoder)
    with Catalog(settings.catalog_url) as catalog:
        last = catalog.file(str(sounds / "s2.wav"))
        store = open_store(settings, tiny_encoder.dim)
        store.remove(np.array([last.windows[-1].id]))
        assert last.windows[-1].id != last.id
        assert examine(catalog, store).files_missing_vectors == [last.path]
