"""clapdex-compact's text side per query, three ways, alternating query by query so all see the
same machine: the words alone without the framing map, the words through the map (what search
does with the shipped weights), and every framing of TEXT_TEMPLATES averaged (what the map
stands for). One text at a time and batches of 8 (a serve worker's batch), on one thread as a
serve worker runs. The shipped weights (the map taken off for the other two); MiniLM in the
precision queries use here (``encoders.compact.query_text_dtype``).

    python bench/compact_text_query.py --out bench/results/compact_text_query.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoders.compact import TEXT_TEMPLATES, CompactClap, CompactEncoder, load_compact  # noqa: E402

SUBJECTS = ["dog", "door", "glass", "rain", "engine", "crowd", "bird", "footsteps", "wind", "piano"]
MANNERS = ["barking far away", "creaking slowly", "shattering on concrete, close", "on a tin roof",
           "idling then revving", "cheering in a stadium", "singing at dawn", "on gravel", "howling", "one chord"]
BARE = ("{}",)


def percentiles(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * float(np.percentile(seconds, 50)), 1),
            "p95_ms": round(1000 * float(np.percentile(seconds, 95)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the 110 queries")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    queries = SUBJECTS + [f"{subject} {manner}" for manner in MANNERS for subject in SUBJECTS]
    shipped = load_compact()
    config = dataclasses.replace(shipped.config, text_framing=False)
    unmapped_model = CompactClap(config)
    unmapped_model.load_state_dict({key: value for key, value in shipped.model.state_dict().items()
                                    if not key.startswith("text_framing.")})
    unmapped = {templates: CompactEncoder(unmapped_model.eval(), shipped.weights_id, [torch.device("cpu")],
                                          text_encoder=shipped.text_encoder, text_templates=templates)
                for templates in (BARE, TEXT_TEMPLATES)}
    ways = {"words": unmapped[BARE], "words_mapped": shipped, "all_framings": unmapped[TEXT_TEMPLATES]}
    timings = {(way, size): [] for way in ways for size in (1, 8)}

    def timed(way: str, texts: list[str]) -> None:
        started = time.perf_counter()
        ways[way].embed_text(texts)
        timings[way, len(texts)].append(time.perf_counter() - started)

    for warm_up in queries[:5]:
        for encoder in ways.values():
            encoder.embed_text([warm_up])
    for round_ in range(args.rounds):
        # Which goes first turns too, so none always follows another's caches.
        order = list(ways)[round_ % 3:] + list(ways)[:round_ % 3]
        for query in queries:
            for way in order:
                timed(way, [query])
        for first in range(0, len(queries) - 7, 8):
            for way in order:
                timed(way, queries[first:first + 8])
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
              "command": " ".join(["python"] + sys.argv), "threads": torch.get_num_threads(),
              "text_precision": str(shipped.text_encoder.model.dtype), "weights_id": shipped.weights_id,
              "load_after": open("/proc/loadavg").read().split()[:3],
              **{f"{way}_batch{size}": percentiles(seconds) for (way, size), seconds in timings.items()}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
