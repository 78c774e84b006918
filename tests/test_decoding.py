"""The parallel decoder: the windows this process would cut, every file's pieces in order, errors as values."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import soundfile

from encoders.audio import read_audio, windows
from encoders.decoding import FILES_AHEAD, WINDOWS_PER_PIECE, decode_windows

RATE = 8000  # a small model rate keeps the test quick; windows of 0.25 s


def write_tone(path, seconds, rate=22050, channels=2):
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(path, np.repeat(tone[:, None], channels, axis=1), rate)
    return path


def library(tmp_path):
    # the last file holds more windows than one piece carries
    paths = [write_tone(tmp_path / f"tone{i}.flac", 0.1 + i * 0.6) for i in range(5)]
    (tmp_path / "notes.wav").write_text("not audio")
    return paths[:3] + [tmp_path / "notes.wav", tmp_path / "missing.wav"] + paths[3:]


def by_file(pieces):
    files = {}
    for piece in pieces:
        entry = files.setdefault(piece.number, {"windows": [], "done": 0})
        assert not entry["done"], "a piece after the file's last"
        # Samples from workers are views into memory the worker reuses: keep copies.
        entry["windows"] += list(zip(piece.starts, piece.ends, [samples.copy() for samples in piece.samples]))
        if piece.done:
            entry |= {"done": 1, "info": piece.info, "error": piece.error}
    return files


def test_workers_cut_the_windows_this_process_cuts(tmp_path):
    paths = library(tmp_path)
    here = by_file(decode_windows(paths, RATE, 0.25, 0.125, workers=0))
    pooled = by_file(decode_windows(paths, RATE, 0.25, 0.125, workers=2))
    assert sorted(pooled) == sorted(here) == list(range(len(paths)))
    for number, path in enumerate(paths):
        mine, theirs = pooled[number], here[number]
        assert mine["done"] and (mine["error"] is None) == (theirs["error"] is None)
        if mine["error"] is None:
            samples, info = read_audio(path, RATE)
            expected = windows(samples, RATE, 0.25, 0.125)
            assert mine["info"] == info
            assert [(s, e) for s, e, _ in mine["windows"]] == [(w.start, w.end) for w in expected]
            for (_, _, got), want in zip(mine["windows"], expected):
                assert got.dtype == np.float32 and np.allclose(got, want.samples, atol=1e-6)
    assert len(pooled[len(paths) - 1]["windows"]) > WINDOWS_PER_PIECE


def test_unreadable_files_come_back_with_their_reason(tmp_path):
    paths = library(tmp_path)
    files = by_file(decode_windows(paths, RATE, 0.25, workers=2))
    for number in (3, 4):  # notes.wav, missing.wav
        assert files[number]["error"] and files[number]["info"] is None and not files[number]["windows"]


def test_a_worker_that_dies_costs_only_the_file_it_was_reading(tmp_path):
    # A named pipe that is open for writing but never written blocks its reader, as a decoder
    # wedged on a corrupt file would; once the other worker has read everything else, the
    # test kills the wedged one outright.
    fifo = tmp_path / "wedged.wav"
    os.mkfifo(fifo)
    paths = [fifo] + [write_tone(tmp_path / f"tone{i}.wav", 0.6) for i in range(9)]
    finished = []

    def kill_the_wedged_worker():
        with open(fifo, "wb"):  # returns once a worker has opened it to read
            deadline = time.monotonic() + 30
            while len(finished) < len(paths) - FILES_AHEAD and time.monotonic() < deadline:
                time.sleep(0.05)
            for child in multiprocessing.active_children():
                if reading(child.pid, fifo):
                    os.kill(child.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_wedged_worker, daemon=True)
    killer.start()

    def noting_the_order(pieces):
        for piece in pieces:
            if piece.done:
                finished.append(piece.number)
            yield piece

    files = by_file(noting_the_order(decode_windows(paths, RATE, 0.25, workers=2)))
    killer.join()
    assert sorted(files) == list(range(len(paths)))
    # While one worker was stuck, the other read every file but those the stuck one held.
    assert len(finished[: finished.index(0)]) == len(paths) - FILES_AHEAD
    assert files[0]["error"] == "the decoder crashed on this file (signal SIGKILL)" and not files[0]["windows"]
    for number in range(1, len(paths)):  # the dead worker's other files went to its replacement
        assert files[number]["error"] is None and len(files[number]["windows"]) == 3


def reading(pid: int, path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def test_workers_serve_the_next_call(tmp_path):
    paths = [write_tone(tmp_path / f"tone{i}.wav", 0.6) for i in range(6)]
    first = by_file(decode_windows(paths, RATE, 0.25, workers=2))
    workers = {child.pid for child in multiprocessing.active_children()}
    second = by_file(decode_windows(paths[::-1], RATE, 0.25, workers=2))

    assert {child.pid for child in multiprocessing.active_children()} == workers
    for number in range(len(paths)):
        assert [w[:2] for w in second[len(paths) - 1 - number]["windows"]] == [w[:2] for w in first[number]["windows"]]


def test_workers_of_a_killed_caller_exit(tmp_path):
    paths = [write_tone(tmp_path / f"tone{i}.wav", 2.0) for i in range(40)]
    caller = f"""
