"""`clapdex index --ray` on a real Ray cluster on this machine: a head and a second node joining it
(`ray start`), each a process group of its own, ended with the module."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sounds import esc10_clips, sox_tone

from processes import marked_processes
from test_decoding import reading
from test_kill_resume import indexed_count

ray = pytest.importorskip("ray", reason='needs Ray: pip install "clapdex[cluster]"')

CLAPDEX = Path(sys.executable).with_name("clapdex")
RAY = Path(sys.executable).with_name("ray")
# Every process of the test cluster carries this in its environment, so none outlives the module.
CLUSTER_MARKER = "CLAPDEX_TEST_RAY_CLUSTER"
# The cluster listens on loopback for the minute the module runs: no token, so nothing is written
# to the user's ~/.ray.
ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "CLAPDEX_BATCH_SIZE": "2", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0"}
EMBEDDER = "MapBatches(_Embedder)"  # in the title Ray gives the embedding actors' processes
# Every node of the test cluster: one CPU, a small object store, on loopback, in the foreground.
NODE_OPTIONS = ["--num-cpus", "1", "--object-store-memory", str(100 * 2**20), "--disable-usage-stats",
                "--node-ip-address", "127.0.0.1", "--block"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_ports() -> list[str]:
    """Ports of one node's services, all chosen free (two nodes on one machine must not share them)."""
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


def stop_processes(marker: str) -> None:
    """Kill every process carrying ``marker`` in its environment (by pid), and wait for them to go."""
    deadline = time.monotonic() + 30
    while (found := marked_processes(marker, CLUSTER_MARKER)) and time.monotonic() < deadline:
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not marked_processes(marker, CLUSTER_MARKER), "Ray processes outlived the test cluster"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The head's address, of a cluster of two nodes of one CPU each."""
    marker = uuid.uuid4().hex
    temp = Path(f"/tmp/clapdex-ray-{marker[:8]}")  # short: Ray's sockets live under it
    env = {**os.environ, **ENVIRONMENT, CLUSTER_MARKER: marker}
    port = free_port()
    address = f"127.0.0.1:{port}"
    started = []
    log = open(tmp_path_factory.mktemp("ray-start") / "ray-start.log", "w+b")  # read when a node does not start
    try:
        started.append(subprocess.Popen(
            [str(RAY), "start", "--head", "--port", str(port), "--ray-client-server-port", str(free_port()),
             "--include-dashboard", "false", "--temp-dir", str(temp), *node_ports(), *NODE_OPTIONS],
            env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT))
        wait_for_nodes(address, 1, env, started, log)
        started.append(subprocess.Popen(
            [str(RAY), "start", "--address", address, *node_ports(), *NODE_OPTIONS],
            env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT))
        wait_for_nodes(address, 2, env, started, log)
        yield address, marker
    finally:
        for process in started:  # `ray stop` would stop every Ray on the machine
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        stop_processes(marker)
        shutil.rmtree(temp, ignore_errors=True)
        log.close()


def wait_for_nodes(address: str, count: int, env: dict, started: list[subprocess.Popen], log) -> None:
    check = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(node['Alive'] for node in ray.nodes()))")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for process in started:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"`ray start` ended: {log.read().decode(errors='replace')}")
        done = subprocess.run([sys.executable, "-c", check, address], env=env, capture_output=True, text=True)
        if done.returncode == 0 and int(done.stdout.split()[-1]) >= count:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster at {address} did not reach {count} nodes")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Real recordings and tones, a long file of several pieces and two files that cannot be read."""
    folder = tmp_path_factory.mktemp("library")
    for clip in esc10_clips(4):
        shutil.copyfile(clip, folder / clip.name)
    for number in range(10):
        sox_tone(folder / f"tone{number:02d}.wav", 1 + number % 4 * 2.5, tone=f"sine {200 + 90 * number}")
    sox_tone(folder / "long.flac", 40, tone="sawtooth 330")  # 11 windows: two pieces
    (folder / "broken.flac").write_bytes(b"fLaC" + bytes(500))
    (folder / "empty.wav").write_bytes(b"")
    return folder


def clapdex(*args, home: Path, weights: Path, env: dict | None = None, program: str | None = None):
    """The command, run as `clapdex`, or as ``program`` (Python that calls the CLI with sys.argv[1:])."""
    command = [sys.executable, "-c", program] if program else [str(CLAPDEX)]
    return subprocess.run([*command, "--home", str(home), "--device", "cpu", "--weights", str(weights), *map(str, args)],
                          env={**os.environ, **ENVIRONMENT, **(env or {})}, capture_output=True, text=True, timeout=300)


