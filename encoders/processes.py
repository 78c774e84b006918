"""Processes that end with their parent: decoding workers, servers, index runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

# How often a worker checks that its parent is alive.
PARENT_CHECK_SECONDS = 1.0


def exit_with_parent(parent: int) -> None:
    """End this worker process within ``PARENT_CHECK_SECONDS`` of its parent's death.

    ``parent`` is the parent's pid, as the parent passed it (``os.getppid()`` here could
    already be the pid of whoever adopted an orphan). A parent killed outright (kill -9 of an
    index run) cannot end its workers, and an orphaned worker would wait forever for a file,
    a task or a free slot that nobody will give it. A daemon thread watches for that.
    """
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="clapdex-parent-check", daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def end_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (it survives exec), so a
    server or a run started by a script, a test or a server never outlives it. Also usable as
    a ``preexec_fn``."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took
        os.kill(os.getpid(), signal.SIGTERM)
