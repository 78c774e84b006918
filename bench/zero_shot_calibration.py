"""Where clapdex-compact's zero-shot answers go wrong, and whether a per-query score shift fixes it.

    python bench/zero_shot_calibration.py [--weights FILE] [--out bench/results/zero_shot_calibration.json]

1. ESC-10 (prompt "the sound of a {class}" and the held-out wording sets of training.evaluate):
   the confusion matrix of zero-shot answers, and how many clips each class query wins.
2. Hubness reduction: each text query's score minus its mean cosine with a reference bank of
   audio vectors (QB-Norm / CSLS's correction). Mean over the bank is the query's cosine with
   the bank's centroid, a single vector that could ship with the weights. Banks: the training
   corpus (the first window of its 534 held-out clips and of 1,500 training clips drawn with
   seed 0; never ESC-10) and, for comparison, the library being classified itself (ESC-10's own
   400 clips, no labels used; flattering, since ESC-10's classes are exactly balanced).
   Also CSLS's form: the mean of the query's k best bank cosines. Zero-shot accuracy is
   reported for each; a text query's ranking of clips, and so its P@10, cannot change by a
   shift of its own scores.
3. The page's "nothing matches well" notice (search.relevance) on the demo library: the best
   score of each of a fixed list of words that name sounds in it (taken from its file names),
   placed among the best scores of relevance's made-up words, raw and shifted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders import load_encoder  # noqa: E402
from encoders.audio import load_audio  # noqa: E402
from search.relevance import FAIR, STRONG, made_up_words  # noqa: E402
from training.evaluate import ESC10, PROMPT, embed_clips, esc10_files, window_bounds, wording_sets  # noqa: E402
from training.pack import is_validation  # noqa: E402

CORPUS = Path("/work/corpus2")
DEMO = Path(__file__).resolve().parents[1] / "demo-library" / "samples"
BANK_TRAINING_CLIPS = 1500
CSLS_K = (10, 50)
# Words naming sounds of the demo library (Sonic Pi's samples), from its file names.
DEMO_WORDS = ["bell", "drum", "snare drum", "cymbal", "kick drum", "hi-hat", "tabla", "bass", "piano", "choir",
              "drone", "robot voice", "vinyl scratch", "phone ringing", "guitar", "finger snap", "swoosh", "splash",
              "impact", "glass", "tom drum", "zap", "buzz", "hum"]


def corpus_bank(encoder, corpus: Path) -> np.ndarray:
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines() if line.strip()]
    held_out = [i for i, row in enumerate(rows) if is_validation(row)]
    training = [i for i, row in enumerate(rows) if not is_validation(row)]
    chosen = held_out + sorted(np.random.default_rng(0).choice(training, BANK_TRAINING_CLIPS, replace=False).tolist())
    size = round(encoder.window_seconds * encoder.sample_rate)
    return encoder.embed_audio([load_audio(corpus / rows[i]["audio"], encoder.sample_rate)[:size] for i in chosen])


def shift(queries: np.ndarray, bank: np.ndarray, k: int | None) -> np.ndarray:
    """Each query's mean cosine with the bank (k None) or with its k nearest bank vectors."""
    scores = queries @ bank.T
    return scores.mean(axis=1) if k is None else -np.sort(-scores, axis=1)[:, :k].mean(axis=1)


def accuracy(audio: np.ndarray, labels: np.ndarray, queries: np.ndarray, offsets: np.ndarray | float = 0.0) -> float:
    return float(np.mean((audio @ queries.T - offsets).argmax(axis=1) == labels))


def esc10(encoder, bank: np.ndarray) -> dict:
    files, labels, names = esc10_files(ESC10)
    audio = embed_clips(encoder, [load_audio(path, encoder.sample_rate) for path in files])
    labels = np.asarray(labels)
    sets = {"prompt": [PROMPT.format(name) for name in names], **wording_sets(names)}
    banks = {"corpus": bank, "esc10_itself": audio}
    result = {"classes": names, "sets": {}}
    for set_name, texts in sets.items():
        queries = encoder.embed_text(texts)
        answers = (audio @ queries.T).argmax(axis=1)
        confusion = np.zeros((len(names), len(names)), dtype=int)
        np.add.at(confusion, (labels, answers), 1)
        shifted = {f"{bank_name}_{'mean' if k is None else f'top{k}'}": accuracy(audio, labels, queries,
                                                                                  shift(queries, vectors, k))
                   for bank_name, vectors in banks.items() for k in (None, *CSLS_K)}
        result["sets"][set_name] = {"accuracy": accuracy(audio, labels, queries), "shifted_accuracy": shifted,
                                    "wins": np.bincount(answers, minlength=len(names)).tolist(),
                                    "confusion": confusion.tolist()}
    return result


def demo_relevance(encoder, bank: np.ndarray, folder: Path) -> dict:
    files = sorted(folder.glob("*.flac"))
    size = round(encoder.window_seconds * encoder.sample_rate)
    windows, owner = [], []
    for number, path in enumerate(files):
        samples = load_audio(path, encoder.sample_rate)
        for start, end in window_bounds(len(samples), size):
            windows.append(samples[start:end])
            owner.append(number)
    vectors = encoder.embed_audio(windows)
    words, made_up = encoder.embed_text(DEMO_WORDS), encoder.embed_text(made_up_words())
    result = {}
    for name, centre in (("raw", None), ("corpus_mean", bank.mean(axis=0)), ("library_mean", vectors.mean(axis=0))):
        def best(queries):
            scores = queries @ vectors.T - (0.0 if centre is None else (queries @ centre)[:, None])
            return scores.max(axis=1), scores.argmax(axis=1)

        reference = np.sort(best(made_up)[0])
        scores, hits = best(words)
        placed = np.searchsorted(reference, scores, side="left") / len(reference)
        levels = ["strong" if p >= STRONG else "fair" if p >= FAIR else "weak" for p in placed]
        result[name] = {"levels": {level: levels.count(level) for level in ("strong", "fair", "weak")},
                        "weak": [word for word, level in zip(DEMO_WORDS, levels) if level == "weak"],
                        "words": {word: [round(float(s), 3), level, files[owner[h]].stem]
                                  for word, s, level, h in zip(DEMO_WORDS, scores, levels, hits)}}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="clapdex-compact weights (default: the shipped file)")
    parser.add_argument("--corpus", default=str(CORPUS), help="training corpus folder (manifest.jsonl, clips/)")
    parser.add_argument("--demo", default=str(DEMO), help="demo library samples folder")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    started = time.time()
    encoder = load_encoder("clapdex-compact", weights=args.weights)
    bank = corpus_bank(encoder, Path(args.corpus))
    report = {"weights_id": encoder.weights_id, "bank_clips": len(bank), "esc10": esc10(encoder, bank),
              "demo": demo_relevance(encoder, bank, Path(args.demo)),
              "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
              "seconds": round(time.time() - started)}
    text = json.dumps(report)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
