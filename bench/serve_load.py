"""A bounded load test of `clapdex serve`: concurrent clients on loopback, a mix of text
searches, "similar" and audio downloads, for a fixed time, against a library of about 10^5
windows indexed with the shipped model (synthetic vectors, real files: hard links to a few
real WAVs, so the audio route reads real bytes). Stops by itself.

    python bench/serve_load.py --home /tmp/load-home --clients 32 --seconds 60 --out bench/results/serve_load.json
    python bench/serve_load.py --home /tmp/load-home --workers 0 --out bench/results/serve_load_one_process.json
    python bench/serve_load.py --home /tmp/load-home --new-words --out bench/results/serve_load_new_words.json

Prints, per route, requests, errors, p50/p95/p99 ms, and requests/s overall, and the CPU time
a request took in the server process and in each of its children (the search workers).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import soundfile

from encoders import load_encoder
from search.catalog import Embedded, Metadata, NewFile
from search.config import load_settings
from search.library import Library
from server import keys

WORDS = ("rain thunder door creak glass shatter metal impact whoosh swoosh footsteps gravel wood snow wind "
         "engine car horn bird dog cat crowd applause laser bell chime piano kick snare cymbal bass drone "
         "water splash fire crackle paper rustle cloth zipper click beep alarm siren train plane").split()
WINDOWS_PER_FILE = 3


def build(home: Path, files: int, seed: int = 0) -> None:
    """A library of ``files`` files of three windows each, its vectors random unit vectors."""
    rng = np.random.default_rng(seed)
    sources = home / "sources"
    sources.mkdir(parents=True)
    originals = []
    for number in range(24):
        samples = (rng.standard_normal(44100) * np.exp(-np.linspace(0, 6, 44100))).astype(np.float32) * 0.5
        originals.append(sources / f"source_{number}.wav")
        soundfile.write(originals[-1], samples, 44100, subtype="PCM_16")
    root = home / "library"
    settings = load_settings(home, model="clapdex-compact", device="cpu")
    with Library(settings, create=True, encoder=load_encoder("clapdex-compact", device="cpu")) as library:
        catalog = library.catalog
        catalog.claim_model(library.identity)
        for start in range(0, files, 2000):
            new = []
            for number in range(start, min(files, start + 2000)):
                folder = root / f"{WORDS[number % len(WORDS)]}" / f"take_{number // 500:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{WORDS[number % len(WORDS)]}_{WORDS[(number * 7) % len(WORDS)]}_{number:06d}.wav"
                os.link(originals[number % len(originals)], path)
                new.append(NewFile(str(path), str(root), 88244, path.stat().st_mtime, None,
                                   Metadata(duration=1.0, sample_rate=44100, channels=1, bit_depth=16, codec="pcm_s16le")))
            catalog.add_files(new)
            records = catalog.files_at([file.path for file in new])
            spans = [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)][:WINDOWS_PER_FILE]
            _, added = catalog.replace_windows_of([Embedded(records[file.path], spans, 1.0, 44100, 1, "pcm_s16le")
                                                   for file in new])
            ids = np.array([i for group in added for i in group], dtype=np.int64)
            vectors = rng.standard_normal((len(ids), library.dim)).astype(np.float32)
            library.store.add(ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        library.store.save()
        catalog.commit()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client(port: int, key: str, paths: list[str], until: float, seed: int, latencies: dict, errors: dict,
           new_words: bool = False) -> None:
    rng = random.Random(seed)
    asked = 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < until:
        draw = rng.random()
        if draw < 0.6:
            route = "search"
            words = " ".join(rng.sample(WORDS, 2))
            if new_words:  # a number no client sent before: no cache of texts answers it
                asked += 1
                words += f" {seed * 10**7 + asked}"
            target = "/v1/search?" + urllib.parse.urlencode({"q": words, "top": 20})
        elif draw < 0.8:
            route = "similar"
            target = "/v1/similar?" + urllib.parse.urlencode({"path": rng.choice(paths), "top": 20})
        else:
            route = "audio"
            target = "/v1/audio?" + urllib.parse.urlencode({"path": rng.choice(paths)})
        started = time.perf_counter()
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies[route].append(1000 * (time.perf_counter() - started))
        if not ok:
            errors[route] += 1
    connection.close()


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``pid`` and each of its children, by command."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name == str(pid) or fields[1] == str(pid):
            name = "server" if entry.name == str(pid) else f"child {entry.name}"
            used[name] = (int(fields[11]) + int(fields[12])) / tick
    return used


def _tail(log, characters: int = 4000) -> str:
    log.seek(0)
    return log.read()[-characters:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--files", type=int, default=33_334, help="files of three windows each (default: 10^5 windows)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, help="clapdex serve --workers (default: its own default)")
    parser.add_argument("--new-words", action="store_true",
                        help="every text query new to the server (its words and a number never sent before)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.home / "catalog.sqlite").exists():
        started = time.perf_counter()
        build(args.home, args.files)
        print(f"built {args.files} files in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    settings = load_settings(args.home)
    with Library(settings) as library:
        key = keys.add(library, f"load-{os.getpid()}", "read")
        with library.reading() as catalog:
            paths = [record.path for record in catalog.files()][:: max(1, args.files // 2000)]
    port = free_port()
    server_log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen([sys.executable, "-m", "clapdex", "--home", str(args.home), "--device", "cpu", "serve",
                               "--port", str(port), "--rate-limit", "100000000",
                               *(["--workers", str(args.workers)] if args.workers is not None else [])],
                              stdout=subprocess.DEVNULL, stderr=server_log, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/v1/status", headers={"Authorization": f"Bearer {key}"})
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"clapdex serve did not start: {_tail(server_log)}")
            time.sleep(0.5)
        latencies = {route: [] for route in ("search", "similar", "audio")}
        errors = dict.fromkeys(latencies, 0)
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=client, args=(port, key, paths, until, seed, latencies, errors, args.new_words))
                   for seed in range(args.clients)]
        cpu_before = cpu_seconds(server.pid)
        generating = time.process_time()
        begun = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - begun
        cpu_after = cpu_seconds(server.pid)
        generating = time.process_time() - generating
    finally:
        server.terminate()
        server.wait(timeout=30)
    if sum(errors.values()):
        print(f"errors; the server said:\n{_tail(server_log)}", file=sys.stderr)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()}, {os.cpu_count()} CPUs", "command": " ".join(sys.argv),
              "files": args.files, "workers": args.workers, "windows": args.files * WINDOWS_PER_FILE, "clients": args.clients,
              "new_words": args.new_words, "seconds": round(elapsed, 1),
              "requests_per_second": round(sum(map(len, latencies.values())) / elapsed, 1), "routes": {}}
    answered = sum(map(len, latencies.values()))
    # CPU a request, per process (the server, its search workers) and all together.
    report["cpu_ms_per_request"] = {name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0)) / answered, 2)
                                    for name in cpu_after if cpu_after[name] - cpu_before.get(name, 0) > 0.05}
    report["cpu_ms_per_request"]["all"] = round(sum(report["cpu_ms_per_request"].values()), 2)
    # The clients share the cores: what they take is not the server's to use.
    report["cpu_ms_per_request"]["load generator"] = round(1000 * generating / answered, 2)
    print(f"{'route':<9}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for route, values in latencies.items():
        cuts = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
        report["routes"][route] = {"requests": len(values), "errors": errors[route], "p50": round(cuts[49], 1),
                                   "p95": round(cuts[94], 1), "p99": round(cuts[98], 1)}
        print(f"{route:<9}{len(values):>9}{errors[route]:>8}{cuts[49]:>9.0f}{cuts[94]:>9.0f}{cuts[98]:>9.0f}")
    print(f"{report['requests_per_second']} requests/s, {args.clients} clients, {elapsed:.0f} s; "
          f"CPU ms a request: {report['cpu_ms_per_request']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
