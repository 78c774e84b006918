"""Zero-shot validation on ESC-10 (or any labelled set), for any encoder or a model in training.

    python -m training.evaluate --model clapdex-compact --weights model.safetensors
    python -m training.evaluate --model clapdex-compact --untrained base
    python -m training.evaluate --model msclap-2023 --esc10 ../shared/data/esc10

Each class is one text query, ``PROMPT`` with the class name ("the sound of a dog bark").
  * accuracy: share of clips whose most similar class query is their own class;
  * recall@k (text to audio): share of class queries with a clip of that class among the k
    clips most similar to the query;
  * precision@10: share of a query's 10 most similar clips that are of its class, averaged
    over classes (macro).
Held-out wordings (``WORDINGS``, issue 17: written before compact-2's training data and never
tuned on) are further text queries, one set of one wording per class: each set's text-to-audio
precision@10 is reported, and their mean. audio_to_audio_precision@10: each clip as a query
against the other 399 (leave one out), the share of its 10 nearest of its class, averaged.
clapdex-compact embeds each query as search does: its words, through the model's text framing
map where it has one; ``--all-framings`` embeds it under every framing of
``encoders.compact.TEXT_TEMPLATES`` and averages, which the map approximates (``training.frame_text``).
Clips longer than the encoder's window (a few ESC-10 files run to 7 s) are embedded window by
window and averaged; shorter ones are padded with silence, as the encoder does.
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
ESC10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "esc10"
WORDINGS = Path(__file__).with_name("esc10_wordings.json")


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


def audio_to_audio_precision(audio: np.ndarray, labels: np.ndarray, k: int = PRECISION_AT) -> float:
    """Leave-one-out precision@k of unit clip vectors ``audio`` (clips, dim) against each other."""
    similarity = np.asarray(audio, np.float64) @ np.asarray(audio, np.float64).T
    np.fill_diagonal(similarity, -np.inf)
    labels = np.asarray(labels)
    # The query itself ranks last (-inf) and is never among the k, however few clips there are.
    nearest = labels[np.argsort(-similarity, axis=1, kind="stable")[:, :min(k, len(labels) - 1)]]
    return float((nearest == labels[:, None]).sum(axis=1).mean() / k)


def wording_sets(class_names: list[str], path: str | Path = WORDINGS) -> dict[str, list[str]]:
    """{set name: one query per class, in ``class_names`` order} from the wordings file."""
    sets = json.loads(Path(path).read_text())["sets"]
    missing = {name: sorted(set(class_names) - set(wordings)) for name, wordings in sets.items()
               if set(class_names) - set(wordings)}
    if missing:
        raise ValueError(f"{path}: wording sets lack classes: {missing}")
    return {name: [wordings[label] for label in class_names] for name, wordings in sets.items()}


def wording_scores(audio: np.ndarray, labels: np.ndarray, class_names: list[str], embed_text,
                   path: str | Path = WORDINGS) -> dict[str, float]:
    """Text-to-audio precision@10 of each held-out wording set, their mean, and leave-one-out
    audio-to-audio precision@10; ``embed_text`` maps a list of strings to unit vectors."""
    scores = {}
    for name, queries in wording_sets(class_names, path).items():
        result = retrieval_scores(audio, labels, np.asarray(embed_text(queries)))
        scores[f"wordings.{name}.precision@{PRECISION_AT}"] = result[f"precision@{PRECISION_AT}"]
        scores[f"wordings.{name}.accuracy"] = result["accuracy"]
    per_set = [value for key, value in scores.items() if key.endswith(f".precision@{PRECISION_AT}")]
    scores[f"wordings.mean.precision@{PRECISION_AT}"] = float(np.mean(per_set))
    scores[f"audio_to_audio_precision@{PRECISION_AT}"] = audio_to_audio_precision(audio, labels)
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


def window_bounds(length: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of back-to-back windows covering ``length`` samples, the last one aligned to the
    end (as ``encoders.audio.windows`` cuts with hop = window); a short clip is one short window."""
    if length <= size:
        return [(0, length)]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return [(start, start + size) for start in starts]


