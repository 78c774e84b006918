"""Finding audio files under the paths a user names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from indexer.scan import Contents, content_hash, read_batches, scan


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


def test_files_are_read_in_worker_processes_as_in_this_one_in_order(tmp_path):
    paths = []
    for number in range(7):
        paths.append(str(tmp_path / f"f{number}.wav"))
        (tmp_path / f"f{number}.wav").write_bytes(bytes([number]) * (1000 + number))
    known = content_hash(paths[3])
    files = [(path, known if path == paths[3] else None) for path in paths] + [(str(tmp_path / "gone.wav"), None)]
    batches = [(number, files[number : number + 3]) for number in range(0, len(files), 3)]
    batches.insert(2, ("nothing to read", []))  # every file of a batch unchanged

    in_process = list(read_batches(batches, os.path.basename, workers=0))
    in_workers = list(read_batches(batches, os.path.basename, workers=2, alone=3))  # the first batch read here

    assert in_workers == in_process
    assert [number for number, _ in in_workers] == [0, 3, "nothing to read", 6]
    contents = [read for _, batch in in_workers for read in batch]
    assert contents[0] == Contents(content_hash(paths[0]), "f0.wav", None)
    assert contents[3] == Contents(known, None, None)  # the known content is not described again
    assert contents[-1] == Contents(None, None, "No such file or directory")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_reading_workers_end_when_their_parent_is_killed(tmp_path):
    """kill -9 of an index run must not leave its scan's workers waiting for work forever."""
    script = textwrap.dedent("""
        import os, sys, time
        from indexer.scan import read_batches

        def describe(path):
            os.write(1, f"worker {os.getpid()}\\n".encode())  # one write: the workers share the pipe
            time.sleep(0.2)

        batches = ((number, [(sys.argv[1], None)] * 2) for number in range(1000))
        for _ in read_batches(batches, describe, workers=2, alone=0):
            pass
    """)
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    run = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "a.wav")], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    workers = set()
    while len(workers) < 2:
        workers.add(int(run.stdout.readline().split()[1]))
    run.send_signal(signal.SIGKILL)
    run.wait()
    run.stdout.close()

    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(pid) for pid in workers)
