"""Embeddings from one version of ``encoders`` (argv[1]: the folder holding the package), saved
to argv[2] (.npz), on argv[3] ("cpu" or "cuda"); run it for two versions and compare the files
with ``runtime_split_diff.py``. Run from the repository root (it reads tests/checkpoints.py).
Written for the move of the GPU runtime into encoders/runtime.py (commit 437eef2): the
version before is ``git archive f0a4435 encoders``. COMPACT=1 adds the compact model's audio
(its sentence encoder is needed by the version before only)."""
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [sys.argv[1], "tests"]
import numpy as np  # noqa: E402
from checkpoints import write_tiny_msclap_checkpoint  # noqa: E402

from encoders.batches import BatchEmbedder  # noqa: E402
from encoders.compact import load_compact  # noqa: E402
from encoders.msclap import load_msclap_2023  # noqa: E402

import encoders  # noqa: E402
print("encoders from", encoders.__file__, flush=True)
device = sys.argv[3]
out = {}


def clips(rate, longest, count=21, seed=0):
    rng = np.random.default_rng(seed)
    return [0.1 * rng.standard_normal(max(1, int(rate * s))).astype(np.float32) for s in np.linspace(0.05, longest, count)]


def packed(encoder, audio, batch_size):
    with BatchEmbedder(encoder, batch_size) as batches:
        rows = []
        for clip in audio:
            batches.add(clip)
            rows += batches.ready()
        rows += batches.finish()
    return np.stack(rows)


with tempfile.TemporaryDirectory() as folder:
    weights = write_tiny_msclap_checkpoint(Path(folder), full=device == "cuda")
    for precision in (["bf16", "fp32", "fp16"] if device == "cuda" else ["fp32"]):
        encoder = load_msclap_2023(weights, device=device, batch_size=8, precision=precision)
        audio = clips(44100, 7.0)
        out[f"msclap {precision} audio"] = encoder.embed_audio(audio)
        out[f"msclap {precision} audio again"] = encoder.embed_audio(audio[::-1])
        out[f"msclap {precision} packed"] = packed(encoder, audio, 8)
        out[f"msclap {precision} text"] = encoder.embed_text(["a dog barking", "rain on a tin roof, close", "!"])
        out[f"msclap {precision} one text"] = encoder.embed_text(["a dog barking"])
import os  # noqa: E402
if os.environ.get("COMPACT") == "1":
    compact = load_compact(device=device, batch_size=8)
    audio = clips(32000, 5.0, seed=1)
    out["compact audio"] = compact.embed_audio(audio)
    out["compact packed"] = packed(compact, audio, 8)
np.savez(sys.argv[2], **out)
print("saved", len(out), flush=True)