def mean_of_windows(embedded: np.ndarray, counts: list[int]) -> np.ndarray:
    """Window embeddings, ``counts[i]`` of them for clip i -> one unit vector per clip."""
    bounds = np.cumsum([0] + counts)
    means = np.stack([embedded[start:end].mean(axis=0) for start, end in zip(bounds[:-1], bounds[1:])])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def embed_clips(encoder, clips: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    size = round(encoder.window_seconds * encoder.sample_rate)
    cuts = [[clip[start:end] for start, end in window_bounds(len(clip), size)] for clip in clips]
    return mean_of_windows(encoder.embed_audio([window for cut in cuts for window in cut], batch_size),
                           [len(cut) for cut in cuts])


def evaluate_encoder(encoder, folder: str | Path = ESC10, wordings: str | Path | None = WORDINGS) -> dict[str, float]:
    """Any ``encoders.Encoder`` on ESC-10 recordings decoded from ``folder``; with ``wordings``,
    the held-out wording sets and audio-to-audio precision too."""
    from encoders.audio import load_audio

    files, labels, class_names = esc10_files(folder)
    clips = [load_audio(path, encoder.sample_rate) for path in files]
    audio, labels = embed_clips(encoder, clips), np.asarray(labels)
    scores = retrieval_scores(audio, labels, encoder.embed_text([PROMPT.format(name) for name in class_names]))
    if wordings is not None:
        scores.update(wording_scores(audio, labels, class_names, encoder.embed_text, wordings))
    return scores


def text_inputs(captions, features: np.ndarray, tokenize, device: torch.device):
    """What a model in training's ``encode_text`` takes: tokens of ``captions`` (given
    ``tokenize``, for a trainable text tower) or their packed ``features``."""
    if tokenize is None:
        return torch.from_numpy(np.asarray(features)).float().to(device)
    return tuple(part.to(device) for part in tokenize([str(caption) for caption in captions]))


@torch.inference_mode()
def evaluate_model(model, clips, device: torch.device, batch_size: int = 64, tokenize=None) -> dict[str, float]:
    """A model in training (``encode_audio``/``encode_text``, ``config.window_samples``) on packed
    clips with labels and class text features, windowed exactly as ``evaluate_encoder`` does;
    ``tokenize`` as for ``text_inputs``."""
    from training.data import mu_law_table

    table = mu_law_table().to(device)
    size = model.config.window_samples
    windows = [(index, start, end) for index in range(len(clips))
               for start, end in window_bounds(len(clips.clip(index)), size)]
    was_training = model.training
    model.eval()
    audio = []
    for first in range(0, len(windows), batch_size):
        batch = windows[first:first + batch_size]
        codes = torch.zeros(len(batch), size, dtype=torch.long)
        for row, (index, start, end) in enumerate(batch):
            codes[row, :end - start] = torch.from_numpy(clips.clip(index)[start:end].astype(np.int64))
        lengths = torch.tensor([end - start for _, start, end in batch], device=device)
        waveforms = table[codes.to(device)] * (torch.arange(size, device=device)[None] < lengths[:, None])
        audio.append(F.normalize(model.encode_audio(waveforms, lengths).float(), dim=-1).cpu())
    prompts = [PROMPT.format(name) for name in clips.class_names]
    queries = model.encode_text(text_inputs(prompts, clips.class_text_features, tokenize, device))
    model.train(was_training)
    counts = np.bincount([index for index, _, _ in windows], minlength=len(clips)).tolist()
    return retrieval_scores(mean_of_windows(torch.cat(audio).numpy(), counts), clips.labels,
                            F.normalize(queries.float(), dim=-1).cpu().numpy())


@torch.inference_mode()
def corpus_retrieval(model, clips, device: torch.device, batch_size: int = 256, tokenize=None) -> dict[str, float]:
    """Held-out corpus clips (no labels): each clip's first window against the distinct captions.
    audio_to_text recall@k: share of clips whose caption is among the k captions nearest to it;
    text_to_audio recall@k: share of captions with one of their clips among the k nearest clips."""
    from training.data import mu_law_table

    table = mu_law_table().to(device)
    size = model.config.window_samples
    was_training = model.training
    model.eval()
    audio = []
    for first in range(0, len(clips), batch_size):
        indices = range(first, min(first + batch_size, len(clips)))
        codes = torch.full((len(indices), size), 128, dtype=torch.long)
        lengths = torch.zeros(len(indices), dtype=torch.long)
        for row, index in enumerate(indices):
            clip = clips.clip(index)[:size]
            codes[row, :len(clip)] = torch.from_numpy(clip.astype(np.int64))
            lengths[row] = len(clip)
        lengths = lengths.to(device)
        waveforms = table[codes.to(device)] * (torch.arange(size, device=device)[None] < lengths[:, None])
        audio.append(F.normalize(model.encode_audio(waveforms, lengths).float(), dim=-1))
    audio = torch.cat(audio)
    ids = torch.from_numpy(clips.caption_ids).to(device)
    first_of = np.unique(clips.caption_ids, return_index=True)[1]
    text = F.normalize(model.encode_text(text_inputs(clips.captions[first_of], clips.text_features[first_of],
                                                     tokenize, device)).float(), dim=-1)
    model.train(was_training)
    similarity = audio @ text.T  # (clips, captions)
    a2t = similarity.argsort(dim=1, descending=True) == ids[:, None]
    t2a = ids[similarity.T.argsort(dim=1, descending=True)] == torch.arange(len(text), device=device)[:, None]
    scores = {}
    for k in RECALL_AT:
        scores[f"audio_to_text_recall@{k}"] = a2t[:, :k].any(dim=1).float().mean().item()
        scores[f"text_to_audio_recall@{k}"] = t2a[:, :k].any(dim=1).float().mean().item()
    scores["mean_recall@10"] = 0.5 * (scores["audio_to_text_recall@10"] + scores["text_to_audio_recall@10"])
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="clapdex-compact", help="a name from encoders.list_models()")
    parser.add_argument("--weights", help="checkpoint file for --model")
    parser.add_argument("--untrained", metavar="CONFIG",
                        help="evaluate a freshly initialised clapdex-compact of this config (the chance baseline)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed for --untrained")
    parser.add_argument("--esc10", default=str(ESC10), help="ESC-10 folder (class folders of .ogg)")
    parser.add_argument("--wordings", default=str(WORDINGS),
                        help="held-out wording sets (JSON); 'none' to skip them")
    parser.add_argument("--all-framings", action="store_true",
                        help="clapdex-compact: embed each query under every text template and average them")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.all_framings and args.model != "clapdex-compact":
        parser.error("--all-framings: only clapdex-compact frames its texts")
    if args.untrained:
        from encoders.compact import CONFIGS, CompactClap, CompactEncoder
        from encoders.runtime import resolve_devices

        torch.manual_seed(args.seed)
        encoder = CompactEncoder(CompactClap(CONFIGS[args.untrained]), f"untrained-{args.untrained}-{args.seed}",
                                 resolve_devices(args.device))
    else:
        from encoders import load_encoder

        encoder = load_encoder(args.model, weights=args.weights, device=args.device)
    if args.all_framings:
        from encoders.compact import TEXT_TEMPLATES

        if encoder.model.text_framing is not None:
            parser.error("--all-framings: these weights carry a text framing map; give the checkpoint "
                         "training.frame_text read")
        encoder.text_templates = TEXT_TEMPLATES
    scores = evaluate_encoder(encoder, args.esc10, None if args.wordings == "none" else args.wordings)
    print(json.dumps({"model": encoder.name, "weights_id": encoder.weights_id,
                      "text_templates": list(getattr(encoder, "text_templates", ())), **scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
