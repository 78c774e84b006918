"""What each part of an index run was doing, from `py-spy record --subprocesses --idle --threads
--format raw` of it: for the main thread, the other threads of the main process, the decoders
and the scan's readers, the share of samples in each function (inclusive, and as the innermost
frame), and named waits (a decoder waiting for a file or for a free slot; the main thread
waiting for the decoders' pieces, for a copy to the GPU, or for the database).

    python bench/probes/spy_summary.py spy.txt --out spy.json
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

# Innermost-first patterns that name what a stack waits on; the first that matches wins.
WAITS = {
    "decoders": [("waiting for a file", "_work (encoders/decoding.py", "recv (multiprocessing/connection.py"),
                 ("waiting for a free slot", "_work (encoders/decoding.py", "acquire"),
                 ("sending a piece", "_work (encoders/decoding.py", "send (multiprocessing/connection.py")],
    "readers": [("waiting for work", "_process_worker (concurrent/futures/process.py", "get (multiprocessing/queues.py")],
    "main thread": [("waiting for the decoders' pieces", "pieces (encoders/decoding.py", "wait (multiprocessing/connection.py"),
                    ("waiting for the readers", "_done (indexer/scan.py", "result (concurrent/futures/_base.py"),
                    ("waiting for a GPU copy", "add_windows (encoders/batches.py", "synchronize"),
                    ("waiting for a free batch buffer", "add_windows (encoders/batches.py", "get (queue.py"),
                    ("waiting for the last vectors", "finish (encoders/batches.py", "get (queue.py"),
                    ("saving vectors (FAISS)", "save (search/", ""),
                    ("catalog (SQLAlchemy/SQLite)", "(sqlalchemy/", ""),
                    ("decode_windows bookkeeping", "pieces (encoders/decoding.py", ""),
                    ("scan: catalogue", "catalogue (indexer/pipeline.py", ""),
                    ("scan: look up", "look_up (indexer/pipeline.py", ""),
                    ("storing files", "store_files (indexer/pipeline.py", ""),
                    ("handing pieces to the GPU buffer", "add_windows (encoders/batches.py", "")],
}
PROCESS = re.compile(r'^process (\d+):"')
THREAD = re.compile(r"^thread \((?:0x)?[0-9a-f]+\)")
FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def function(frame: str) -> str:
    """'name (path/file.py:12)' -> 'name (file.py)', so lines of one function add up."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match.group(1)} ({match.group(2).split('site-packages/')[-1]})"


def summarize(path: Path, roles: dict[str, list[int]] | None = None) -> dict:
    """``roles``: the pids of the decoders and readers in use (index_where.py's ``roles``), so
    that idle pools of other worker counts are kept apart; without it, told by their stacks."""
    groups: dict[str, dict] = {}
    root = None
    lines = path.read_text(errors="replace").splitlines()
    parsed = []
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        parts = stack.split(";")
        # A frame can be a function named process or thread: those markers carry an id.
        processes = [part for part in parts if PROCESS.match(part)]
        thread = next((part for part in parts if THREAD.match(part)), "")
        frames = [part for part in parts if not (PROCESS.match(part) or THREAD.match(part))]
        parsed.append((processes, thread, frames, int(count)))
        if len(processes) == 1:
            root = PROCESS.match(processes[0]).group(1)
    for processes, thread, frames, count in parsed:
        text = ";".join(frames)
        if len(processes) == 1:
            tid = re.search(r"\((\d+)\)", thread)
            own = PROCESS.match(processes[0]).group(1)
            group = "main thread" if tid and tid.group(1) == own else "other threads of the main process"
        elif thread.endswith(": clapdex-parent-check"):  # each worker's watch on its parent: asleep
            group = "workers' parent checks"
        elif roles is not None:
            pid = int(PROCESS.match(processes[-1]).group(1))
            group = next((role for role in ("decoders", "readers") if pid in roles.get(role, [])), "other processes")
        elif "_work (encoders/decoding.py" in text:
            group = "decoders"
        elif "concurrent/futures/process.py" in text:
            group = "readers"
        else:
            group = "other processes"
        data = groups.setdefault(group, {"samples": 0, "inclusive": collections.Counter(),
                                         "innermost": collections.Counter(), "waits": collections.Counter()})
        data["samples"] += count
        for name in {function(frame) for frame in frames}:
            data["inclusive"][name] += count
        if frames:
            data["innermost"][function(frames[-1])] += count
        for label, outer, inner in WAITS.get(group, []):
            if outer in text and inner in text.rpartition(outer)[2]:
                data["waits"][label] += count
                break
        else:
            data["waits"]["other"] += count
    summary = {"root": root}
    for group, data in groups.items():
        total = data["samples"] or 1
        summary[group] = {
            "samples": data["samples"],
            "waits": {label: round(count / total, 3) for label, count in data["waits"].most_common()},
            "inclusive": {name: round(count / total, 3) for name, count in data["inclusive"].most_common(30)},
            "innermost": {name: round(count / total, 3) for name, count in data["innermost"].most_common(20)},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    summary = summarize(args.raw)
    args.out.write_text(json.dumps(summary, indent=1))
    for group in ("main thread", "decoders", "readers", "other threads of the main process"):
        if group in summary:
            print(group, summary[group]["samples"], json.dumps(summary[group]["waits"]))


if __name__ == "__main__":
    main()
