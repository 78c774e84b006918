"""`clapdex index` on this machine against `clapdex index --ray`, on the same library, in rounds
that alternate, each run in a fresh home.

Three ways per round: the local pipeline; `--ray` with no address (a local Ray started for the run
and stopped after it, its start counted); `--ray ADDRESS` on a Ray cluster of this machine started
before the run (`ray start --head`, as a cluster would be running already; it is stopped after
these runs, so it does not idle beside the others). Each run reports the command's wall time and
the run's own (from its progress file: scan, decoding, embedding and storing, after the model has
loaded in the command's process; for Ray, the actors' start and model load included).

    flock /tmp/bench.lock nice -n 5 python bench/ray_index.py --audio /work/shared/data/esc10 \\
        --model clapdex-compact --rounds 2 --out bench/results/ray_index_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLAPDEX = Path(sys.executable).with_name("clapdex")
RAY = Path(sys.executable).with_name("ray")
AUDIO = {".ogg", ".wav", ".flac", ".mp3"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_index(home: Path, library: Path, options: list[str], ray: str | None, env: dict) -> dict:
    command = [str(CLAPDEX), "--home", str(home), *options, "index", str(library)]
    if ray is not None:
        command += ["--ray"] + ([ray] if ray else [])
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    progress = json.loads((home / "indexing.json").read_text())
    files = progress["summary"]["indexed"]
    run = progress["finished"] - progress["started"]
    return {"files": files, "command_seconds": round(wall, 2), "command_files_per_second": round(files / wall, 1),
            "run_seconds": round(run, 2), "run_files_per_second": round(files / run, 1),
            "summary": result.stdout.strip().splitlines()[-1]}


class Cluster:
    """A one-node Ray cluster of this machine (`ray start --head --block`, a process group of its own)."""

    def __init__(self, env: dict, temp: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [str(RAY), "start", "--head", "--block", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp),
             "--ray-client-server-port", str(free_port())],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.address = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        check = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR')"
        while subprocess.run([sys.executable, "-c", check, self.address], env=env, capture_output=True).returncode:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit("the Ray cluster did not start")
            time.sleep(1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", required=True, type=Path, help="a folder of audio files (copied into the library)")
    parser.add_argument("--model", default="clapdex-compact")
    parser.add_argument("--weights", help="the model's weights (default: its own)")
    parser.add_argument("--device", default="cpu", help="cpu (default), or auto: the GPUs, for the local run and Ray's actors")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ray-bench-", dir="/tmp"))
    library = work / "library"
    library.mkdir()
    for number, path in enumerate(sorted(p for p in args.audio.rglob("*") if p.suffix.lower() in AUDIO)):
        shutil.copyfile(path, library / f"{number:05d}{path.suffix}")
    # No token: the clusters listen on loopback for the bench, and nothing is written to ~/.ray.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    options = ["--model", args.model, "--device", args.device] + (["--weights", args.weights] if args.weights else [])
    rounds = []
    try:
        for round_number in range(args.rounds):
            runs = {}
            runs["local"] = run_index(work / f"local-{round_number}", library, options, None, env)
            runs["ray, started for the run"] = run_index(work / f"ray-own-{round_number}", library, options, "", env)
            cluster = Cluster(env, Path(f"/tmp/rb-{os.getpid()}"))
            try:
                runs["ray, cluster running"] = run_index(work / f"ray-{round_number}", library, options,
                                                         cluster.address, env)
            finally:
                cluster.stop()
                shutil.rmtree(f"/tmp/rb-{os.getpid()}", ignore_errors=True)
            for name, result in runs.items():
                print(f"round {round_number + 1} {name}: {result}", flush=True)
            rounds.append(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "model": args.model, "device": args.device, "files": rounds[0]["local"]["files"], "rounds": rounds,
              "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
              "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
