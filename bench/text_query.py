"""Text-query embedding latency (the first half of a text search), one caption at a time.

Random weights at the real sizes (tests/checkpoints.py). p50/p95 over distinct captions, after
a warm-up; and batched throughput, for the record.

    python bench/text_query.py --device cpu --out text_query.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from checkpoints import write_tiny_msclap_checkpoint  # noqa: E402

from encoders.msclap import load_msclap_2023  # noqa: E402

SUBJECTS = ["dog", "door", "glass", "rain", "engine", "crowd", "bird", "footsteps", "wind", "piano"]
MANNERS = ["barking far away", "creaking slowly", "shattering on concrete, close", "on a tin roof",
           "idling then revving", "cheering in a stadium", "singing at dawn", "on gravel", "howling", "one chord"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    captions = [f"{s} {m}" for m in MANNERS for s in SUBJECTS][: args.queries]
    with tempfile.TemporaryDirectory(prefix="clapdex-weights-") as folder:
        encoder = load_msclap_2023(write_tiny_msclap_checkpoint(Path(folder), full=True), device=args.device)
    for caption in captions[:5]:
        encoder.embed_text([caption])
    latencies = []
    for caption in captions:
        started = time.perf_counter()
        encoder.embed_text([caption])
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    encoder.embed_text(captions * 10, batch_size=256)
    batched = 10 * len(captions) / (time.perf_counter() - started)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
              "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "threads": torch.get_num_threads(), "precision": str(encoder.autocast_dtype or torch.float32),
              "command": " ".join(["python"] + sys.argv),
              "p50_ms": 1000 * float(np.percentile(latencies, 50)), "p95_ms": 1000 * float(np.percentile(latencies, 95)),
              "batched_texts_per_s": batched}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
