"""Finding the processes a test session started, wherever they were reparented to.

Every process the tests start inherits ``MARKER`` in its environment (set once per
session by conftest), so one that outlives its test is found by reading /proc.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MARKER = "CLAPDEX_TEST_SESSION"
# Started by Python's multiprocessing for its own bookkeeping, this reads a pipe from its parent
# and ends when the parent does, by design: it cannot outlive the session.
ENDS_WITH_ITS_PARENT = ("from multiprocessing.resource_tracker import main",)


def marked_processes(value: str, variable: str = MARKER) -> dict[int, str]:
    """pid -> command line of every live process (but this one) whose environment holds variable=value."""
    wanted = f"{variable}={value}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if not any(helper in command for helper in ENDS_WITH_ITS_PARENT):
                    found[int(entry.name)] = command
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def left_behind(value: str, grace: float = 10.0) -> dict[int, str]:
    """The marked processes still alive after ``grace`` seconds (ones shutting down get that long)."""
    deadline = time.monotonic() + grace
    while (found := marked_processes(value)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found
