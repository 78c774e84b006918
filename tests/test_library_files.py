"""The page plays only indexed files inside the library's roots, whatever path it is handed."""

from __future__ import annotations

import dataclasses

import pytest
from sounds import sox_tone
from libraries import index_into, searching

from search.config import load_settings


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_encoder):
    base = tmp_path_factory.mktemp("served")
    root = base / "library"
    root.mkdir()
    inside = sox_tone(root / "inside.wav", 1)
    outside = sox_tone(base / "outside.wav", 1)
    (root / "escape.wav").symlink_to(outside)
    settings = load_settings(base / "home")
    index_into(settings, [root], tiny_encoder)
    return settings, root, inside, outside


def test_an_indexed_file_inside_its_root_is_served(library, tiny_encoder):
    settings, _, inside, _ = library
    with searching(settings, encoder=tiny_encoder) as searcher:
        assert searcher.library_file(inside) == inside.resolve()


@pytest.mark.parametrize("name", ["outside", "escape", "traversal", "system"])
def test_paths_outside_the_library_are_refused(library, tiny_encoder, name):
    settings, root, _, outside = library
    path = {
        "outside": outside,  # a real audio file, never indexed
        "escape": root / "escape.wav",  # indexed through a symlink that leaves the root
        "traversal": root / ".." / "outside.wav",
        "system": "/etc/passwd",
    }[name]
    with searching(settings, encoder=tiny_encoder) as searcher, pytest.raises(PermissionError, match="not a file"):
        searcher.library_file(path)


def test_configured_roots_are_the_authority(library, tiny_encoder, tmp_path):
    settings, _, inside, _ = library
    narrowed = dataclasses.replace(settings, roots=(str(tmp_path),))
    with searching(narrowed, encoder=tiny_encoder) as searcher, pytest.raises(PermissionError):
        searcher.library_file(inside)
