"""A Qdrant store URL's layout options (?shards=6&replicas=2&write_consistency=2): checked in one
line through the real command, passed to the real client's create_collection, and a collection
made with another layout refused.

qdrant-client's local mode takes create_collection's layout arguments and drops them (its
get_collection reports shard_number, replication_factor and write_consistency_factor as None),
and no Qdrant server runs here or in CI. So what reaches a server is tested as far as it can be
without one: the arguments bind to the real client's named parameters, the client's request body
model carries them, and the comparison with an existing collection reads the client's own
CollectionParams as a server reports them."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from clapdex import cli
from sounds import build_library

from search.config import ConfigError, load_settings
from search.qdrant_store import QdrantStore, QdrantURL, layout_differences, parse_qdrant_url

CLAPDEX = Path(sys.executable).with_name("clapdex")
CLUSTER = "shards=6&replicas=2&write_consistency=2"
LAYOUT = {"shard_number": 6, "replication_factor": 2, "write_consistency_factor": 2}


def clapdex(*args: str, home: Path, weights: Path, store: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("CLAPDEX_STORE", None)
    if store is not None:
        env["CLAPDEX_STORE"] = store
    options = ["--home", str(home), "--device", "cpu", "--weights", str(weights)]
    return subprocess.run([str(CLAPDEX), *options, *args], capture_output=True, text=True, env=env, timeout=300)


def test_server_and_local_urls_take_the_same_layout_options():
    assert parse_qdrant_url(f"qdrant://qdrant-1:6333/sfx?{CLUSTER}") == QdrantURL(
        {"host": "qdrant-1", "port": 6333}, "sfx", LAYOUT)
    assert parse_qdrant_url(f"qdrant+local:///srv/q?{CLUSTER}#lib") == QdrantURL({"path": "/srv/q"}, "lib", LAYOUT)
    assert parse_qdrant_url("qdrant://h?replicas=3").layout == {"replication_factor": 3}
    assert parse_qdrant_url("qdrant://h").layout == {}
    assert parse_qdrant_url("qdrant://h?replicas=3&write_consistency=3").layout == {
        "replication_factor": 3, "write_consistency_factor": 3}


@pytest.mark.parametrize("options, named", [
    ("shard=2", "'shard' is unknown; known: shards, replicas, write_consistency"),
    ("shards=two", "shards='two' is not a whole number"),
    ("replicas=1.5", "replicas='1.5' is not a whole number"),
    ("shards=", "shards='' is not a whole number"),
    ("shards=1_0", "shards='1_0' is not a whole number"),
    ("shards=0", "shards=0 is below 1"),
    ("replicas=-2", "replicas=-2 is below 1"),
    ("write_consistency=0&replicas=2", "write_consistency=0 is below 1"),
    ("replicas=2&write_consistency=3", "write_consistency=3 is more than replicas=2"),
    ("write_consistency=2", "write_consistency=2 is more than the one copy kept without a replicas option"),
    ("shards=2&shards=3", "'shards' is given twice"),
    ("shards", "'shards' are not NAME=VALUE pairs"),
])
def test_each_bad_option_is_named_in_one_line(tmp_path, monkeypatch, capsys, options, named):
    """By the command's parser (--store) and by the settings (CLAPDEX_STORE, config.toml); the
    installed command's exit code and output for both are the test below."""
    for url in (f"qdrant://127.0.0.1:6333?{options}", f"qdrant+local://{tmp_path / 'q'}?{options}"):
        with pytest.raises(SystemExit) as refused:
            cli.build_parser().parse_args(["--store", url, "status"])
        out, err = capsys.readouterr()
        assert refused.value.code == cli.EXIT_USAGE and out == ""
        assert named in err and len(err.strip().splitlines()) == 1, (url, err)

        monkeypatch.setenv("CLAPDEX_STORE", url)
        with pytest.raises(ConfigError) as refused:
            load_settings(tmp_path / "home")
        assert named in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "q").exists() and not (tmp_path / "home").exists()  # refused before anything was made


def test_the_installed_command_refuses_a_bad_option_without_a_traceback(tmp_path, tiny_weights):
    flag = clapdex("--store", "qdrant://127.0.0.1?shard=2", "search", "a door", home=tmp_path, weights=tiny_weights)
    environment = clapdex("search", "a door", home=tmp_path, weights=tiny_weights,
                          store="qdrant://127.0.0.1?replicas=2&write_consistency=3")
    assert (flag.returncode, environment.returncode) == (2, 2)
    assert flag.stderr.strip() == (
        "clapdex search: argument --store: 'qdrant://127.0.0.1?shard=2' is not a vector store: store URL option "
        "'shard' is unknown; known: shards, replicas, write_consistency (see clapdex search --help)")
    assert environment.stderr.strip() == (
        "clapdex: setting 'store' has an invalid value 'qdrant://127.0.0.1?replicas=2&write_consistency=3': "
        "store URL option write_consistency=3 is more than replicas=2")


