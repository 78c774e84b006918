"""Zero-shot validation on ESC-10 (or any labelled set), for any encoder or a model in training.

    python -m encoders.training.evaluate --model clapdex-compact --weights model.safetensors
    python -m encoders.training.evaluate --model clapdex-compact --untrained base
    python -m encoders.training.evaluate --model msclap-2023 --esc10 ../shared/data/esc10

Each class is one text query, ``PROMPT`` with the class name ("the sound of a dog bark").
  * accuracy: share of clips whose most similar class query is their own class;
  * recall@k (text to audio): share of class queries with a clip of that class among the k
    clips most similar to the query;
  * precision@10: share of a query's 10 most similar clips that are of its class, averaged
    over classes (macro).
Clips longer than the encoder's window are embedded window by window and averaged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PROMPT = "the sound of a {}"
RECALL_AT = (1, 5, 10)
PRECISION_AT = 10
ESC10 = Path(__file__).resolve().parents[3] / "shared" / "data" / "esc10"


def retrieval_scores(audio: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """audio (clips, dim) and queries (classes, dim), unit rows; labels (clips,) index the queries."""
    similarity = np.asarray(queries, np.float64) @ np.asarray(audio, np.float64).T  # (classes, clips)
    labels = np.asarray(labels)
    # Stable sort: ties fall to the earlier clip, so the numbers never depend on chance.
    ranked_labels = labels[np.argsort(-similarity, axis=1, kind="stable")]  # (classes, clips)
    relevant = ranked_labels == np.arange(len(queries))[:, None]
    scores = {"accuracy": float(np.mean(similarity.argmax(axis=0) == labels))}
    for k in RECALL_AT:
        scores[f"recall@{k}"] = float(relevant[:, :k].any(axis=1).mean())
    scores[f"precision@{PRECISION_AT}"] = float((relevant[:, :PRECISION_AT].sum(axis=1) / PRECISION_AT).mean())
    return scores


def class_name(folder_name: str) -> str:
    """ESC folder "001 - Dog bark" -> "dog bark"."""
    return folder_name.split(" - ", 1)[-1].strip().lower()


def esc10_files(folder: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """(recordings, their class index, class names), classes in folder order."""
    classes = sorted(path for path in Path(folder).iterdir() if path.is_dir())
    files, labels = [], []
    for label, path in enumerate(classes):
        recordings = sorted(path.glob("*.ogg"))
        files += recordings
        labels += [label] * len(recordings)
    if not files:
        raise FileNotFoundError(f"No class folders of .ogg recordings in {folder}")
    return files, labels, [class_name(path.name) for path in classes]


def embed_clips(encoder, clips: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """One unit vector per clip: the normalised mean of its windows' embeddings."""
    from encoders.audio import windows

    cuts = [[window.samples for window in windows(clip, encoder.sample_rate, encoder.window_seconds)]
            for clip in clips]
    embedded = encoder.embed_audio([window for cut in cuts for window in cut], batch_size)
    bounds = np.cumsum([0] + [len(cut) for cut in cuts])
    means = np.stack([embedded[start:end].mean(axis=0) for start, end in zip(bounds[:-1], bounds[1:])])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def evaluate_encoder(encoder, folder: str | Path = ESC10) -> dict[str, float]:
    """Any ``encoders.Encoder`` on ESC-10 recordings decoded from ``folder``."""
    from encoders.audio import load_audio

    files, labels, class_names = esc10_files(folder)
    clips = [load_audio(path, encoder.sample_rate) for path in files]
    queries = encoder.embed_text([PROMPT.format(name) for name in class_names])
    return retrieval_scores(embed_clips(encoder, clips), np.asarray(labels), queries)


@torch.inference_mode()
def evaluate_model(model, clips, device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """A model in training (``encode_audio``/``encode_text``) on packed clips with labels and class features.

    Packed clips are at most one window long (ESC-10: 5 s), embedded whole.
    """
    from encoders.training.data import mu_law_table

    table = mu_law_table().to(device)
    was_training = model.training
    model.eval()
    audio = []
    for start in range(0, len(clips), batch_size):
        rows = range(start, min(start + batch_size, len(clips)))
        longest = max(len(clips.clip(row)) for row in rows)
        codes = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, row in enumerate(rows):
            codes[i, :len(clips.clip(row))] = torch.from_numpy(clips.clip(row).astype(np.int64))
        lengths = torch.from_numpy(clips.lengths[start:start + len(rows)]).to(device)
        waveforms = table[codes.to(device)] * (torch.arange(longest, device=device)[None] < lengths[:, None])
        audio.append(F.normalize(model.encode_audio(waveforms, lengths).float(), dim=-1).cpu())
    queries = model.encode_text(torch.from_numpy(clips.class_text_features).float().to(device))
    model.train(was_training)
    return retrieval_scores(torch.cat(audio).numpy(), clips.labels, F.normalize(queries.float(), dim=-1).cpu().numpy())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoders.training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clapdex-compact", help="a name from encoders.list_models()")
    parser.add_argument("--weights", help="checkpoint file for --model")
    parser.add_argument("--untrained", metavar="CONFIG",
                        help="evaluate a freshly initialised clapdex-compact of this config (the chance baseline)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed for --untrained")
    parser.add_argument("--esc10", default=str(ESC10), help="ESC-10 folder (class folders of .ogg)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.untrained:
        from encoders.compact import CONFIGS, CompactClap, CompactEncoder
        from encoders.msclap import resolve_device

        torch.manual_seed(args.seed)
        encoder = CompactEncoder(CompactClap(CONFIGS[args.untrained]), f"untrained-{args.untrained}-{args.seed}",
                                 resolve_device(args.device))
    else:
        from encoders import load_encoder

        encoder = load_encoder(args.model, weights=args.weights, device=args.device)
    scores = evaluate_encoder(encoder, args.esc10)
    print(json.dumps({"model": encoder.name, "weights_id": encoder.weights_id, **scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
