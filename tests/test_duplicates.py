"""clapdex duplicates: exact copies by content hash; re-encodes, gain changes, resamples and
trims of real ESC-10 recordings by their embeddings (near-identical for any weights)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sounds import esc10_clips
from libraries import index_into

from search import duplicates
from search.duplicates import exact_duplicates, near_duplicates
from search.catalog import Catalog
from search.config import load_settings
from search.store import open_store

CLAPDEX = Path(sys.executable).with_name("clapdex")
# Random tiny weights put some unrelated recordings within 0.98 of each other; a real model
# spreads them further, and transformed copies stay above 0.999 either way.
THRESHOLD = 0.995


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("library")
    dog, *others = esc10_clips(4)
    original = folder / "dog.ogg"
    shutil.copyfile(dog, original)
    shutil.copyfile(dog, folder / "dog-copy.ogg")
    for clip in others:
        shutil.copyfile(clip, folder / clip.name)
    commands = {
        "dog-quieter.wav": ["sox", original, folder / "dog-quieter.wav", "gain", "-6"],
        "dog-22k.flac": ["sox", original, "-r", "22050", folder / "dog-22k.flac"],
        "dog-reencoded.mp3": ["ffmpeg", "-loglevel", "error", "-i", original, "-b:a", "96k", folder / "dog-reencoded.mp3"],
        "dog-trimmed.wav": ["sox", original, folder / "dog-trimmed.wav", "trim", "0.5"],
    }
    for command in commands.values():
        subprocess.run([str(part) for part in command], check=True)
    settings = load_settings(tmp_path_factory.mktemp("home"), batch_size=8)
    index_into(settings, [folder], tiny_encoder)
    return settings, folder, others


def test_exact_and_near_duplicates(indexed, tiny_encoder):
    settings, folder, others = indexed
    with Catalog(settings.catalog_url) as catalog:
        exact = exact_duplicates(catalog)
        near = near_duplicates(catalog, open_store(settings, tiny_encoder.dim), THRESHOLD)

    assert exact == [[str(folder / "dog-copy.ogg"), str(folder / "dog.ogg")]]
    variants = {"dog.ogg", "dog-copy.ogg", "dog-quieter.wav", "dog-22k.flac", "dog-reencoded.mp3", "dog-trimmed.wav"}
    assert all({Path(pair.first).name, Path(pair.second).name} <= variants for pair in near), near
    partners = {Path(pair.first).name for pair in near} | {Path(pair.second).name for pair in near}
    assert partners == variants
    assert ("dog.ogg", "dog-copy.ogg") not in {(Path(p.first).name, Path(p.second).name) for p in near}
    assert all(pair.score >= THRESHOLD for pair in near)
    assert [pair.score for pair in near] == sorted((pair.score for pair in near), reverse=True)


def test_duplicates_command_prints_json_and_deletes_nothing(indexed):
    settings, folder, _ = indexed
    before = sorted(path.name for path in folder.iterdir())

    result = subprocess.run(
        [str(CLAPDEX), "--home", str(settings.home), "duplicates", "--threshold", str(THRESHOLD), "--json"],
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["exact"] == [[str(folder / "dog-copy.ogg"), str(folder / "dog.ogg")]]
    assert found["near"] and {"first", "second", "score"} == set(found["near"][0])
    assert sorted(path.name for path in folder.iterdir()) == before


def test_index_keeps_the_kept_near_duplicates_current(indexed, tiny_weights, tiny_encoder):
    """Once `clapdex duplicates` has kept them, an index run that adds a file compares it with the
    library, and what is kept then equals a whole pass over the new library."""
    settings, folder, _ = indexed
    home = ["--home", str(settings.home)]
    kept = subprocess.run([str(CLAPDEX), *home, "duplicates", "--threshold", str(THRESHOLD)],
                          capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0, kept.stderr
    subprocess.run(["sox", str(folder / "dog.ogg"), str(folder / "dog-louder.wav"), "gain", "3"], check=True)

    index = subprocess.run([str(CLAPDEX), *home, "--weights", str(tiny_weights), "index", str(folder)],
                           capture_output=True, text=True, timeout=300)

    assert index.returncode == 0, index.stderr
    assert "near duplicates brought up to date in" in index.stdout
    with Catalog(settings.catalog_url) as catalog:
        now = duplicates.kept(catalog, THRESHOLD)
        whole = near_duplicates(catalog, open_store(settings, tiny_encoder.dim), THRESHOLD)
    assert now.current and now.pairs == whole
    assert any(Path(pair.first).name == "dog-louder.wav" or Path(pair.second).name == "dog-louder.wav"
               for pair in now.pairs)