def counts(stdout: str) -> dict[str, int]:
    line = next(line for line in stdout.splitlines() if " indexed, " in line)
    return {name: int(number) for number, name in re.findall(r"(\d+) (indexed|skipped|moved|removed|errors)", line)}


@contextlib.contextmanager
def index_in_background(home: Path, path: Path, weights: Path, address: str, *options: str):
    """`clapdex index PATH --ray ADDRESS`, running while the test watches it; killed if still
    running when the test leaves."""
    run = subprocess.Popen([str(CLAPDEX), "--home", str(home), "--device", "cpu", "--weights", str(weights), "index",
                            str(path), "--ray", address, *options], env={**os.environ, **ENVIRONMENT},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
        run.wait()


def outcome(home: Path) -> dict:
    """path -> (status, [(start, end)], vectors), from catalog and vector store."""
    from search.catalog import Catalog
    from search.config import load_settings
    from search.store import open_store

    settings = load_settings(home)
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, catalog.model().dim)
        assert sorted(store.ids()) == sorted(catalog.window_ids()), "catalog and vectors disagree"
        return {record.path: (record.status, [(w.start, w.end) for w in record.windows],
                              store.reconstruct(np.array([w.id for w in record.windows], dtype=np.int64))
                              if record.windows else np.empty((0, 0)))
                for record in catalog.files()}


def assert_same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for path, (status, windows, vectors) in expected.items():
        assert got[path][0] == status and got[path][1] == windows, path
        if len(windows):
            cosines = np.sum(got[path][2] * vectors, axis=1) / (
                np.linalg.norm(got[path][2], axis=1) * np.linalg.norm(vectors, axis=1))
            assert cosines.min() >= 0.9999, (path, cosines.min())


def status_of(home: Path, path: Path) -> str | None:
    """A file's status in the catalog, read as another process reads it while a run writes."""
    try:
        with sqlite3.connect(f"file:{home / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1) as connection:
            found = connection.execute("SELECT status FROM files WHERE path = ?", (str(path),)).fetchone()
    except sqlite3.Error:  # not created yet
        return None
    return found[0] if found else None


def healthy(home: Path, weights: Path) -> bool:
    doctor = clapdex("doctor", home=home, weights=weights)
    return doctor.returncode == 0 and "catalog, vectors and disk agree" in doctor.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory, library, tiny_weights):
    """The library indexed on this machine, as without Ray."""
    home = tmp_path_factory.mktemp("local-home")
    result = clapdex("index", library, home=home, weights=tiny_weights)
    assert result.returncode == 0, result.stderr
    return outcome(home)


def test_a_library_indexed_through_ray_equals_a_local_run_and_a_rerun_embeds_nothing(
        cluster, library, reference, tiny_weights, tmp_path):
    address, _ = cluster
    home = tmp_path / "home"
    result = clapdex("index", library, "--ray", address, home=home, weights=tiny_weights)
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout) == {"indexed": 15, "skipped": 0, "moved": 0, "removed": 0, "errors": 2}
    assert_same(outcome(home), reference)
    assert healthy(home, tiny_weights)

    # Nothing changed: nothing embedded, through $RAY_ADDRESS this time.
    again = clapdex("index", library, "--ray", home=home, weights=tiny_weights, env={"RAY_ADDRESS": address})
    assert again.returncode == 0, again.stderr
    # (files that could not be read are skipped too, unchanged since)
    assert counts(again.stdout) == {"indexed": 0, "skipped": 17, "moved": 0, "removed": 0, "errors": 0}

    # Incremental as a local run: a new file and a changed one are embedded, and only they.
    sox_tone(library / "new.wav", 3, tone="sine 5000")
    changed = library / "tone03.wav"
    sox_tone(changed, 4, tone="square 123")
    try:
        third = clapdex("index", library, "--ray", address, home=home, weights=tiny_weights)
        assert third.returncode == 0, third.stderr
        assert counts(third.stdout)["indexed"] == 2 and counts(third.stdout)["skipped"] == 16
        local = tmp_path / "local"
        assert clapdex("index", library, home=local, weights=tiny_weights).returncode == 0
        assert_same(outcome(home), outcome(local))
        assert healthy(home, tiny_weights)
    finally:  # the module's library as it was, for the other tests
        (library / "new.wav").unlink()
        sox_tone(changed, 1 + 3 % 4 * 2.5, tone=f"sine {200 + 90 * 3}")


def embedding_actors(marker: str) -> dict[int, str]:
    """pid -> title of the cluster's embedding actors."""
    return {pid: command for pid, command in marked_processes(marker, CLUSTER_MARKER).items() if EMBEDDER in command}


