"""Where the cores go during `clapdex index`, and what a setting changes: bench/index_library.py's
index run, with cpu_sampler.py watching this process, its threads and every worker (scan readers
and decoders told apart), in one of two modes.

Instrumented bench (the code under --root as it is; only wrapped from outside, to learn the
workers' ids and when the first index run starts and ends):

    python bench/probes/index_where.py --root CODE --where OUT/where.json --bench -- --audio A --copies 40 --distinct --wrapper --out OUT/run.json

Variants in one process (the library copied, the weights written and the model warmed once;
each variant indexes it into a fresh home, timed alone):

    python bench/probes/index_where.py --root CODE --audio A --copies 40 --distinct --out OUT/variants.json \
        --variant base --variant dec15:decoders=15 --variant ahead4:encoders.decoding.FILES_AHEAD=4 ...

A variant is NAME or NAME:SETTING,SETTING where a setting is decoders=N (decoder processes),
readers=N (the scan's reader processes), batch=N (windows per GPU batch: a second model
loaded with that batch size), switch=SECONDS (the interpreter's thread switch interval),
compile (the audio tower through torch.compile: a model of its own, compiled while warming up,
outside the time), notext (no keyword texts written: what they cost the run), textsatend (the keyword texts of
the files the run adds written at its end, all at once, inside the time),
profile (cProfile of the main thread, written beside --out) or MODULE.NAME=VALUE (a module
constant, as index_library.py's --set).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gzip
import importlib
import importlib.util
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKS: list[dict] = []


def mark(event: str, **data) -> None:
    MARKS.append({"t": time.time(), "event": event, **data})


def load_code(root: Path):
    """index_library.py of the code under ``root``, imported, so that its imports (encoders,
    indexer, search) are that code's."""
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "tests"))
    spec = importlib.util.spec_from_file_location("index_library", root / "bench" / "index_library.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["index_library"] = module
    spec.loader.exec_module(module)
    return module


def roles() -> dict[str, list[int]]:
    """The live worker processes by role, and the threads of this process that matter."""
    from encoders import decoding
    scan = importlib.import_module("indexer.scan")

    # The pools of the counts in force: pools of other counts (an earlier variant's) stay idle.
    found = {"decoders": [], "readers": [], "readers_manager_thread": []}
    pool = decoding._POOLS.get(decoding.default_workers())
    if pool is not None and not pool.closed:
        found["decoders"] += [worker.process.pid for worker in pool.workers if worker.process.is_alive()]
    readers = scan._READERS.get(scan.default_workers())
    if readers is not None:
        found["readers"] += list(getattr(readers, "_processes", {}) or {})
        manager = getattr(readers, "_executor_manager_thread", None)
        if manager is not None and manager.native_id:
            found["readers_manager_thread"].append(manager.native_id)
    found["embed_thread"] = sorted({m["tid"] for m in MARKS if m["event"] == "embed thread"})
    return found


def watch_embed_thread() -> None:
    """Note the native id of each thread that feeds the model."""
    from encoders import batches

    original = batches.BatchEmbedder._embed_batches

    def embed_batches(self):
        mark("embed thread", tid=threading.get_native_id())
        return original(self)

    batches.BatchEmbedder._embed_batches = embed_batches


class Sampler:
    """cpu_sampler.py in a process of its own, watching this one."""

    def __init__(self, out: Path, interval: float):
        self.out, self.stop_file = out, out.with_suffix(".stop")
        self.stop_file.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, str(HERE / "cpu_sampler.py"), "--pid", str(os.getpid()),
                                         "--out", str(out), "--interval", str(interval),
                                         "--stop-file", str(self.stop_file)])

    def stop(self) -> dict:
        self.stop_file.touch()
        self.process.wait(timeout=60)
        self.stop_file.unlink(missing_ok=True)
        return json.loads(self.out.read_text())


def summarize(recorded: dict, start: float, end: float, found: dict[str, list[int]]) -> dict:
    sys.path.insert(0, str(HERE))
    from cpu_sampler import summarize as by_role

    return by_role(recorded, start, end, found)


