"""Accuracy and calibration of ``clapdex tag`` on files whose class is known (issue 18).

ESC-10's clips (ten classes, 40 clips each, five folds) are copied under UCS-style names
(``ANML_ESC10 1-100032-A_ESC_ESC10.ogg``) into a fresh library, indexed, and tagged through the
product's own path (``indexer.tagging``). The model sees audio only: the prompts come from the
UCS names, the file names are read only afterwards, to score.

Two vocabularies, as ``clapdex tag`` has:

- no ``--ucs-list`` (the default): the 82 built-in categories; each class's category is
  ``CLASS_CATEGORIES``.
- ``--ucs-list FILE``: the subcategories of the user's UCS list; ``--classes FILE`` (JSON, the
  class folder's number -> a CatID of that list) says which is each class's. Neither file ships
  with clapdex (docs/tagging.md says why).

Calibration: the temperature of the softmax is fitted by minimising the negative log-likelihood
of the true label, over a log-spaced grid; the reported calibration error (ECE, 10 bins over
the top-1 confidence) is five-fold cross-validated on ESC-10's own folds: fitted on four, measured
on the fifth. ``--write-calibration`` then fits it on all clips and writes it to
``search/data/calibration.json`` for these weights and this vocabulary (``categories``, or the
list's fingerprint: a hash of its CatIDs), and the library is tagged with it.

    flock /tmp/bench.lock nice -n 5 python bench/tagging_accuracy.py --esc10 /work/shared/data/esc10 \\
        --model clapdex-compact --out bench/results/tagging_compact_categories.json --write-calibration
    flock /tmp/bench.lock nice -n 5 python bench/tagging_accuracy.py --esc10 /work/shared/data/esc10 \\
        --ucs-list UCS.csv --classes esc10-classes.json --out bench/results/tagging_compact_ucs.json --write-calibration
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import index_paths  # noqa: E402
from indexer.tagging import CALIBRATION_FILE, Vocabulary, pooled, softmax, tag_library  # noqa: E402
from search import ucs  # noqa: E402
from search.config import load_settings  # noqa: E402
from search.library import Library  # noqa: E402

# ESC-10's folder number -> the short form of its class's UCS category. A crying baby is a
# voice (VOICES), a sneeze HUMAN, a chainsaw MACHINES, a rooster BIRDS.
CLASS_CATEGORIES = {"001": "ANML", "002": "RAIN", "003": "WATR", "004": "VOX", "005": "CLOCK", "006": "HMN",
                    "007": "AERO", "008": "MACH", "009": "BIRD", "010": "FIRE"}
TEMPERATURES = np.geomspace(0.002, 0.5, 200)
BINS = 10


def build_library(esc10: Path, library: Path, labels: dict[str, str]) -> list[tuple[str, str, int, str]]:
    """Copy the clips under UCS names; (path, label, fold, class folder) of each."""
    files = []
    for folder in sorted(esc10.iterdir()):
        label = labels.get(folder.name[:3])
        if label is None or not folder.is_dir():
            continue
        for clip in sorted(folder.glob("*.ogg")):
            target = library / f"{label}_ESC10 {clip.stem}_ESC_ESC10{clip.suffix}"
            shutil.copyfile(clip, target)
            files.append((str(target), label, int(clip.name.split("-")[0]), folder.name))
    return files


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    edges = np.linspace(0, 1, BINS + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(error)


def fitted_temperature(similarities: np.ndarray, truth: np.ndarray) -> float:
    """The grid temperature with the least negative log-likelihood of ``truth``."""
    losses = [-np.log(softmax(similarities / t)[np.arange(len(truth)), truth] + 1e-12).mean() for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def scores(similarities: np.ndarray, truth: np.ndarray, temperatures: np.ndarray, shorts: np.ndarray) -> dict:
    """``shorts``: each label's category short form (the label itself in categories mode)."""
    probabilities = softmax(similarities / temperatures[:, None])
    order = np.argsort(-probabilities, axis=1)
    top1, top3 = order[:, 0] == truth, (order[:, :3] == truth[:, None]).any(axis=1)
    category1 = shorts[order[:, 0]] == shorts[truth]
    category3 = (shorts[order[:, :3]] == shorts[truth][:, None]).any(axis=1)
    confidence = probabilities[np.arange(len(truth)), order[:, 0]]
    return {"top1": float(top1.mean()), "top3": float(top3.mean()), "category_top1": float(category1.mean()),
            "category_top3": float(category3.mean()), "mean_confidence": float(confidence.mean()),
            "ece": expected_calibration_error(confidence, top1),
            "nll": float(-np.log(probabilities[np.arange(len(truth)), truth] + 1e-12).mean())}


