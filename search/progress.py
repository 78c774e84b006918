"""How far an index run has got, kept in a small file in the home so that ``clapdex status``
in another process can show it while the run goes on (the catalog's own transaction stays
open between checkpoints, so it cannot carry this)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from search.store import write_atomically

PROGRESS_FILE = "indexing.json"
# Often enough for a person watching, rarely enough to cost nothing.
WRITE_INTERVAL = 1.0


class ProgressFile:
    def __init__(self, home: Path):
        self.path = Path(home) / PROGRESS_FILE
        self.state: dict = {}
        self.phase_started = self.last_write = 0.0

    def start(self, phase: str, total: int | None) -> None:
        self.phase_started = time.monotonic()
        self.state = {"pid": os.getpid(), "phase": phase, "done": 0, "total": total, "errors": 0,
                      "started": self.state.get("started", time.time())}
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
        rate = self.state["done"] / elapsed
        self.state.update(updated=time.time(), files_per_second=round(rate, 3), eta_seconds=None)
        if rate > 0 and self.state.get("total"):
            self.state["eta_seconds"] = round((self.state["total"] - self.state["done"]) / rate, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, lambda temp: Path(temp).write_text(json.dumps(self.state)))
        self.last_write = time.monotonic()


def read_progress(home: Path) -> dict | None:
    """The last run's progress, with ``running`` telling whether its process is still alive."""
    try:
        state = json.loads((Path(home) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    state["running"] = state.get("phase") != "finished" and _alive(state.get("pid"))
    return state


def describe(state: dict) -> str:
    phase, done, total = state.get("phase"), state.get("done", 0), state.get("total")
    if phase == "finished":
        summary = state.get("summary") or {}
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.get("finished", 0)))
        return f"last run finished {when}: " + ", ".join(f"{value} {key}" for key, value in summary.items())
    count = f"{done}/{total}" if total is not None else f"{done}"
    line = f"{phase} {count} files, {state.get('files_per_second', 0):.1f} files/s"
    if state.get("eta_seconds") is not None:
        line += f", ETA {_duration(state['eta_seconds'])}"
    if not state["running"]:
        line = f"interrupted while {line}; run `clapdex index` again to resume"
    return line


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
