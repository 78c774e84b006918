"""`clapdex ui` is the server: a signal to it, or the death of whoever started it, ends it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from processes import marked_processes
from sounds import sox_tone
from libraries import index_into

from search.config import load_settings
from search.store import HUGE_PAGE_TUNABLES

CLAPDEX = Path(sys.executable).with_name("clapdex")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_encoder):
    library = tmp_path_factory.mktemp("ui-process-library")
    sox_tone(library / "tone.wav", 2)
    home = tmp_path_factory.mktemp("ui-process-home")
    index_into(load_settings(home), [library], tiny_encoder)
    return home


def session_processes(marker: str) -> dict[int, str]:
    return {pid: command for pid, command in marked_processes(marker).items() if "streamlit" in command}


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_clapdex_ui_closes_its_port_and_leaves_no_process(home, tiny_weights, sent):
    port, marker = free_port(), f"ui-{sent.name}-{os.getpid()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLAPDEX_TEST_SESSION": marker}
    server = subprocess.Popen([str(CLAPDEX), "--home", str(home), "--weights", str(tiny_weights), "--device", "cpu",
                               "ui", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: answers(port) or server.poll() is not None, 90, "the page did not start")
        assert server.poll() is None, server.stderr.read()
        assert list(session_processes(marker)) == [server.pid]  # clapdex became the server: no child to orphan

        server.send_signal(sent)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    assert not answers(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert session_processes(marker) == {}


def test_clapdex_ui_ends_when_whoever_started_it_dies(home, tiny_weights):
    port, marker = free_port(), f"ui-parent-{os.getpid()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLAPDEX_TEST_SESSION": marker}
    # A parent that starts the page and is then killed outright, as a crashed script or supervisor is.
    starter = textwrap.dedent(f"""
        import subprocess, time
        subprocess.Popen({[str(CLAPDEX), "--home", str(home), "--weights", str(tiny_weights), "--device", "cpu",
                           "ui", "--port", str(port)]!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", starter], env=env)
    try:
        wait_for(lambda: answers(port), 90, "the page did not start")
        parent.kill()
        parent.wait()
        wait_for(lambda: not session_processes(marker), 30, "the page outlived the process that started it")
    finally:
        for pid in session_processes(marker):
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert not answers(port)


def test_the_page_process_starts_with_the_index_codes_in_huge_pages(home, tiny_weights):
    """`clapdex ui` hands the server glibc's settings for huge pages (search.store.HUGE_PAGE_TUNABLES),
    which the C library reads only when a process starts, and keeps settings its caller gave."""
    port, marker = free_port(), f"ui-tunables-{os.getpid()}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLAPDEX_TEST_SESSION": marker,
           "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}
    server = subprocess.Popen([str(CLAPDEX), "--home", str(home), "--weights", str(tiny_weights), "--device", "cpu",
                               "ui", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: answers(port) or server.poll() is not None, 90, "the page did not start")
        assert server.poll() is None, server.stderr.read()
        # glibc cuts the variable's text at each ':' in place as it reads the settings.
        given = Path(f"/proc/{server.pid}/environ").read_bytes().decode().split("\0")
        at = given.index("GLIBC_TUNABLES=glibc.malloc.trim_threshold=1048576")
        assert given[at + 1 : at + 1 + len(HUGE_PAGE_TUNABLES)] == list(HUGE_PAGE_TUNABLES)
    finally:
        server.terminate()
        server.wait(timeout=30)