def write_calibration(encoder, kind: str, temperature: float, ece: float, clips: int, vocabulary: str) -> None:
    """Keep ``temperature`` in search/data/calibration.json for these weights and vocabulary kind."""
    written = json.loads(CALIBRATION_FILE.read_text()) if CALIBRATION_FILE.exists() else {}
    entries = [entry for entry in written.get(encoder.name, []) if isinstance(entry, dict)
               and (entry.get("weights_id"), entry.get("vocabulary")) != (encoder.weights_id, kind)]
    entries.append({"weights_id": encoder.weights_id, "vocabulary": kind, "temperature": temperature,
                    "fitted_on": f"ESC-10, {clips} clips, labelled with {vocabulary}",
                    "method": "negative log-likelihood of the true label over a log-spaced grid of temperatures",
                    "ece_cross_validated": ece, "date": time.strftime("%Y-%m-%d", time.gmtime())})
    written[encoder.name] = entries
    CALIBRATION_FILE.write_text(json.dumps(written, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--esc10", type=Path, required=True, help="ESC-10's folder (its class folders inside)")
    parser.add_argument("--model", default="clapdex-compact")
    parser.add_argument("--weights")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ucs-list", type=Path, help="the UCS list saved as CSV: score its subcategories "
                        "(default: the 82 built-in categories)")
    parser.add_argument("--classes", type=Path, help="with --ucs-list: JSON, ESC-10 class folder number -> its CatID")
    parser.add_argument("--write-calibration", action="store_true",
                        help="fit the temperature on every clip and write it to search/data/calibration.json")
    args = parser.parse_args()
    if bool(args.ucs_list) != bool(args.classes):
        parser.error("--ucs-list and --classes go together")
    entries = ucs.load_list(str(args.ucs_list)) if args.ucs_list else ()
    labels = json.loads(args.classes.read_text()) if args.classes else CLASS_CATEGORIES
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="clapdex-tagging-") as work:
        library_folder = Path(work, "library")
        library_folder.mkdir()
        files = build_library(args.esc10, library_folder, labels)
        settings = load_settings(Path(work, "home"), model=args.model, weights=args.weights, device="cpu")
        with Library(settings, create=True) as library:
            report = index_paths(library, [library_folder])
            assert not report.errors, report.errors
            encoder = library.encoder
            catalog = library.catalog
            ids = {record.path: record.id for record in catalog.files()}
            window_ids, file_of_window = catalog.windows_of_files(sorted(ids.values()))
            vectors = pooled(library.store.reconstruct(window_ids), file_of_window)
            vocabulary = Vocabulary.of(encoder, entries, temperature=1.0)  # raw similarities: logits / 1
            cat_ids, shorts = vocabulary.cat_ids, np.array(vocabulary.shorts)
            similarities = np.stack([vectors[ids[path]] for path, *_ in files]) @ vocabulary.prompts.T
            truth = np.array([cat_ids.index(cat_id) for _, cat_id, *_ in files])
            folds = np.array([fold for _, _, fold, _ in files])

            uncalibrated = scores(similarities, truth, np.full(len(truth), 1.0 / encoder.logit_scale), shorts)
            held_out = np.zeros(len(truth))
            per_fold = {}
            for fold in sorted(set(folds)):
                fitted = fitted_temperature(similarities[folds != fold], truth[folds != fold])
                held_out[folds == fold] = fitted
                per_fold[int(fold)] = fitted
            calibrated = scores(similarities, truth, held_out, shorts)
            temperature = fitted_temperature(similarities, truth)
            if args.write_calibration:
                write_calibration(encoder, vocabulary.kind, temperature, calibrated["ece"], len(files),
                                  f"the {len(cat_ids)} subcategories of the UCS list {args.ucs_list.name}" if entries
                                  else "the 82 built-in UCS categories")
            # The product's own path, with that temperature: what `clapdex tag` stores.
            tag_library(library, Vocabulary.of(encoder, entries, temperature=temperature))
            stored = catalog.suggestions_of(ids[path] for path, *_ in files)
            product_top1 = np.mean([stored[ids[path]].ucs[0][0] == label for path, label, *_ in files])
            product_top3 = np.mean([label in [c for c, _ in stored[ids[path]].ucs] for path, label, *_ in files])
            # By class folder; what is suggested most, as a category (no list's names in results).
            per_class = {}
            for folder in sorted({folder for *_, folder in files}):
                mine = [(stored[ids[path]].ucs[0][0], label) for path, label, _, place in files if place == folder]
                short_of = dict(zip(cat_ids, shorts))
                most = max({found for found, _ in mine}, key=[found for found, _ in mine].count)
                per_class[folder] = {"top1": float(np.mean([found == label for found, label in mine])),
                                     "category_top1": float(np.mean([short_of[found] == short_of[label]
                                                                     for found, label in mine])),
                                     "most_suggested_category": str(short_of[most])}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
        "cpus": os.cpu_count(), "load": os.getloadavg(), "command": " ".join(["python"] + sys.argv),
        "model": args.model, "weights_id": encoder.weights_id, "clips": len(files), "classes": len(labels),
        "vocabulary": vocabulary.kind, "labels": len(cat_ids), "uncalibrated_temperature": 1.0 / encoder.logit_scale,
        "uncalibrated": uncalibrated, "calibrated_cross_validated": calibrated,
        "fold_temperatures": per_fold, "temperature_all_clips": temperature,
        "stored_by_clapdex_tag": {"top1": float(product_top1), "top3": float(product_top3)},
        "per_class": per_class, "seconds": time.time() - started,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