def instrumented_bench(args, bench_args: list[str]) -> None:
    """index_library.py's main, as it is, with the sampler watching and marks around its first
    index run."""
    module = load_code(args.root)
    watch_embed_thread()
    index_paths, start_workers = module.index_paths, module.start_index_workers
    runs: list[tuple[float, float, dict]] = []

    def start_index_workers():
        start_workers()
        mark("workers started")

    def timed_index_paths(*a, **k):
        started = time.time()
        try:
            return index_paths(*a, **k)
        finally:
            runs.append((started, time.time(), roles()))

    module.start_index_workers, module.index_paths = start_index_workers, timed_index_paths
    sampler = Sampler(args.where.with_suffix(".samples.json"), args.interval)
    sys.argv = [str(args.root / "bench" / "index_library.py")] + bench_args
    try:
        module.main()
    finally:
        recorded = sampler.stop()
        where = {"runs": [{"seconds": end - start, "roles": {k: len(v) for k, v in found.items()},
                           **summarize(recorded, start, end, found)} for start, end, found in runs],
                 "marks": MARKS, "bench_args": bench_args}
        args.where.write_text(json.dumps(where, indent=1))
        print_where(where["runs"][:1], ["first run"])


def start_spy(path: Path) -> tuple[subprocess.Popen, Path]:
    """py-spy sampling this process, its threads and its workers (idle ones too) until stopped;
    without pausing them (--nonblocking), so that it disturbs the run little."""
    command = [os.environ.get("PYSPY") or shutil.which("py-spy") or "py-spy", "record", "--pid", str(os.getpid()),
               "--subprocesses", "--idle", "--threads", "--nonblocking", "--rate", "100", "--format", "raw",
               "-o", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # attached to every process before the clock starts
    return process, path


def stop_spy(process: subprocess.Popen, path: Path, found: dict[str, list[int]]) -> dict:
    process.send_signal(signal.SIGINT)
    try:
        _, said = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, said = process.communicate()
    sys.path.insert(0, str(HERE))
    from spy_summary import summarize as spied

    if not path.exists():
        return {"error": f"py-spy wrote nothing (exit {process.returncode}): {said[-500:]}"}
    with open(path, "rb") as raw, gzip.open(path.with_suffix(".txt.gz"), "wb") as packed:
        shutil.copyfileobj(raw, packed)  # kept whatever the summary makes of it
    try:
        return spied(path, found)
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        path.unlink()


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition(":")
    parsed = {}
    for setting in filter(None, settings.split(",")):
        key, _, value = setting.partition("=")
        parsed[key] = value
    return name, parsed


@contextlib.contextmanager
def applied(settings: dict[str, str], encoders_by_batch: dict, load_encoder):
    """The variant's settings for the duration of one run; yields (encoder, profile or None)."""
    from encoders import decoding
    scan = importlib.import_module("indexer.scan")

    undo = []
    try:
        for key, value in settings.items():
            if "." in key:
                module_name, _, constant = key.rpartition(".")
                module = importlib.import_module(module_name)
                old = getattr(module, constant)
                setattr(module, constant, type(old)(value))
                undo.append(lambda module=module, constant=constant, old=old: setattr(module, constant, old))
        if "decoders" in settings:
            count = int(settings["decoders"])
            decoding.default_workers = lambda: count
            undo.append(lambda: setattr(decoding, "default_workers", ORIGINAL_DEFAULT_WORKERS))
        if "readers" in settings:
            count_r = int(settings["readers"])
            scan.default_workers = lambda: count_r
            undo.append(lambda: setattr(scan, "default_workers", ORIGINAL_DEFAULT_WORKERS))
        catalog_module = texts_module()
        if "notext" in settings:  # what the run costs without keyword texts (search then lacks them)
            kept = catalog_module._text_kept
            catalog_module._text_kept = lambda connection: False
            undo.append(lambda: setattr(catalog_module, "_text_kept", kept))
        if "textsatend" in settings:  # the scan's keyword texts left to the run's end, written at once
            adding = catalog_module._add_texts
            catalog_module._add_texts = lambda connection, texts: TEXTS_LEFT.extend(texts)
            undo.append(lambda: setattr(catalog_module, "_add_texts", adding))
        if "switch" in settings:
            old_switch = sys.getswitchinterval()
            sys.setswitchinterval(float(settings["switch"]))
            undo.append(lambda: sys.setswitchinterval(old_switch))
        model = (int(settings.get("batch", 0)), "compile" in settings)
        if model not in encoders_by_batch:
            encoders_by_batch[model] = load_encoder(*model)  # loaded and warmed (compiled) outside the clock
        yield encoders_by_batch[model], cProfile.Profile() if "profile" in settings else None
    finally:
        for step in reversed(undo):
            step()
        # Pools of another count than the default's are this variant's: ended, so that they
        # neither hold memory nor show in the next variant's py-spy.
        for count in [count for count in decoding._POOLS if count != decoding.default_workers()]:
            decoding._POOLS.pop(count).close()
        for count in [count for count in scan._READERS if count != scan.default_workers()]:
            scan._READERS.pop(count).shutdown()


ORIGINAL_DEFAULT_WORKERS = None
ORIGINAL_ADD_TEXTS = None


def texts_module():
    """Where the code measured writes keyword texts: search.keyword_index since pgkw, search.catalog before."""
    try:
        return importlib.import_module("search.keyword_index")
    except ModuleNotFoundError:
        return importlib.import_module("search.catalog")
TEXTS_LEFT: list = []  # the texts the variant textsatend holds back


def variants(args) -> None:
    global ORIGINAL_DEFAULT_WORKERS, ORIGINAL_ADD_TEXTS
    module = load_code(args.root)
    watch_embed_thread()
    import torch

    from encoders import decoding
    from indexer.pipeline import index_paths, start_index_workers
    from search.library import Library

    ORIGINAL_DEFAULT_WORKERS = decoding.default_workers
    ORIGINAL_ADD_TEXTS = texts_module()._add_texts
    out = args.out
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
               "root": str(args.root), "cores": len(os.sched_getaffinity(0)),
               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu", "runs": []}
    sampler = Sampler(out.with_suffix(".samples.json"), args.interval)
    spans = []
    try:
        with tempfile.TemporaryDirectory(prefix="clapdex-where-") as folder:
            folder = Path(folder)
            library = folder / "library"
            made = time.perf_counter()
            if args.long_files:
                module.write_recordings(sorted(p for p in args.audio.rglob("*") if p.is_file()), library,
                                        args.long_files, args.long_seconds)
            else:
                for copy in range(args.copies):
                    shutil.copytree(args.audio, library / f"copy{copy}")
                    if args.distinct:
                        module.tag_copies(library / f"copy{copy}", copy)
            files = sum(1 for path in library.rglob("*") if path.is_file())
            for path in library.rglob("*"):
                if path.is_file():
                    path.read_bytes()
            results["library_seconds"] = time.perf_counter() - made
            start_index_workers()
            checkpoint = module.write_tiny_msclap_checkpoint(folder / "weights", full=True)

            def load_encoder(batch: int, compiled: bool = False):
                encoder = module.load_msclap_2023(checkpoint, device=args.device, batch_size=batch or None,
                                                  compiled=compiled)
                encoder.runtime.embed_windows(torch.zeros(encoder.batch_size, encoder.config.window_samples))
                return encoder

            loading = time.perf_counter()
            encoders_by_batch = {(0, False): load_encoder(0)}
            results["model_seconds"] = time.perf_counter() - loading
            print(f"library {results['library_seconds']:.1f} s ({files} files), weights and model "
                  f"{results['model_seconds']:.1f} s", flush=True)
            for number, text in enumerate(args.variant):
                name, settings = parse_variant(text)
                row = {"variant": name, "settings": settings}
                try:
                    with applied(settings, encoders_by_batch, load_encoder) as (encoder, profile):
                        start_index_workers()  # a new worker count's pools start here, outside the clock
                        found = roles()
                        settings_obj = module.Settings(home=folder / f"home{number}", device=args.device)
                        settings_obj.home.mkdir()
                        stamps: dict[str, float] = {}

                        def progress(path: str, outcome: str, stamps=stamps) -> None:
                            stamps[outcome] = time.perf_counter()

                        spy = start_spy(out.with_name(f"{out.stem}.{name}.spy.txt")) if "spy" in settings else None
                        workers_before = module.workers_cpu_seconds()
                        wall, perf = time.time(), time.perf_counter()
                        main_cpu, process_cpu = time.thread_time(), time.process_time()
                        with Library(settings_obj, create=True, encoder=encoder) as opened, \
                                profile or contextlib.nullcontext():
                            report = index_paths(opened, [library], progress=progress)
                            if "textsatend" in settings:
                                left = list(TEXTS_LEFT)
                                TEXTS_LEFT.clear()
                                row["texts_at_end"] = len(left)
                                ORIGINAL_ADD_TEXTS(opened.catalog.session, left)
                                opened.catalog.commit()
                        seconds = time.perf_counter() - perf
                        if spy is not None:
                            row["spy"] = stop_spy(*spy, roles())
                        row |= {"files": files, "seconds": seconds, "files_per_s": files / seconds,
                                "report": report.summary(), "main_thread_cpu_seconds": time.thread_time() - main_cpu,
                                "process_cpu_seconds": time.process_time() - process_cpu,
                                "workers_cpu_seconds": module.workers_cpu_seconds() - workers_before,
                                "scan_seconds": stamps.get("pending", perf) - perf,
                                "batch_size": encoder.batch_size}
                        with module.Catalog(settings_obj.catalog_url) as catalog:
                            row["windows"] = catalog.counts()["windows"]
                        row["windows_per_s"] = row["windows"] / seconds
                        spans.append((len(results["runs"]), wall, wall + seconds, roles()))
                        if profile is not None:
                            text_out = io.StringIO()
                            pstats.Stats(profile, stream=text_out).sort_stats("tottime").print_stats(40)
                            pstats.Stats(profile, stream=text_out).sort_stats("cumulative").print_stats(40)
                            profile_path = out.with_name(f"{out.stem}.{name}.profile.txt")
                            profile_path.write_text(text_out.getvalue())
                            row["profile"] = profile_path.name
                except Exception as exc:  # one variant's failure keeps the others'
                    traceback.print_exc()
                    row["error"] = f"{type(exc).__name__}: {exc}"
                results["runs"].append(row)
                print(f"{name}: {row.get('files_per_s', 0):.0f} files/s, {row.get('windows_per_s', 0):.0f} windows/s "
                      f"{row.get('error', '')}", flush=True)
                shutil.rmtree(folder / f"home{number}", ignore_errors=True)
                out.write_text(json.dumps(results, indent=1))  # what ran so far, should the call end here
    finally:
        recorded = sampler.stop()
        for index, start, end, found in spans:
            results["runs"][index]["where"] = summarize(recorded, start, end, found)
            results["runs"][index]["roles"] = found
        out.write_text(json.dumps(results, indent=1))
        print_where([run.get("where", {}) | run for run in results["runs"]],
                    [run["variant"] for run in results["runs"]])


def print_where(rows: list[dict], names: list[str]) -> None:
    print(f"{'run':<22}{'files/s':>9}{'win/s':>8}{'machine':>9}{'main thr':>9}{'main proc':>10}"
          f"{'decoders':>9}{'readers':>8}  decoder states")
    for name, row in zip(names, rows):
        decoders, readers = row.get("decoders", {}), row.get("readers", {})
        print(f"{name:<22}{row.get('files_per_s', 0):>9.0f}{row.get('windows_per_s', 0):>8.0f}"
              f"{row.get('machine_busy_cores', 0):>9.2f}{row.get('main_thread_cores', 0):>9.2f}"
              f"{row.get('main_process_cores', 0):>10.2f}{decoders.get('cores', 0):>9.2f}{readers.get('cores', 0):>8.2f}"
              f"  {decoders.get('states', {})}")


def report(work: Path) -> None:
    """A short table of everything in ``work`` (index_where.sh's folder): runs, cores by role, waits."""
    rows, names = [], []
    bench, where = work / "A_bench.json", work / "A_where.json"
    wrapper = None
    if bench.exists():
        data = json.loads(bench.read_text())
        wrapper = data.get("wrapper", {}).get("files_per_s")
        first = data["first_run"]
        print(f"A: index_library.py as it is, {data['files']} files, {first['seconds']:.2f} s, "
              f"{first['files_per_s']:.0f} files/s, wrapper {wrapper} files/s, vs wrapper {first.get('vs_wrapper')}; "
              f"main thread CPU {first['main_thread_cpu_seconds']:.2f} s, process {first['process_cpu_seconds']:.2f} s, "
              f"workers {first['workers_cpu_seconds']:.1f} s, scan {first['scan_seconds']:.2f} s")
        if where.exists():
            runs = json.loads(where.read_text())["runs"]
            if runs:
                rows.append(runs[0] | first | {"files": data["files"]})
                names.append("A first run")
    parts = ["B_variants", "C_long", "T_main1", "T_branch1", "L_compile"]
    steps = {path.stem for path in work.glob("[TL]_*.json") if "." not in path.stem}  # not their .samples
    parts += sorted(steps - set(parts), key=lambda name: (work / f"{name}.json").stat().st_mtime)
    for part in parts:
        path = work / f"{part}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        print(f"{part}: {data.get('root')}, {data.get('device')}, {data.get('cores')} cores, library {data.get('library_seconds', 0):.1f} s, "
              f"model {data.get('model_seconds', 0):.1f} s")
        for run in data["runs"]:
            rows.append(run.get("where", {}) | run)
            names.append(f"{part if part.startswith(('T_', 'L_')) else part[0]} {run['variant']}")
    print_where(rows, names)
    print("\nrun                   workers CPU ms/file  main thread CPU s  embed thread cores  vs wrapper  error")
    for name, row in zip(names, rows):
        threads = {t["role"]: t["cores"] for t in row.get("busiest_threads", []) if t["role"]}
        files = row.get("files") or 1
        print(f"{name:<22}{1000 * row.get('workers_cpu_seconds', 0) / files:>10.2f}"
              f"{row.get('main_thread_cpu_seconds', 0):>19.2f}{threads.get('embed_thread', 0):>20.2f}"
              f"{(row.get('files_per_s', 0) / wrapper) if wrapper else 0:>12.1f}  {row.get('error', '')}")
    for name, row in zip(names, rows):
        if "spy" in row:
            print(f"\npy-spy, {name}:")
            for group, data in row["spy"].items():
                if isinstance(data, dict):
                    print(f"  {group} ({data['samples']} samples): {json.dumps(data['waits'])}")
                    print(f"    innermost: {json.dumps(dict(list(data['innermost'].items())[:8]))}")
        if "profile" in row and (work / row["profile"]).exists():
            print(f"\ncProfile of the main thread, {name}:")
            print("\n".join((work / row["profile"]).read_text().splitlines()[:40]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent.parent, help="the code to run (a checkout)")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--bench", action="store_true", help="run index_library.py's main with the arguments after --")
    parser.add_argument("--where", type=Path, help="with --bench: the sampler's summary")
    parser.add_argument("--audio", type=Path)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--distinct", action="store_true")
    parser.add_argument("--long-files", type=int, default=0)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, help="print a table of what index_where.sh left in this folder")
    argv = sys.argv[1:]
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.root = args.root.resolve()
    if args.report:
        report(args.report)
        return
    if args.bench:
        if args.where is None:
            parser.error("--bench needs --where")
        instrumented_bench(args, bench_args)
        return
    if args.audio is None or args.out is None or not args.variant:
        parser.error("variants need --audio, --out and at least one --variant")
    if args.device is None:
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    variants(args)


if __name__ == "__main__":
    main()