def test_an_embedding_actor_killed_mid_run_changes_nothing(cluster, library, reference, tiny_weights, tmp_path):
    address, marker = cluster
    home = tmp_path / "home"
    seen, killed, embedding = set(), None, 0
    with index_in_background(home, library, tiny_weights, address, "--commit-every", "1") as run:
        while run.poll() is None:
            actors = embedding_actors(marker)
            seen |= set(actors)
            if killed is None and actors:
                actor = min(actors)
                # Ray titles an actor's process with the call it is running: `.submit`, a batch.
                embedding += actors[actor].split()[0].endswith(".submit")
                if embedding >= 3:
                    # Mid-batch, holding the model and pieces still to embed: it dies outright.
                    killed, at = actor, indexed_count(home)
                    os.kill(actor, signal.SIGKILL)
                    continue
                # The actor runs in short bursts, stopped in between (as test_kill_resume paces a
                # run), so it is caught mid-batch however fast the machine.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(actor, signal.SIGCONT)
                    time.sleep(0.05)
                    os.kill(actor, signal.SIGSTOP)
                time.sleep(0.2)
            else:
                time.sleep(0.05)
        out, err = run.communicate()
    assert killed is not None, "the run ended before its embedding actor could be killed"
    assert at < 17, "killed after the last file was stored"  # (17 with the two that cannot be read)
    assert run.returncode == 0, err
    assert len(seen) >= 2, f"no embedding actor took over from {killed}: {seen}"
    assert counts(out)["indexed"] == 15
    assert_same(outcome(home), reference)
    assert healthy(home, tiny_weights)


