"""The installed ``clapdex`` command, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clapdex import cli
from sounds import BAD, build_library, sox_tone

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


def test_index_json_is_one_object_with_the_counts_and_each_failure(tmp_path, tiny_weights):
    library = build_library(tmp_path / "sounds")
    home = tmp_path / "home"

    first = clapdex("index", str(library["tone"].parent), "--json", home=home, weights=tiny_weights)
    again = clapdex("--json", "index", str(library["tone"].parent), home=home, weights=tiny_weights)

    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    assert {key: outcome[key] for key in ("indexed", "unchanged", "moved", "removed", "errors")} == {
        "indexed": 7, "unchanged": 0, "moved": 0, "removed": 0, "errors": 3}
    assert sorted(failed["path"] for failed in outcome["failed"]) == sorted(str(library[name]) for name in BAD)
    assert all(failed["reason"] for failed in outcome["failed"]) and "error:" not in first.stderr
    assert again.returncode == 0 and json.loads(again.stdout)["unchanged"] == 10, again.stderr


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
    assert header.split() == ["rank", "score", "match", "start-end", "(s)", "path"]
    rank, score, match, span, path = first.split()
    assert (rank, score, span, path) == ("1", "1.000", "7.0-14.0", str(library["long"]))
    assert match in ("strong", "fair", "weak")  # how it ranks among this (random-weights) library's matches
    assert second.split()[0] == "2"


def test_status_lists_counts_model_and_errors(indexed_home):
    home, library, _ = indexed_home

    result = clapdex("status", home=home)

    assert result.returncode == 0, result.stderr
    assert "7 indexed, 3 errors" in result.stdout and "windows: 11" in result.stdout
    assert "msclap-2023" in result.stdout
    assert f"error: {library['corrupt']}: " in result.stdout


def test_missing_weights_is_one_line_and_exit_code_3(tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    sox_tone(library / "tone.wav", 1)

    result = clapdex("index", str(library), home=tmp_path / "home", weights=tmp_path / "nowhere.pth")

    assert result.returncode == 3
    assert result.stderr == f"clapdex: weights file {tmp_path / 'nowhere.pth'} (from --weights or CLAPDEX_WEIGHTS) " \
                            "does not exist\n"


def test_a_path_that_does_not_exist_is_a_user_error(tmp_path, tiny_weights):
    result = clapdex("index", str(tmp_path / "no-such-folder"), home=tmp_path, weights=tiny_weights)

    assert result.returncode == 2
    assert result.stderr == f"clapdex index: argument PATH: '{tmp_path / 'no-such-folder'}' is not an existing file or " \
                            "folder (see clapdex index --help)\n"
    assert not (tmp_path / 'catalog.sqlite').exists()


def test_a_folder_without_audio_is_said_so(tmp_path, tiny_weights):
    (tmp_path / "empty").mkdir()
    result = clapdex("index", str(tmp_path / "empty"), home=tmp_path / "home", weights=tiny_weights)

    assert result.returncode == 0
    assert "0 indexed" in result.stdout and f"clapdex: no audio files under {tmp_path / 'empty'}" in result.stderr


@pytest.mark.parametrize("home_exists", [False, True], ids=["no home", "empty home"])
@pytest.mark.parametrize("verb", [["search", "rain"], ["similar", "TONE"], ["status"], ["duplicates"], ["doctor"],
                                  ["doctor", "--fix"], ["forget", "TONE"], ["ui", "--port", "1"], ["status", "--json"]])
def test_reading_verbs_without_an_index_say_so_create_nothing_and_load_no_model(tmp_path, verb, home_exists):
    home = tmp_path / "home"
    if home_exists:
        home.mkdir()
    tone = sox_tone(tmp_path / "tone.wav", 1)
    # Weights that do not exist: loading a model would fail with another message.
    result = clapdex(*[str(tone) if part == "TONE" else part for part in verb], home=home,
                     weights=tmp_path / "absent.pth")

    assert result.returncode == 3
    assert result.stderr == f"clapdex: no index in {home}; run `clapdex index FOLDER` to make one\n"
    assert result.stdout == ""
    assert list(home.iterdir()) == [] if home_exists else not home.exists()


@pytest.mark.parametrize("args, named", [
    (["search", "x", "--top", "-1"], "'-1'"),
    (["search", "x", "--top", "0"], "'0'"),
    (["search", "--max-duration", "-3", "x"], "'-3'"),
    (["search", "x", "--min-duration", "5", "--max-duration", "2"], "--min-duration 5 is above --max-duration 2"),
    (["search", "x", "--format", "wavv"], "'wavv'"),
    (["search", "x", "--rate", "0"], "'0'"),
    (["search", "x", "--channels", "two"], "'two'"),
    (["search", "x", "--keyword-weight", "1.5"], "'1.5'"),
    (["search", "x", "--sort", "loudest"], "'loudest'"),
    (["search", "x", "--folder", "/no/such/folder"], "'/no/such/folder'"),
    (["search", "rain +"], "'rain +' has a + or - with no term beside it"),
    (["search", 'rain + "./a - b.wav'], "is not closed"),
    (["similar", "f.wav", "--start", "xyz", "--end", "3"], "'xyz'"),
    (["similar", "f.wav", "--start", "3"], "--start and --end go together"),
    (["similar", "no-such.wav"], "no such file: no-such.wav"),
    (["duplicates", "--threshold", "2"], "'2'"),
    (["forget", ""], "'' is not a path"),
    (["index", ".", "--commit-every", "0"], "'0'"),
    (["index", ".", "--watch", "--interval", "0"], "'0'"),
    (["ui", "--port", "70000"], "'70000'"),
    (["train", "--manifest", "m.csv", "--out", "o", "--epochs", "0"], "'0'"),
    (["--device", "gpu", "status"], "'gpu'"),
    (["status", "--store", "milvus"], "'milvus'"),
    (["--model", "clip", "status"], "'clip'"),
    (["frobnicate"], "'frobnicate'"),
])
def test_every_bad_value_is_named_in_one_line(tmp_path, args, named):
    result = clapdex(*args, home=tmp_path / "home")

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "home").exists()


def test_a_bad_setting_from_the_environment_is_named(tmp_path):
    env = {**os.environ, "CLAPDEX_DEVICE": "gpu"}
    result = subprocess.run([str(CLAPDEX), "--home", str(tmp_path), "status"], capture_output=True, text=True, env=env)

    assert result.returncode == 2
    assert result.stderr == "clapdex: setting 'device' has an invalid value 'gpu': expected auto, cpu, cuda, cuda:N, " \
                            "several such as cuda:0,cuda:1, or all\n"


def test_library_options_go_before_or_after_the_verb(indexed_home, tiny_weights):
    home, _, _ = indexed_home
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    options = ["--home", str(home), "--weights", str(tiny_weights), "--device", "cpu"]

    def run(*args):
        result = subprocess.run([str(CLAPDEX), *args], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    before = run(*options, "search", "a tone", "--json", "--top", "3")
    after = run("search", "a tone", "--json", "--top", "3", *options)
    between = run("--home", str(home), "search", "--weights", str(tiny_weights), "a tone", "--device", "cpu", "--json",
                  "--top", "3")
    verbs_own_first = run("--json", "--top", "3", *options, "search", "a tone")
    assert before == after == between == verbs_own_first and len(json.loads(before)) == 3


@pytest.mark.parametrize("argv, expected", [
    (["--top", "2", "search", "bell"], ["search", "--top", "2", "bell"]),
    (["--home", "search", "search", "bell"], ["search", "--home", "search", "bell"]),
    (["--home=search", "search", "index"], ["search", "--home=search", "index"]),
    (["--json", "keys", "list"], ["keys", "list", "--json"]),
    (["keys", "revoke", "list"], ["keys", "revoke", "list"]),
    (["--version"], ["--version"]),
])
def test_a_verbs_options_may_come_before_it(argv, expected):
    assert cli.verb_options_behind_the_verb(cli.build_parser(), argv) == expected


def test_an_unknown_option_before_the_verb_is_named(tmp_path):
    result = clapdex("--bogus", "2", "status", home=tmp_path / "home")

    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--bogus" in result.stderr, result.stderr


def test_version():
    result = subprocess.run([str(CLAPDEX), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "clapdex 0.1.0\n"


def test_output_closed_early_ends_quietly(indexed_home):
    home, _, _ = indexed_home
    run = subprocess.Popen([str(CLAPDEX), "--home", str(home), "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    run.stdout.close()  # as `| head` does once it has its lines; long before clapdex writes any
    _, errors = run.communicate(timeout=120)

    assert run.returncode == 141 and errors == ""


def test_a_page_for_the_network_without_a_way_to_sign_in_is_refused_saying_both_ways(indexed_home, tiny_weights):
    home, _, _ = indexed_home

    result = clapdex("ui", "--host", "0.0.0.0", "--port", "8599", home=home, weights=tiny_weights)

    assert result.returncode == 3 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"[auth] in {home / '.streamlit' / 'secrets.toml'}" in result.stderr
    assert "clapdex keys add NAME --role read" in result.stderr


@pytest.mark.parametrize(("auth", "named"), [
    ('redirect_uri = "http://sfx.test:8501/oauth2callback"\ncookie_secret = "s"\nclient_id = "c"\n',
     "[auth] lacks client_secret, server_metadata_url"),
    ('redirect_uri = "http://sfx.test:8501/"\ncookie_secret = "s"\nclient_id = "c"\nclient_secret = "c"\n'
     'server_metadata_url = "https://id.test/.well-known/openid-configuration"\n',
     "redirect_uri must be the page's own address followed by /oauth2callback"),
])
def test_a_provider_that_could_sign_nobody_in_is_named_in_one_line(indexed_home, tiny_weights, auth, named):
    home, _, _ = indexed_home
    secrets = home / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir(exist_ok=True)
    secrets.write_text("[auth]\n" + auth)
    try:
        result = clapdex("ui", "--sign-in", "--port", "8599", home=home, weights=tiny_weights)
    finally:
        secrets.unlink()

    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert str(secrets) in result.stderr and named in result.stderr
