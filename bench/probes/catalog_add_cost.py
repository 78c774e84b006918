"""The main thread's catalog cost a file of a new library, as an index run's scan pays it: files
added 64 at a time in path order (``Catalog.add_files`` timed as bench/keyword_write_cost.py
times it, keyword texts kept), into a new SQLite catalog, in ms a file, with the part spent in
placing the keyword texts in name order.

    python bench/probes/catalog_add_cost.py --audio /work/shared/data/esc10 --files 8000 --names same

--names same: each copy of the clips keeps their names (bench/index_library.py's library, where
every copy lands in the same gaps of name order); distinct: each copy's names differ.
Run it with PYTHONPATH at the checkout to measure (main's or a branch's).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import search.catalog as catalog_module
from indexer.metadata import read_metadata
from search.catalog import Catalog, NewFile

# bench/keyword_write_cost.py of the same checkout as the catalog measured (PYTHONPATH's).
sys.path.insert(0, str(Path(catalog_module.__file__).resolve().parents[1] / "bench"))
from keyword_write_cost import SCAN_BATCH, timed as timed_writes  # noqa: E402

TIMED = ("_add_texts", "_place", "_spaced_out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--files", type=int, default=8000)
    parser.add_argument("--names", choices=("same", "distinct"), default="same")
    parser.add_argument("--owe", action="store_true",
                        help="the texts owed while adding (Catalog.owe_texts), then written (pay_texts), timed apart")
    parser.add_argument("--step", type=int, help="with --owe: written this many at a time (pay_texts(at_most=...))")
    args = parser.parse_args()
    spent = dict.fromkeys(TIMED, 0.0)

    def timed(name, function, *positional, **named):
        started = time.thread_time()
        try:
            return function(*positional, **named)
        finally:
            spent[name] += time.thread_time() - started

    for name in TIMED:
        setattr(catalog_module, name, functools.partial(timed, name, getattr(catalog_module, name)))
    clips = sorted(path for path in args.audio.rglob("*") if path.is_file())
    metadata = [read_metadata(str(path)) for path in clips]
    files = []
    for number in range(args.files):
        copy, clip = divmod(number, len(clips))
        relative = clips[clip].relative_to(args.audio)
        if args.names == "distinct":
            relative = relative.with_name(f"c{copy}-{relative.name}")
        files.append(NewFile(f"/library/copy{copy}/{relative}", "/library", 1, 0.0, f"{number:032x}", metadata[clip]))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/catalog.sqlite"
        Catalog(url).close()
        paid = None
        if args.owe:
            seconds, paid = owed_writes(url, files, args.step)
        else:
            seconds = timed_writes(url, files, kept=True)
    print(json.dumps({"files": args.files, "names": args.names, "code": os.environ.get("PYTHONPATH", ""),
                      "add_files_ms_a_file": round(1000 * seconds / args.files, 3),
                      **({} if paid is None else {"pay_texts_ms_a_file": round(1000 * paid / args.files, 3)}),
                      **{f"{name}_ms_a_file": round(1000 * value / args.files, 3) for name, value in spent.items()},
                      "load": open("/proc/loadavg").read().split()[:3]}))


def owed_writes(url: str, files: list[NewFile], step: int | None) -> tuple[float, float]:
    """Seconds of add_files (64 at a time, texts owed) and of pay_texts after (``step`` at a time),
    as an index run pays them."""
    with Catalog(url, create=False) as catalog:
        catalog.owe_texts()
        clock = time.perf_counter()
        for first in range(0, len(files), SCAN_BATCH):
            catalog.add_files(files[first:first + SCAN_BATCH])
        catalog.flush()
        added = time.perf_counter()
        catalog.owe_texts(False)
        while catalog.pay_texts(step) and step:
            pass
        catalog.flush()
        paid = time.perf_counter() - added
        catalog.rollback()
    return added - clock, paid


if __name__ == "__main__":
    main()
