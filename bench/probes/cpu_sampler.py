"""Where a machine's cores go while a process tree runs, read from /proc: the machine's busy
cores, each thread of the watched process, and each of its descendant processes, every
--interval seconds, until the watched process ends or --stop-file appears.

    python bench/probes/cpu_sampler.py --pid PID --out samples.json [--interval 0.5]

Each sample holds, per process (and per thread of the watched one), the CPU seconds used since
the sample before and the scheduler state it was in at the moment of the sample (R running or
runnable, S sleeping, D in an uninterruptible wait) and, where the kernel shows it, the kernel
function it sleeps in (/proc/PID/wchan: a pipe read, a futex, poll). ``summarize`` (used by
index_where.py) turns the samples of an interval into busy cores by role.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return file.read().decode(errors="replace")
    except OSError:
        return None


def _stat(path: str) -> tuple[str, int, float] | None:
    """(state, parent pid, CPU seconds) of a /proc/.../stat file."""
    text = _read(path)
    if text is None:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(value) for value in _read("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is counted in user already
    return (total - idle) / TICKS, total / TICKS


def _descendants(root: int) -> list[int]:
    """Processes under ``root`` (children files where the kernel has them, else a /proc walk)."""
    found, todo = [], [root]
    children_files = os.path.exists(f"/proc/{root}/task/{root}/children")
    if not children_files:
        parents = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = _stat(f"/proc/{name}/stat")
                if stat is not None:
                    parents.setdefault(stat[1], []).append(int(name))
    while todo:
        pid = todo.pop()
        if children_files:
            kids = []
            for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
                text = _read(f"/proc/{pid}/task/{task}/children")
                kids += [int(kid) for kid in (text or "").split()]
        else:
            kids = parents.get(pid, [])
        found += kids
        todo += kids
    return found


def sample(root: int, wchan: bool) -> dict:
    now = time.time()
    busy, total = _machine_busy()
    threads = {}
    for task in os.listdir(f"/proc/{root}/task"):
        stat = _stat(f"/proc/{root}/task/{task}/stat")
        if stat is not None:
            threads[task] = [stat[0], stat[2]] + ([(_read(f"/proc/{root}/task/{task}/wchan") or "")] if wchan else [])
    processes = {}
    for pid in _descendants(root):
        stat = _stat(f"/proc/{pid}/stat")
        if stat is not None:
            processes[str(pid)] = [stat[0], stat[2]] + ([(_read(f"/proc/{pid}/wchan") or "")] if wchan else [])
    return {"t": now, "machine_busy": busy, "machine_total": total, "threads": threads, "processes": processes}


def record(root: int, out: Path, interval: float, stop_file: Path | None) -> None:
    # wchan reads "0" where the kernel hides it: then it is left out of every sample.
    wchan = (_read(f"/proc/{root}/wchan") or "0") != "0"
    samples, names = [], {}
    try:
        while os.path.exists(f"/proc/{root}") and not (stop_file and stop_file.exists()):
            try:
                samples.append(sample(root, wchan))
            except (FileNotFoundError, ProcessLookupError):  # the root ended between two reads
                break
            for task in samples[-1]["threads"]:
                if task not in names:
                    names[task] = (_read(f"/proc/{root}/task/{task}/comm") or "").strip()
            time.sleep(interval)
    finally:
        out.write_text(json.dumps({"root": root, "interval": interval, "cores": os.cpu_count(),
                                   "wchan": wchan, "thread_names": names, "samples": samples}))


def _rate(samples: list[dict], key: str, ident: str) -> list[tuple[float, float, str, str]]:
    """(t, cores busy since the sample before, state, wchan) of one process or thread."""
    series = []
    for before, after in zip(samples, samples[1:]):
        a, b = before[key].get(ident), after[key].get(ident)
        if a is None or b is None:
            continue
        span = after["t"] - before["t"]
        series.append((after["t"], (b[1] - a[1]) / span, b[0], b[2] if len(b) > 2 else ""))
    return series


def summarize(recorded: dict, start: float, end: float, roles: dict[str, list[int]]) -> dict:
    """Busy cores by role between ``start`` and ``end`` (wall clock): each role's mean over the
    interval, its per-process spread, the share of samples each role's processes were running
    (state R) and, with wchan, where the others slept; plus a 0.5-s series of the sums."""
    samples = [s for s in recorded["samples"] if start - recorded["interval"] <= s["t"] <= end + recorded["interval"]]
    if len(samples) < 2:
        return {"error": f"{len(samples)} samples in the interval"}
    span = samples[-1]["t"] - samples[0]["t"]
    root = str(recorded["root"])
    result = {"seconds_sampled": span, "samples": len(samples),
              "machine_busy_cores": (samples[-1]["machine_busy"] - samples[0]["machine_busy"]) / span,
              "machine_cores": recorded["cores"]}
    # Threads that started or ended inside the interval (the model's feeder lives for one run)
    # count from their first sample to their last.
    threads = {}
    for task in {task for s in samples for task in s["threads"]}:
        seen = [s["threads"][task][1] for s in samples if task in s["threads"]]
        threads[task] = (seen[-1] - seen[0]) / span
    names = recorded.get("thread_names", {})
    result["main_thread_cores"] = threads.get(root, 0.0)
    result["main_process_cores"] = sum(threads.values())
    result["busiest_threads"] = [{"tid": task, "name": names.get(task, ""), "cores": cores,
                                  "role": next((role for role, ids in roles.items() if int(task) in ids), "")}
                                 for task, cores in sorted(threads.items(), key=lambda item: -item[1])[:6]]
    for role, pids in roles.items():
        if role.endswith("_thread"):
            continue
        per = []
        states: dict[str, int] = {}
        for pid in pids:
            first = next((s["processes"][str(pid)] for s in samples if str(pid) in s["processes"]), None)
            last = next((s["processes"][str(pid)] for s in reversed(samples) if str(pid) in s["processes"]), None)
            if first is None or last is None:
                continue
            per.append((last[1] - first[1]) / span)
            for s in samples[1:]:
                entry = s["processes"].get(str(pid))
                if entry is not None:
                    label = entry[0] if entry[0] == "R" or len(entry) < 3 else f"{entry[0]}:{entry[2]}"
                    states[label] = states.get(label, 0) + 1
        if per:
            counted = sum(states.values())
            result[role] = {"processes": len(per), "cores": sum(per), "per_process_min": min(per),
                            "per_process_max": max(per),
                            "states": {label: round(count / counted, 3) for label, count in
                                       sorted(states.items(), key=lambda item: -item[1])[:6]}}
    main_states: dict[str, int] = {}
    for s in samples[1:]:
        entry = s["threads"].get(root)
        if entry is not None:
            label = entry[0] if entry[0] == "R" or len(entry) < 3 else f"{entry[0]}:{entry[2]}"
            main_states[label] = main_states.get(label, 0) + 1
    counted = sum(main_states.values()) or 1
    result["main_thread_states"] = {label: round(count / counted, 3) for label, count in main_states.items()}
    series = []
    for before, after in zip(samples, samples[1:]):
        gap = after["t"] - before["t"]
        row = {"t": round(after["t"] - start, 2),
               "machine": round((after["machine_busy"] - before["machine_busy"]) / gap, 2)}
        main = (before["threads"].get(root), after["threads"].get(root))
        row["main"] = round((main[1][1] - main[0][1]) / gap, 2) if None not in main else None
        for role, pids in roles.items():
            if role.endswith("_thread"):
                continue
            used = 0.0
            for pid in pids:
                a, b = before["processes"].get(str(pid)), after["processes"].get(str(pid))
                if a is not None and b is not None:
                    used += b[1] - a[1]
            row[role] = round(used / gap, 2)
        series.append(row)
    result["series"] = series
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--stop-file", type=Path)
    args = parser.parse_args()
    record(args.pid, args.out, args.interval, args.stop_file)


if __name__ == "__main__":
    main()
