"""A million files: what a user touches, timed at library scale (issue 15).

Builds a synthetic library of --files files (UCS names, publisher/category folders, tags,
descriptions, formats, rates, durations; 1 to 5 windows a file, about 3; 1% exact duplicates,
0.1% unreadable) in SQLite or PostgreSQL with the default FAISS store, its vectors random unit
vectors of the shipped clapdex-compact model's dimension (nothing is embedded), and a sparse
placeholder file on disk for every catalogued file (same size and mtime), so an unchanged
rescan runs as it would on the real library. Then times, through the code the page, the API
and the command line run (``Searcher``, ``Library``, ``index_paths``), each operation
--repeats times, in a process that built nothing (its peak RSS is the page process's):

    python bench/library_scale.py --files 100000 --home /tmp/scale-1e5 --out bench/results/library_scale_sqlite_1e5.json
    python bench/library_scale.py --files 1000000 --home /tmp/scale-1e6 --catalog postgresql+psycopg://... --out ...

A home that holds a library already is measured as it is (--files must match it).
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
from sqlalchemy import insert, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from encoders import load_encoder  # noqa: E402
from search.catalog import ERROR, INDEXED, PENDING, File, Metadata, NewFile, Window  # noqa: E402
from search.config import load_settings  # noqa: E402
from search.engine import Searcher  # noqa: E402
from search.filters import Filters  # noqa: E402
from search.library import Library  # noqa: E402
from search.query import parse_query  # noqa: E402
from search.store import COMPRESS_FROM, FaissStore, _IvfSq8, _trained_ivf, ivf_lists_for  # noqa: E402
from search.ucs import CATEGORIES  # noqa: E402

log = logging.getLogger("library_scale")

MODEL = "clapdex-compact"
WINDOW, HOP = 5.0, 2.5  # the compact model's windows
CHUNK = 20_000  # files per bulk insert
SUBCATEGORIES = ("Wood", "Metal", "Glass", "Large", "Small", "Impact", "Movement", "Misc", "Electric", "Debris",
                 "Close", "Distant")
WORDS = ("creak slam knock rattle squeak hit scrape drop roll bounce crash shatter whoosh swish hum buzz drone "
         "rumble crackle hiss pop click beep chirp bark growl roar splash drip pour bubble gust howl rustle "
         "footstep thud clank ring chime tick whirr zap boom fizz snap crunch tear flap slide grind screech "
         "heavy light slow fast long short distant close soft loud wet dry old deep high low").split()
PUBLISHERS = [f"{word.title()} Sound {kind}" for word in ("Blue", "Red", "Iron", "Field", "Studio", "Night", "Echo")
              for kind in ("Library", "Works", "FX")]
TAG_VOCABULARY = [f"{word}{suffix}" for suffix in ("", "s", "y", "ing", "ed") for word in WORDS] + \
                 [f"take{number}" for number in range(2000)]
FORMATS = (("wav", 0.60), ("flac", 0.15), ("ogg", 0.10), ("mp3", 0.10), ("aif", 0.05))
CAPTIONS = [f"{a} {b}" for a in WORDS for b in WORDS if a != b]


def build(home: Path, files: int, catalog_url: str | None, seed: int = 0) -> dict:
    """The library and its placeholder files; returns how long each part took."""
    rng = np.random.default_rng(seed)
    root = home / "library"
    settings = load_settings(home, model=MODEL, device="cpu", catalog=catalog_url)
    cat_ids = [(short, name) for name, shorts in CATEGORIES.items() for short in shorts]
    times: dict[str, float] = {}
    with Library(settings, create=True, encoder=load_encoder(MODEL, device="cpu")) as library:
        catalog = library.catalog
        catalog.claim_model(library.identity)
        catalog.commit()
        store = library.store
        windows_total = 0
        started = time.perf_counter()
        vector_seconds = 0.0
        hashes: list[str] = []
        for first in range(0, files, CHUNK):
            count = min(CHUNK, files - first)
            new, spans_of, placeholders = [], [], []
            window_counts = rng.choice([1, 2, 3, 4, 5], count, p=[0.15, 0.2, 0.3, 0.2, 0.15])
            for offset in range(count):
                number = first + offset
                short, category = cat_ids[rng.integers(len(cat_ids))]
                sub = SUBCATEGORIES[rng.integers(len(SUBCATEGORIES))]
                words = " ".join(WORDS[i].title() for i in rng.integers(len(WORDS), size=rng.integers(1, 4)))
                extension = FORMATS[rng.choice(len(FORMATS), p=[share for _, share in FORMATS])][0]
                publisher = PUBLISHERS[number % len(PUBLISHERS)]
                folder = root / publisher / category.replace(" & ", " and ") / f"{short}{sub}"
                name = f"{short}{sub}_{words} {number:07d}_{publisher.split()[0][:2].upper()}_{publisher}.{extension}"
                windows = int(window_counts[offset])
                duration = float(rng.uniform(0.1, WINDOW)) if windows == 1 else \
                    float(rng.uniform(windows * HOP, (windows + 1) * HOP))
                rate = int(rng.choice([44100, 48000, 96000], p=[0.4, 0.5, 0.1]))
                channels = int(rng.choice([1, 2], p=[0.4, 0.6]))
                size = int(duration * rate * channels * 3) + 1024
                # 1% copies of an earlier file's bytes: the exact duplicates listing has groups to show.
                content = hashes[int(rng.integers(len(hashes)))] if hashes and rng.random() < 0.01 \
                    else f"{rng.integers(2**63):016x}{number:016x}"
                hashes.append(content)
                tags = tuple(TAG_VOCABULARY[i] for i in rng.integers(len(TAG_VOCABULARY), size=rng.integers(0, 5)))
                description = f"{words.lower()} recorded {WORDS[rng.integers(len(WORDS))]}" if rng.random() < 0.3 else None
                mtime = 1_600_000_000 + number  # whole seconds: stat gives them back exactly
                path = str(folder / name)
                new.append(NewFile(path, str(root), size, float(mtime), content, Metadata(
                    duration=duration, sample_rate=rate, channels=channels, bit_depth=24, codec=extension,
                    description=description, tags=tags, ucs_cat_id=f"{short}{sub}", ucs_category=short,
                    ucs_subcategory=sub)))
                spans_of.append([(start * HOP, min(start * HOP + WINDOW, duration)) for start in range(windows)])
                placeholders.append((path, size, mtime))
            ids = catalog.add_files(new)
            unreadable = set(rng.choice(count, max(1, count // 1000), replace=False).tolist())
            rows = [{"file_id": file_id, "start": start, "end": end}
                    for offset, (file_id, spans) in enumerate(zip(ids, spans_of)) if offset not in unreadable
                    for start, end in spans]
            # What replace_windows_of does for ORM records, for a whole chunk in two statements.
            windows_table = Window.__table__
            statement = insert(windows_table).returning(windows_table.c.id, sort_by_parameter_order=True)
            window_ids = np.array(list(catalog.session.scalars(statement, rows)), dtype=np.int64)
            now = datetime.datetime.now(datetime.timezone.utc)
            catalog.session.execute(update(File).where(File.id.in_(ids), File.status == PENDING)
                                    .values(status=INDEXED, hop=HOP, indexed_at=now),
                                    execution_options={"synchronize_session": False})
            failed = [ids[offset] for offset in unreadable]
            catalog.session.execute(update(File).where(File.id.in_(failed))
                                    .values(status=ERROR, error="not a RIFF file", size=0, mtime=0.0),
                                    execution_options={"synchronize_session": False})
            clock = time.perf_counter()
            store = _add_vectors(store, window_ids, rng, files * 3)
            vector_seconds += time.perf_counter() - clock
            windows_total += len(window_ids)
            catalog.commit()
            _place(placeholders, {offset for offset in unreadable})
            log.info("%d of %d files, %d windows", first + count, files, windows_total)
        clock = time.perf_counter()
        library.store.save()
        times["save_vectors_s"] = time.perf_counter() - clock
        times["build_s"] = time.perf_counter() - started
        times["vectors_s"] = vector_seconds
        times["windows"] = windows_total
    return times


def _add_vectors(store: FaissStore, ids: np.ndarray, rng: np.random.Generator, expected: int) -> FaissStore:
    vectors = rng.standard_normal((len(ids), store.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if expected >= COMPRESS_FROM and store.built_kind == "flat":
        # What save() would build from all the vectors (the "auto" kind at this size), trained on
        # as many as it would sample, so the library's vectors never sit in memory all at once.
        lists = ivf_lists_for(expected)
        sample = rng.standard_normal((64 * lists, store.dim), dtype=np.float32)
        sample /= np.linalg.norm(sample, axis=1, keepdims=True)
        store._index = _IvfSq8(_trained_ivf(store.dim, "ivf-sq8", sample, expected), store.exact_rows)
    store.add(ids, vectors)
    return store


def _place(placeholders: list[tuple[str, int, int]], unreadable: set[int]) -> None:
    """Sparse files of the catalogued sizes and mtimes (an unreadable one: empty)."""
    made: set[str] = set()
    for offset, (path, size, mtime) in enumerate(placeholders):
        folder = os.path.dirname(path)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        with open(path, "wb") as placeholder:
            if offset not in unreadable:
                placeholder.truncate(size)
        os.utime(path, (mtime, mtime))


def timed(function, repeats: int) -> dict:
    """p50/p95 ms of ``repeats`` calls of ``function(i)``, after a first call counted apart (for
    what is kept, the cost each call had before)."""
    clock = time.perf_counter()
    function(-1)
    first = 1000 * (time.perf_counter() - clock)
    laps = []
    for number in range(repeats):
        clock = time.perf_counter()
        function(number)
        laps.append(1000 * (time.perf_counter() - clock))
    return {"first_ms": round(first, 2), **_quantiles(laps)}


def _quantiles(laps: list[float]) -> dict:
    repeats = len(laps)
    cuts = statistics.quantiles(laps, n=100, method="inclusive") if len(laps) > 1 else laps * 99
    return {"p50_ms": round(cuts[49], 2), "p95_ms": round(cuts[94], 2), "max_ms": round(max(laps), 2),
            "repeats": repeats}


def measure(home: Path, catalog_url: str | None, repeats: int, only: list[str] | None = None,
            weights: str | None = None) -> dict:
    settings = load_settings(home, device="cpu", catalog=catalog_url, weights=weights)
    results: dict[str, dict] = {}
    clock = time.perf_counter()
    library = Library(settings)
    searcher = Searcher(library, library_only=True)
    searcher.calibration()  # what the page and the server do before their first query
    results["open_and_calibrate"] = {"seconds": round(time.perf_counter() - clock, 2)}
    rng = np.random.default_rng(1)
    captions = [CAPTIONS[i] for i in rng.permutation(len(CAPTIONS))]
    root = str(home / "library")
    selective = Filters(categories=("DOOR",), formats=("flac",))
    broad = Filters(min_duration=1.0)
    operations = {
        "text": lambda i: searcher.search(parse_query(captions[i])),
        "text, selective filter": lambda i: searcher.search(parse_query(captions[i]), filters=selective),
        "text, broad filter": lambda i: searcher.search(parse_query(captions[i]), filters=broad),
        "text, folder filter": lambda i: searcher.search(
            parse_query(captions[i]), filters=Filters(folders=(os.path.join(root, PUBLISHERS[i % len(PUBLISHERS)]),))),
        # A user's next words in the folder searched last (the one above changes folder at each search).
        "text, the same folder again": lambda i: searcher.search(
            parse_query(captions[i]), filters=Filters(folders=(os.path.join(root, PUBLISHERS[0]),))),
        "keywords, 1 word": lambda i: searcher.search(keywords_text=WORDS[i % len(WORDS)]),
        "keywords, 3 words": lambda i: searcher.search(keywords_text=" ".join(WORDS[(i + k * 7) % len(WORDS)] for k in range(3))),
        "keywords, OR and NOT": lambda i: searcher.search(
            keywords_text=f"{WORDS[i % len(WORDS)]} -{WORDS[(i + 3) % len(WORDS)]}, {WORDS[(i + 5) % len(WORDS)]}"),
        "keywords, prefix": lambda i: searcher.search(keywords_text=WORDS[i % len(WORDS)][:3]),
        "keywords, 2 letters": lambda i: searcher.search(keywords_text=WORDS[i % len(WORDS)][:2]),
        "keywords, selective filter": lambda i: searcher.search(keywords_text=WORDS[i % len(WORDS)], filters=selective),
        "keywords, broad filter": lambda i: searcher.search(keywords_text=WORDS[i % len(WORDS)], filters=broad),
        "hybrid": lambda i: searcher.search(parse_query(captions[i]), keywords_text=WORDS[(i * 3) % len(WORDS)]),
        "next page of a search": lambda i: searcher.search(parse_query(captions[0]), page=1 + i % 20, page_size=20),
        "sorted by name": lambda i: searcher.search(parse_query(captions[i]), sort="name"),
        "filters alone (listing)": lambda i: searcher.search(filters=selective),
        "facets": lambda i: library.facets(),
        "status": lambda i: library.status(),
        "exact duplicates listing": lambda i: library.exact_duplicates(),
    }
    for name, operation in operations.items():
        if only and name not in only:
            continue
        clock = time.perf_counter()
        results[name] = timed(operation, repeats)
        log.info("%s: %s (%.0f s)", name, results[name], time.perf_counter() - clock)
    if not only or "page of 50 hits with metadata" in only:
        with library.reading() as catalog:
            page = [hit.file_id for hit in searcher.search(parse_query(captions[1]), page_size=50).hits]
            results["page of 50 hits with metadata"] = timed(lambda i: catalog.files_with_windows(page), repeats)
    library.close()
    return results


def page(home: Path, catalog_url: str | None, repeats: int, weights: str | None = None) -> dict:
    """The page's script (ui/app.py) run by Streamlit's AppTest in this process, as its server
    runs it for a click: the server's time, without the browser's."""
    from streamlit.testing.v1 import AppTest

    os.environ.update({"CLAPDEX_HOME": str(home), "CLAPDEX_DEVICE": "cpu"} |
                      ({"CLAPDEX_CATALOG": catalog_url} if catalog_url else {}) |
                      ({"CLAPDEX_WEIGHTS": weights} if weights else {}))
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "ui" / "app.py"), default_timeout=600)
    clock = time.perf_counter()
    app.run()
    results: dict[str, dict] = {"first run (opens the library, loads the model)": {
        "seconds": round(time.perf_counter() - clock, 2)}}
    rng = np.random.default_rng(2)
    captions = [CAPTIONS[i] for i in rng.permutation(len(CAPTIONS))]

    def search(number: int) -> None:
        app.text_input(key="query_text").input(captions[number])
        app.button[0].click()
        app.run()

    def switch(view: str) -> None:
        app.get("button_group")[0].set_value(view).run()

    search(len(captions) - 1)  # the first search loads what the page keeps: not counted
    for view in ("Library", "Duplicates"):  # each view's first opening in this page process, apart
        clock = time.perf_counter()
        switch(view)
        results[f"{view} view, first opening"] = {"ms": round(1000 * (time.perf_counter() - clock), 1)}
    switch("Search")
    clicks = {"new text search": search, "Library view": lambda number: switch("Library"),
              "Duplicates view": lambda number: switch("Duplicates"),
              "back to Search (the same search again)": lambda number: switch("Search")}
    laps: dict[str, list[float]] = {name: [] for name in clicks}
    for number in range(repeats):
        for name, click in clicks.items():
            clock = time.perf_counter()
            click(number)
            laps[name].append(1000 * (time.perf_counter() - clock))
            if app.exception:
                raise RuntimeError(f"the page failed at {name}: {app.exception}")
    results.update({name: _quantiles(values) for name, values in laps.items()})
    log.info("page: %s", results)
    return results


def rescan(home: Path, catalog_url: str | None, weights: str | None = None) -> dict:
    """An unchanged rescan of every file, as `clapdex index` runs it."""
    from indexer.pipeline import index_paths

    settings = load_settings(home, device="cpu", catalog=catalog_url, weights=weights)
    clock = time.perf_counter()
    with Library(settings, create=True) as library:
        opened = time.perf_counter() - clock
        report = index_paths(library, [home / "library"])
    return {"seconds": round(time.perf_counter() - clock, 1), "opening_s": round(opened, 2),
            "report": report.summary(), "memory_mb": memory_mb()}


def memory_mb() -> dict:
    """Peak RSS, and what is resident now by kind: the vector rows the store re-scores from are
    a memory-mapped file, whose pages count in RSS but are page cache the kernel takes back."""
    resident = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            resident[name] = round(int(value.split()[0]) / 1024, 1)
    return {"peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), **resident}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--catalog", help="a SQLAlchemy URL (default: SQLite in the home)")
    parser.add_argument("--home", type=Path, help="the library home (default: a new folder under /tmp)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", nargs="+", help="measure only these operations (names as in the output)")
    parser.add_argument("--page-repeats", type=int, default=50, help="repetitions of each page interaction")
    # A library keeps the model it was indexed with: a home built before the shipped weights
    # changed is searched with the file of those it was built with.
    parser.add_argument("--weights", help="the model's weights file the home was built with (default: the shipped one)")
    parser.add_argument("--step", choices=("all", "build", "measure", "page", "rescan"), default="all",
                        help="all: each of the others in a process of its own")
    args = parser.parse_args()
    if args.weights and not os.path.isfile(args.weights):
        parser.error(f"--weights: no file {args.weights}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    home = args.home or Path(f"/tmp/library-scale-{args.files}")
    if args.step == "build":
        print(json.dumps({**build(home, args.files, args.catalog), "memory_mb": memory_mb()}))
        return
    if args.step in ("measure", "page", "rescan"):
        if args.step == "measure":
            result = {"operations": measure(home, args.catalog, args.repeats, args.only, args.weights), "memory_mb": memory_mb()}
        elif args.step == "page":
            result = {"interactions": page(home, args.catalog, args.page_repeats, args.weights), "memory_mb": memory_mb()}
        else:
            result = rescan(home, args.catalog, args.weights)
        print(json.dumps(result))
        if args.out:  # a step run alone, by hand
            args.out.write_text(json.dumps({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"), "command": " ".join(sys.argv), "load_after": os.getloadavg()} | result, indent=2))
        return
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
              "command": " ".join(sys.argv), "files": args.files, "catalog": "postgresql" if args.catalog else "sqlite",
              "load_before": os.getloadavg()}
    own = [sys.executable, __file__, "--files", str(args.files), "--home", str(home), "--repeats", str(args.repeats),
           "--page-repeats", str(args.page_repeats), *(["--only", *args.only] if args.only else []),
           *(["--catalog", args.catalog] if args.catalog else []), *(["--weights", args.weights] if args.weights else [])]
    if not (home / "library").exists():
        report["build"] = _step(own, "build")
    report["measure"] = _step(own, "measure")
    report["page"] = _step(own, "page")
    report["rescan"] = _step(own, "rescan")
    report["load_after"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _step(command: list[str], step: str) -> dict:
    done = subprocess.run([*command, "--step", step], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