def test_a_run_killed_mid_way_resumes_through_ray(cluster, library, reference, tiny_weights, tmp_path):
    # kill -9 of the command (the run's one writer) once it has stored files but not its last, a
    # long one: what it stored stays, its actors end with it, and the next run embeds the rest.
    address, marker = cluster
    folder = tmp_path / "library"
    shutil.copytree(library, folder)
    slow = sox_tone(folder / "zz-slow.wav", 600, tone="sine 300")  # listed last; 170 windows
    home = tmp_path / "home"
    at = None
    with index_in_background(home, folder, tiny_weights, address, "--commit-every", "1") as run:
        while run.poll() is None:
            if (stored := indexed_count(home)) >= 3 and status_of(home, slow) == "pending":
                at = stored
                run.kill()
                break
            time.sleep(0.02)
    assert at is not None, f"the run ended before it could be killed: {run.stderr.read()}"
    deadline = time.monotonic() + 60
    while embedding_actors(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not embedding_actors(marker), "the killed run's embedding actors outlived it"

    again = clapdex("index", folder, "--ray", address, home=home, weights=tiny_weights)
    assert again.returncode == 0, again.stderr
    done = counts(again.stdout)
    assert done["skipped"] >= at and done["indexed"] + done["errors"] + done["skipped"] == 18, done
    got = outcome(home)
    alone = tmp_path / "alone"
    assert clapdex("index", slow, home=alone, weights=tiny_weights).returncode == 0
    assert_same(got, {**{str(folder / Path(path).name): value for path, value in reference.items()},
                      **outcome(alone)})
    assert healthy(home, tiny_weights)


def test_a_file_that_kills_its_decoder_is_an_error_and_the_run_goes_on(cluster, library, reference, tiny_weights,
                                                                     tmp_path):
    # As a native decoder that crashes on some file: every process of the cluster that opens it
    # dies at once. Ray retries the task without end; the run must give the file up, and only it.
    address, marker = cluster
    folder = tmp_path / "library"
    folder.mkdir()
    names = ["tone00.wav", "tone05.wav", "long.flac"]
    for name in names:
        shutil.copyfile(library / name, folder / name)
    trap = sox_tone(folder / "trap.wav", 600, tone="sine 300")  # long: open for a while, however fast the machine
    home = tmp_path / "home"
    killed = set()
    with index_in_background(home, folder, tiny_weights, address) as run:
        while run.poll() is None:
            for pid in marked_processes(marker, CLUSTER_MARKER):
                if reading(pid, trap):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed.add(pid)
            time.sleep(0.02)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert len(killed) == 3, f"the decoder died {len(killed)} times on the file, not 3"
    assert counts(out) == {
        "indexed": 3, "skipped": 0, "moved": 0, "removed": 0, "errors": 1}
    got = outcome(home)
    assert got[str(trap)][0] == "error" and not got[str(trap)][1]
    from search.catalog import Catalog
    from search.config import load_settings

    with Catalog(load_settings(home).catalog_url) as catalog:
        assert next(record.error for record in catalog.files() if record.path == str(trap)) == \
            "the decoder crashed on this file (3 times)"
    assert_same({path: got[path] for path in got if path != str(trap)},
                {str(folder / name): reference[str(library / name)] for name in names})
    assert healthy(home, tiny_weights)


def test_a_node_lost_mid_run_costs_a_retry_not_the_run(cluster, library, reference, tiny_weights, tmp_path):
    # A third node joins, takes work, and is lost outright (its raylet and workers killed, as
    # when a machine goes down); the run finishes on the other two with the same result.
    address, marker = cluster
    node_marker = "CLAPDEX_TEST_RAY_NODE"
    env = {**os.environ, **ENVIRONMENT, CLUSTER_MARKER: marker, node_marker: marker}
    log = open(tmp_path / "ray-start.log", "w+b")
    node = subprocess.Popen(
        [str(RAY), "start", "--address", address, *node_ports(), *NODE_OPTIONS],
        env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    home = tmp_path / "home"
    try:
        wait_for_nodes(address, 3, env, [node], log)
        lost = None
        with index_in_background(home, library, tiny_weights, address, "--commit-every", "1") as run:
            while run.poll() is None:
                # Ray titles a worker's process with what it runs: this node's, once it works for the run.
                if lost is None and any("_decode_batch" in title or EMBEDDER in title
                                        for title in marked_processes(marker, node_marker).values()):
                    lost = indexed_count(home)
                    for pid in marked_processes(marker, node_marker):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
            out, err = run.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait()
        log.close()
    assert lost is not None, "the third node never worked for the run"
    assert lost < 17, "the node was lost after the last file was stored"
    assert not marked_processes(marker, node_marker)
    assert run.returncode == 0, err
    assert counts(out)["indexed"] == 15
    assert_same(outcome(home), reference)
    assert healthy(home, tiny_weights)


def test_a_local_ray_is_started_for_the_run_and_stopped_after_it(library, reference, tiny_weights, tmp_path):
    marker = uuid.uuid4().hex
    home = tmp_path / "home"
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run(
        [str(CLAPDEX), "--home", str(home), "--device", "cpu", "--weights", str(tiny_weights), "index",
         str(library / "tone00.wav"), str(library / "long.flac"), "--ray"],
        env={**env, **ENVIRONMENT, CLUSTER_MARKER: marker}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert counts(result.stdout)["indexed"] == 2
    got = outcome(home)
    assert_same(got, {path: reference[path] for path in got})
    deadline = time.monotonic() + 30
    while marked_processes(marker, CLUSTER_MARKER) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not marked_processes(marker, CLUSTER_MARKER), "the Ray started for the run outlived it"


@pytest.mark.parametrize("args, status, said", [
    (["--ray", "nowhere"], 2, "is not a Ray address"),
    (["--ray", "127.0.0.1:99999"], 2, "is not a Ray address"),
    (["--ray=ray://"], 2, "is not a Ray address"),
    (["--ray", "127.0.0.1:{closed}"], 3, "cannot reach the Ray cluster at 127.0.0.1:"),
    (["--ray", "--watch"], 2, "--watch"),
])
def test_bad_ray_options_are_one_line(args, status, said, library, tiny_weights, tmp_path):
    args = [arg.replace("{closed}", str(free_port())) for arg in args]
    result = clapdex("index", library, *args, home=tmp_path / "home", weights=tiny_weights)
    assert result.returncode == status, result.stderr
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "home").exists()


def test_without_ray_installed_the_error_names_the_extra(library, tiny_weights, tmp_path):
    # As on a machine without Ray: Python's import system finds no module named ray.
    program = "import sys; sys.modules['ray'] = None; from clapdex.cli import main; sys.exit(main(sys.argv[1:]))"
    result = clapdex("index", library, "--ray", home=tmp_path / "home", weights=tiny_weights, program=program)
    assert result.returncode == 3
    assert result.stderr.strip() == 'clapdex: --ray needs Ray, which is not installed: pip install "clapdex[cluster]"'
    assert not (tmp_path / "home").exists()


def test_the_normal_path_never_imports_ray(library, tiny_weights, tmp_path):
    program = ("import sys; from clapdex.cli import main; status = main(sys.argv[1:]); assert status == 0, status; "
               "print(sorted(name for name in sys.modules if name.split('.')[0] == 'ray'))")
    result = clapdex("index", library / "tone01.wav", home=tmp_path / "home", weights=tiny_weights, program=program)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
