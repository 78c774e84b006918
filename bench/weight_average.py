"""Weight averages ("model soups") of clapdex-compact checkpoints, measured on ESC-10.

Every floating-point tensor (batch-norm statistics included) is the weighted mean of the
checkpoints' float32 values, or, with ``--only``, only the tensors under those prefixes are and
the rest come from the first checkpoint; the result is saved in float16 as shipped, then
measured by ``training.evaluate`` with the model's text templates and with bare words.

    python bench/weight_average.py --out /tmp/soup.safetensors \
        encoders/models/clapdex-compact.safetensors:0.5 RUN/clapdex-compact.safetensors:0.5
    python bench/weight_average.py --only text_projection --out /tmp/text.safetensors A:0.5 B:0.5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders.compact import TEXT_TEMPLATES, load_compact, read_compact, save_compact  # noqa: E402
from training.evaluate import evaluate_encoder  # noqa: E402


def checkpoint_and_share(text: str) -> tuple[Path, float]:
    path, _, share = text.rpartition(":")
    try:
        return Path(path), float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give FILE:SHARE, e.g. model.safetensors:0.5") from None


def average(parts: list[tuple[Path, float]], only: tuple[str, ...]) -> torch.nn.Module:
    models = [(read_compact(path)[0], share) for path, share in parts]
    states = [(model.state_dict(), share) for model, share in models]
    total = sum(share for _, share in parts)
    first = states[0][0]
    mean = {key: (sum(state[key].float() * share for state, share in states) / total
                  if value.is_floating_point() and (not only or key.startswith(only)) else value)
            for key, value in first.items()}
    model = models[0][0]
    model.load_state_dict(mean)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", type=checkpoint_and_share, metavar="FILE:SHARE")
    parser.add_argument("--only", nargs="*", default=[], help="average only tensors under these name prefixes")
    parser.add_argument("--out", type=Path, required=True, help="the averaged checkpoint (float16)")
    args = parser.parse_args()
    if len(args.parts) < 2:
        parser.error("give at least two checkpoints")
    save_compact(average(args.parts, tuple(args.only)), args.out, torch.float16)
    encoder = load_compact(args.out)
    for templates in (TEXT_TEMPLATES, ("{}",)):
        encoder.text_templates = templates
        print(json.dumps({"parts": [f"{path}:{share}" for path, share in args.parts], "only": args.only,
                          "weights_id": encoder.weights_id, "text_templates": list(templates),
                          **evaluate_encoder(encoder)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
