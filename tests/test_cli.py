"""The installed ``clapdex`` command, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sounds import BAD, build_library

CLAPDEX = Path(sys.executable).with_name("clapdex")


def clapdex(*args: str, home: Path, weights: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("CLAPDEX_WEIGHTS", None)
    options = ["--home", str(home), "--device", "cpu"] + (["--weights", str(weights)] if weights else [])
    return subprocess.run([str(CLAPDEX), *options, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def indexed_home(tmp_path_factory, tiny_weights):
    library = build_library(tmp_path_factory.mktemp("library") / "sounds")
    home = tmp_path_factory.mktemp("home")
    result = clapdex("index", str(library["tone"].parent), home=home, weights=tiny_weights)
    return home, library, result


def test_index_prints_a_summary_and_each_error(indexed_home):
    _, library, result = indexed_home

    assert result.returncode == 0, result.stderr
    assert "7 indexed, 0 skipped unchanged, 0 moved, 0 removed, 3 errors" in result.stdout
    for name in BAD:
        assert f"error: {library[name]}: " in result.stderr
    assert "Traceback" not in result.stderr


def test_search_prints_json_hits(indexed_home, tiny_weights):
    home, _, _ = indexed_home

    result = clapdex("search", "glass breaking", "--top", "3", "--json", home=home, weights=tiny_weights)

    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 3
    for hit in hits:
        assert os.path.isabs(hit["path"]) and {"score", "start", "end"} <= hit.keys()
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_similar_prints_a_table_pointing_at_the_matching_window(indexed_home, tiny_weights):
    home, library, _ = indexed_home

    result = clapdex("similar", str(library["tone"]), "--top", "2", home=home, weights=tiny_weights)

    header, first, second = result.stdout.splitlines()
    assert header.split() == ["rank", "score", "start-end", "(s)", "path"]
    assert first.split() == ["1", "1.000", "7.0-14.0", str(library["long"])]
    assert second.split()[0] == "2"


def test_status_lists_counts_model_and_errors(indexed_home):
    home, library, _ = indexed_home

    result = clapdex("status", home=home)

    assert result.returncode == 0, result.stderr
    assert "7 indexed, 3 errors" in result.stdout and "windows: 11" in result.stdout
    assert "msclap-2023" in result.stdout
    assert f"error: {library['corrupt']}: " in result.stdout


def test_missing_weights_is_one_message_and_exit_code_2(tmp_path):
    result = clapdex("search", "rain", home=tmp_path, weights=tmp_path / "nowhere.pth")

    assert result.returncode == 2
    assert result.stderr.startswith("clapdex: ") and "Traceback" not in result.stderr


def test_a_path_that_does_not_exist_is_a_user_error(tmp_path, tiny_weights):
    result = clapdex("index", str(tmp_path / "no-such-folder"), home=tmp_path, weights=tiny_weights)

    assert result.returncode == 2
    assert result.stderr == f"clapdex: no such file or folder: {tmp_path / 'no-such-folder'}\n"