import multiprocessing, os, signal
from encoders.decoding import decode_windows
pieces = decode_windows({[str(p) for p in paths]!r}, {RATE}, 0.25, workers=2)
next(pieces)  # the workers are started and blocked: their slots are full, or files wait
print(*[child.pid for child in multiprocessing.active_children()], flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=60)
    workers = [int(pid) for pid in result.stdout.split()]
    assert len(workers) == 2, result.stderr

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(running(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(running(pid) for pid in workers)


def test_a_worker_exits_with_its_parent():
    """The orphan check both decoder and scan workers start, on its own."""
    parent = """
import os, signal, time
from encoders.processes import exit_with_parent
parent = os.getpid()
worker = os.fork()
if worker == 0:
    exit_with_parent(parent)
    time.sleep(60)  # waiting for work that will never come
    os._exit(1)
print(worker, flush=True)
time.sleep(0.5)  # the worker is watching
os.kill(parent, signal.SIGKILL)
"""
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60)
    worker = int(result.stdout)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(worker):
        time.sleep(0.1)
    assert not running(worker)


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_a_call_inside_another_gets_workers_of_its_own(tmp_path):
    paths = [write_tone(tmp_path / f"tone{i}.wav", 0.6) for i in range(4)]
    expected = by_file(decode_windows(paths, RATE, 0.25, workers=0))
    inner = {}

    def with_a_call_inside(pieces):
        for piece in pieces:
            if not inner:  # the outer call's workers are busy with the rest meanwhile
                inner.update(by_file(decode_windows(paths[::-1], RATE, 0.25, workers=2)))
            yield piece

    outer = by_file(with_a_call_inside(decode_windows(paths, RATE, 0.25, workers=2)))

    for number in range(len(paths)):
        assert [w[:2] for w in outer[number]["windows"]] == [w[:2] for w in expected[number]["windows"]]
        assert [w[:2] for w in inner[len(paths) - 1 - number]["windows"]] == [w[:2] for w in expected[number]["windows"]]


def test_paths_from_an_iterator_are_taken_only_as_workers_have_room(tmp_path):
    # An index run hands its scan to the decoders as an iterator: the scan must not be drained
    # ahead of the decoders, or scanning and embedding would again run one after the other.
    paths = [write_tone(tmp_path / f"clip{i}.flac", 0.3) for i in range(12)]
    taken = []

    def growing():
        for path in paths:
            taken.append(path)
            yield path

    workers, done = 2, 0
    for piece in decode_windows(growing(), RATE, 0.25, workers=workers):
        assert len(taken) <= FILES_AHEAD * workers + done + 1
        done += piece.done
    assert done == len(paths) == len(taken)


def test_a_piece_holds_its_audio_once_and_its_windows_are_views_of_it(tmp_path):
    paths = [write_tone(tmp_path / "long.flac", 3.3), write_tone(tmp_path / "longer.flac", 4.1)]
    for workers in (0, 2):
        for piece in decode_windows(paths, RATE, 0.25, 0.125, workers=workers):
            if piece.samples:
                assert len(piece.span) < sum(len(window) for window in piece.samples)  # half-window hops
                for offset, window in zip(piece.offsets, piece.samples):
                    assert np.shares_memory(window, piece.span)
                    assert np.array_equal(window, piece.span[offset : offset + len(window)])


def test_idle_work_runs_while_no_piece_waits_until_it_says_it_is_done(tmp_path):
    # An index run's scan goes on this way while the decoders work, rather than at their pace.
    paths = [write_tone(tmp_path / f"clip{i}.flac", 2.0) for i in range(6)]
    calls = []

    def idle() -> bool:
        calls.append(1)
        return len(calls) < 3

    files = by_file(decode_windows(paths, RATE, 0.25, workers=2, idle=idle))
    assert sorted(files) == list(range(len(paths))) and all(entry["done"] for entry in files.values())
    assert len(calls) == 3
