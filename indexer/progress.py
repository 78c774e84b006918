"""How far an index run has got, written to a small file in the home so that ``clapdex status``
in another process can show it while the run goes on (the catalog's own transaction stays
open between checkpoints, so it cannot carry this). ``search.library`` reads it back."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from search.library import PROGRESS_FILE
from search.store import write_atomically

# Often enough for a person watching, rarely enough to cost nothing.
WRITE_INTERVAL = 1.0


class ProgressFile:
    def __init__(self, home: Path):
        self.path = Path(home) / PROGRESS_FILE
        self.state: dict = {}
        self.phase_started = self.last_write = 0.0
        self.done_before = 0  # of ``done``, what the phase began with

    def start(self, phase: str, total: int | None, done: int = 0) -> None:
        self.phase_started, self.done_before = time.monotonic(), done
        self.state = {"pid": os.getpid(), "phase": phase, "done": done, "total": total,
                      "errors": self.state.get("errors", 0), "started": self.state.get("started", time.time())}
        self._write()

    def advance(self, done: int, errors: int, total: int | None = None) -> None:
        self.state.update(done=done, errors=errors)
        if total is not None:
            self.state["total"] = total
        if time.monotonic() - self.last_write >= WRITE_INTERVAL:
            self._write()

    def finish(self, summary: dict) -> None:
        self.state.update(phase="finished", finished=time.time(), summary=summary)
        self._write()

    def _write(self) -> None:
        elapsed = max(time.monotonic() - self.phase_started, 1e-9)
        rate = (self.state["done"] - self.done_before) / elapsed
        self.state.update(updated=time.time(), files_per_second=round(rate, 3), eta_seconds=None)
        if rate > 0 and self.state.get("total"):
            self.state["eta_seconds"] = round((self.state["total"] - self.state["done"]) / rate, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, lambda temp: Path(temp).write_text(json.dumps(self.state)))
        self.last_write = time.monotonic()
