"""clapdex-compact's text side per query, with its text templates and with the words alone,
alternating query by query so both see the same machine: one text at a time and batches of 8
(a serve worker's batch), on one thread as a serve worker runs. The shipped weights; MiniLM in
the precision queries use here (``encoders.compact.query_text_dtype``).

    python bench/compact_text_query.py --out bench/results/compact_text_query.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoders.compact import TEXT_TEMPLATES, load_compact  # noqa: E402

SUBJECTS = ["dog", "door", "glass", "rain", "engine", "crowd", "bird", "footsteps", "wind", "piano"]
MANNERS = ["barking far away", "creaking slowly", "shattering on concrete, close", "on a tin roof",
           "idling then revving", "cheering in a stadium", "singing at dawn", "on gravel", "howling", "one chord"]
BARE = ("{}",)


def percentiles(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * float(np.percentile(seconds, 50)), 1),
            "p95_ms": round(1000 * float(np.percentile(seconds, 95)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the 110 queries")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    queries = SUBJECTS + [f"{subject} {manner}" for manner in MANNERS for subject in SUBJECTS]
    encoder = load_compact()
    timings = {(templates, size): [] for templates in (BARE, TEXT_TEMPLATES) for size in (1, 8)}

    def timed(templates: tuple[str, ...], texts: list[str]) -> None:
        encoder.text_templates = templates
        started = time.perf_counter()
        encoder.embed_text(texts)
        timings[templates, len(texts)].append(time.perf_counter() - started)

    for warm_up in queries[:5]:
        for templates in (BARE, TEXT_TEMPLATES):
            encoder.text_templates = templates
            encoder.embed_text([warm_up])
    for round_ in range(args.rounds):
        # Which side goes first alternates too, so neither always follows the other's caches.
        order = (BARE, TEXT_TEMPLATES) if round_ % 2 == 0 else (TEXT_TEMPLATES, BARE)
        for query in queries:
            for templates in order:
                timed(templates, [query])
        for first in range(0, len(queries) - 7, 8):
            for templates in order:
                timed(templates, queries[first:first + 8])
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
              "command": " ".join(["python"] + sys.argv), "threads": torch.get_num_threads(),
              "text_precision": str(encoder.text_encoder.model.dtype), "weights_id": encoder.weights_id,
              "load_after": open("/proc/loadavg").read().split()[:3],
              **{f"{'bare' if templates == BARE else 'templates'}_batch{size}": percentiles(seconds)
                 for (templates, size), seconds in timings.items()}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