def test_settings_refuse_a_bad_layout_from_config_toml(tmp_path):
    (tmp_path / "config.toml").write_text('store = "qdrant://127.0.0.1?replicas=zero"\n')
    with pytest.raises(ConfigError, match="replicas='zero' is not a whole number"):
        load_settings(tmp_path)
    (tmp_path / "config.toml").write_text(f'store = "qdrant://127.0.0.1?{CLUSTER}"\n')
    assert load_settings(tmp_path).store == f"qdrant://127.0.0.1?{CLUSTER}"


def test_the_create_call_gives_the_real_client_its_layout(tmp_path):
    store = QdrantStore(f"qdrant+local://{tmp_path / 'q'}?{CLUSTER}", 8)
    try:
        creation = store.creation()
        # Every layout argument lands on a named parameter of the client (the one the remote
        # client sends to a server), none in the **kwargs that local mode swallows.
        bound = inspect.signature(store.client.create_collection).bind(store.collection, **creation)
        kwargs = next(name for name, p in inspect.signature(QdrantClient.create_collection).parameters.items()
                      if p.kind is inspect.Parameter.VAR_KEYWORD)
        assert kwargs not in bound.arguments
        assert {name: bound.arguments[name] for name in LAYOUT} == LAYOUT
        assert creation["vectors_config"] == models.VectorParams(size=8, distance=models.Distance.COSINE)
        # The body a server receives (the remote client's CreateCollection) carries it as sent.
        body = models.CreateCollection(vectors=creation["vectors_config"], **store.layout)
        assert body.model_dump(exclude_none=True, include=set(LAYOUT)) == LAYOUT
        # Local mode keeps none of it: it has one process, one copy, no shards.
        params = store.client.get_collection(store.collection).config.params
        assert (params.shard_number, params.replication_factor, params.write_consistency_factor) == (None,) * 3
        store.add(np.arange(3), np.eye(3, 8, dtype=np.float32))  # writes with MEDIUM ordering
        assert store.search(np.eye(1, 8, dtype=np.float32), 1)[1].tolist() == [[0]]
    finally:
        store.close()


def test_a_collection_of_another_layout_is_named_not_ignored():
    # As a three-node server reports a collection made with ?shards=3 and no other option.
    made = models.CollectionParams(
        vectors=models.VectorParams(size=8, distance=models.Distance.COSINE),
        shard_number=3, replication_factor=1, write_consistency_factor=1,
    )
    assert layout_differences(made, parse_qdrant_url(f"qdrant://h?{CLUSTER}").layout) == [
        "shards=6 (the collection has 3)", "replicas=2 (the collection has 1)",
        "write_consistency=2 (the collection has 1)",
    ]
    assert layout_differences(made, parse_qdrant_url("qdrant://h?shards=3").layout) == []
    assert layout_differences(made, parse_qdrant_url("qdrant://h").layout) == []  # no option: as it is


def test_local_mode_reports_no_layout_to_contradict(tmp_path):
    url = f"qdrant+local://{tmp_path / 'q'}"
    QdrantStore(f"{url}?shards=3", 8).close()
    store = QdrantStore(f"{url}?{CLUSTER}", 8)  # opens: local mode kept no layout to differ from
    try:
        assert layout_differences(store.client.get_collection(store.collection).config.params, LAYOUT) == []
    finally:
        store.close()


def test_an_index_run_and_a_search_through_a_laid_out_url(tmp_path, tiny_weights):
    library = build_library(tmp_path / "sounds")
    url = f"qdrant+local://{tmp_path / 'q'}?{CLUSTER}#sfx"
    home = tmp_path / "home"

    indexed = clapdex("index", str(library["tone"].parent), home=home, weights=tiny_weights, store=url)
    assert indexed.returncode == 0, indexed.stderr
    found = clapdex("--store", url, "search", "a tone", "--top", "2", "--json", home=home, weights=tiny_weights)
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)) == 2

    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        assert client.collection_exists("sfx") and client.count("sfx").count > 0
    finally:
        client.close()
