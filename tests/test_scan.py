"""Finding audio files under the paths a user names."""

from __future__ import annotations

import os

import pytest

from indexer.scan import scan


def test_scan_finds_audio_by_extension_once_each_and_survives_symlink_loops(tmp_path):
    library = tmp_path / "library"
    (library / "b" / "inner").mkdir(parents=True)
    for name in ["a.WAV", "b/x.flac", "b/inner/y.m4a", "b/notes.txt", "b/cover.jpg"]:
        (library / name).write_bytes(b"")
    os.symlink(library, library / "b" / "inner" / "loop")  # walking into it would never end
    os.symlink(library / "b", tmp_path / "elsewhere")

    found = list(scan([library, library / "b" / "x.flac", tmp_path / "elsewhere"]))

    assert [f.path for f in found] == [str(library / n) for n in ["a.WAV", "b/x.flac", "b/inner/y.m4a"]]
    assert {f.root for f in found} == {str(library)}


def test_a_named_file_is_taken_whatever_its_extension(tmp_path):
    (tmp_path / "take.me").write_bytes(b"")
    assert [(f.path, f.root) for f in scan([tmp_path / "take.me"])] == [(str(tmp_path / "take.me"), str(tmp_path))]


def test_a_missing_path_fails_before_anything_is_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        scan([tmp_path, tmp_path / "no-such"])
