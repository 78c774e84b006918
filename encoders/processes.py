"""Worker processes that end with their parent."""

from __future__ import annotations

import os
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
