"""Near duplicates the library keeps: a whole pass, an update after files are added, and reading
what is kept (the Library call, the page's Duplicates view, `clapdex duplicates --json`).

On a library home built by bench/library_scale.py or bench/near_duplicates.py (a copy, for
``add``: it changes the library), one step per run:

    python bench/near_duplicates_kept.py --home /tmp/dup-1e6 --step whole --out whole.json
    python bench/near_duplicates_kept.py --home /tmp/dup-1e6 --step add --files 1000 --out add.json
    python bench/near_duplicates_kept.py --home /tmp/dup-1e6 --step read --out read.json

``add`` puts --files new files (1 to 5 windows; one in ten a re-encode of a file of the library)
in the catalog and the store, then times the update an index run ends with.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from near_duplicates import add_file  # noqa: E402
from search import duplicates  # noqa: E402
from search.config import load_settings  # noqa: E402
from search.library import Library  # noqa: E402

log = logging.getLogger("near_duplicates_kept")


def whole(settings) -> dict:
    (settings.home / duplicates.GRAPH_FILE).unlink(missing_ok=True)  # nothing to start from
    with Library(settings) as library:
        clock = time.perf_counter()
        how = library.update_near_duplicates(lambda doing, done: log.info("%s %.0f%%", doing, 100 * done))
        seconds = time.perf_counter() - clock
        kept = library.kept_near_duplicates(duplicates.KEPT_FROM)
    return {"how": how, "seconds": round(seconds, 1), "pairs_kept": len(kept.pairs)}


def add(settings, files: int) -> dict:
    rng = np.random.default_rng(int(time.time()))
    with Library(settings) as library:
        catalog, store = library.catalog, library.store
        windows_of = duplicates._indexed_files(catalog)
        originals = rng.choice(len(windows_of), files // 10, replace=False)
        clock = time.perf_counter()
        stamp = time.strftime("%H%M%S")
        for number in range(files):
            if number < len(originals):
                place = originals[number]
                vectors = store.reconstruct(windows_of.window_ids[windows_of.starts[place]:windows_of.starts[place + 1]])
                vectors = vectors + rng.standard_normal(vectors.shape).astype(np.float32) * 0.002
            else:
                vectors = rng.standard_normal((int(rng.integers(1, 6)), store.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            add_file(catalog, store, f"{settings.home}/added/{stamp}/{number:05d}.wav", vectors, f"added{stamp}{number}",
                     hop=2.5)
        catalog.commit()
        store.save()
        added_s = time.perf_counter() - clock
        clock = time.perf_counter()
        how = library.update_near_duplicates(lambda doing, done: log.info("%s %.0f%%", doing, 100 * done))
        seconds = time.perf_counter() - clock
        pairs = library.kept_near_duplicates(duplicates.KEPT_FROM).pairs
    found = sum(f"/added/{stamp}/" in pair.first + pair.second for pair in pairs)
    return {"files_added": files, "re_encodes_added": len(originals), "adding_s": round(added_s, 1), "how": how,
            "update_seconds": round(seconds, 1), "pairs_kept": len(pairs), "pairs_with_added_files": found}


def read(settings, repeats: int, page_repeats: int) -> dict:
    results: dict = {}
    with Library(settings) as library:
        laps = []
        for _ in range(repeats):
            clock = time.perf_counter()
            kept = library.kept_near_duplicates()
            laps.append(1000 * (time.perf_counter() - clock))
        results["Library.kept_near_duplicates (ms)"] = quantiles(laps[1:]) | {
            "first_ms": round(laps[0], 1), "current": kept.current, "pairs": len(kept.pairs or [])}
    results["page: Duplicates view (ms)"] = page(settings.home, page_repeats)
    laps = []
    for _ in range(3):
        clock = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).with_name("clapdex")), "--home", str(settings.home),
                               "duplicates", "--json"], capture_output=True, text=True, check=True)
        laps.append(time.perf_counter() - clock)
    found = json.loads(done.stdout)
    results["clapdex duplicates --json (s)"] = {"runs": [round(lap, 2) for lap in laps],
                                                "exact_groups": len(found["exact"]), "near_pairs": len(found["near"])}
    return results


def page(home: Path, repeats: int) -> dict:
    """The page's script through Streamlit's AppTest in this process, as bench/library_scale.py times it:
    opening the Duplicates view from the Library view, the server's time."""
    from streamlit.testing.v1 import AppTest

    os.environ.update({"CLAPDEX_HOME": str(home), "CLAPDEX_DEVICE": "cpu"})
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=900)
    clock = time.perf_counter()
    app.run()
    first = time.perf_counter() - clock

    def switch(view: str) -> None:
        app.get("button_group")[0].set_value(view).run()
        if app.exception:
            raise RuntimeError(f"the page failed: {app.exception}")

    switch("Duplicates")  # the first opening reads the exact duplicates, kept after
    laps = []
    for _ in range(repeats):
        switch("Library")
        clock = time.perf_counter()
        switch("Duplicates")
        laps.append(1000 * (time.perf_counter() - clock))
    shown = [element.value for element in app.caption] + [element.value for element in app.info]
    return quantiles(laps) | {"first_run_s": round(first, 1), "notes": shown[:4]}


def quantiles(laps: list[float]) -> dict:
    cuts = statistics.quantiles(laps, n=20) if len(laps) > 1 else laps * 19
    return {"p50": round(statistics.median(laps), 1), "p95": round(cuts[18], 1), "n": len(laps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--step", choices=("whole", "add", "read"), required=True)
    parser.add_argument("--files", type=int, default=1000, help="files to add (--step add)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--page-repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(args.home, device="cpu")
    started = datetime.datetime.now(datetime.timezone.utc)
    result = {"whole": lambda: whole(settings), "add": lambda: add(settings, args.files),
              "read": lambda: read(settings, args.repeats, args.page_repeats)}[args.step]()
    result |= {"step": args.step, "home": str(args.home), "started": started.strftime("%Y-%m-%d %H:%M UTC"),
               "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M UTC"),
               "load_at_start_and_end": [LOAD, os.getloadavg()[:3]], "machine": platform.node(),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
               "command": " ".join(["python"] + sys.argv)}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


LOAD = os.getloadavg()[:3]

if __name__ == "__main__":
    main()
