"""``clapdex tag``: suggest a UCS category or subcategory, and descriptive tags, for every
embedded file.

Zero-shot, from what the index already holds: a file's window vectors, averaged into one unit
vector, are compared with the text tower's embeddings of one prompt per label and of a small
vocabulary of descriptors (material, action, perspective, setting). The labels are the UCS
subcategories (CatIDs, ``PROMPT``) where the user has pointed ``ucs_list`` at the official UCS
list, else the 82 built-in categories (``CATEGORY_PROMPT``), stored as their CatID short form
("ANML"). The file's name is never read: it is what the suggestion is meant to replace, and
what the evaluation hides (bench/tagging_accuracy.py).

Confidence is a probability: a softmax over the labels' similarities divided by a temperature
fitted on labelled clips for this model, weights and vocabulary (``search/data/calibration.json``,
written by the evaluation; see docs/tagging.md). Without a fitted temperature the model's own
logit scale is used, and the log says its confidences are not calibrated. Descriptor groups
use the same temperature over their few words: a ranking of plausible tags, not calibrated on labels.

Incremental as indexing is: a file is tagged again only once it is embedded again or the
vocabulary (model, labels, prompts, temperature) changes; each batch is committed, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from search import ucs
from search.library import Library

log = logging.getLogger(__name__)

# One prompt per UCS subcategory. Chosen on ESC-10 among six forms built from the list's
# category, subcategory, explanation and synonyms (docs/tagging.md): the short one won.
PROMPT = "the sound of {subcategory}, {category}"
# One per category, where there is no list.
CATEGORY_PROMPT = "the sound of {category}"
CATEGORIES = "categories"  # the vocabulary kind without a list; with one, the list's fingerprint
TOP = 3  # suggestions kept per file
BATCH_FILES = 256  # files tagged, then committed, at a time
CALIBRATION_FILE = Path(ucs.__file__).with_name("data") / "calibration.json"

# Descriptive tags: group -> tag -> its prompt. The best tag of each group is kept.
DESCRIPTORS: dict[str, dict[str, str]] = {
    "material": {word: f"the sound of {word}" for word in (
        "wood", "metal", "glass", "plastic", "stone", "water", "paper", "cloth", "rubber", "ceramic", "dirt",
        "leather", "ice", "concrete")},
    "action": {word: f"a {word} sound" for word in (
        "impact", "scrape", "rub", "roll", "creak", "crackle", "crash", "whoosh", "splash", "drip", "rattle",
        "squeak", "tap", "hum", "buzz", "rumble", "ring", "hiss", "click", "pour")},
    "perspective": {"close": "a close-up sound, right next to the microphone",
                    "distant": "a distant sound, far away from the microphone"},
    "setting": {"indoor": "a sound recorded indoors, in a room", "outdoor": "a sound recorded outdoors, in the open air"},
}


def ucs_prompt(entry: ucs.Subcategory) -> str:
    return PROMPT.format(category=entry.category.lower(), subcategory=entry.subcategory.lower())


def calibrated_temperature(model: str, weights_id: str, kind: str) -> float | None:
    """The temperature fitted for these weights and this vocabulary kind (``CATEGORIES`` or a
    list's fingerprint), if the evaluation has fitted one."""
    try:
        fitted = json.loads(CALIBRATION_FILE.read_text())
    except FileNotFoundError:
        return None
    entries = fitted.get(model)
    if not isinstance(entries, list):  # none fitted, or a file from before vocabularies had kinds
        return None
    return next((entry["temperature"] for entry in entries if isinstance(entry, dict)
                 and entry.get("weights_id") == weights_id and entry.get("vocabulary") == kind), None)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclasses.dataclass
class Vocabulary:
    """The prompts' embeddings for one model, and the temperature that turns similarities into
    probabilities."""

    cat_ids: list[str]  # the labels: CatIDs with a list, the categories' short forms without
    shorts: list[str]
    prompts: np.ndarray  # (labels, dim) unit rows
    descriptors: dict[str, tuple[list[str], np.ndarray]]  # group -> (tags, (n, dim) unit rows)
    temperature: float
    calibrated: bool
    kind: str  # CATEGORIES, or the list's fingerprint
    fingerprint: str  # changes with the model, the labels, the prompts or the temperature

    @property
    def subcategories(self) -> bool:
        return self.kind != CATEGORIES

    @classmethod
    def of(cls, encoder, entries: tuple[ucs.Subcategory, ...] = (), temperature: float | None = None) -> Vocabulary:
        """``entries``: the UCS list's subcategories, () for the built-in categories.
        ``temperature``: this one (the evaluation fits it), else the calibrated one, else 1/logit scale."""
        if entries:
            labels, shorts = [entry.cat_id for entry in entries], [entry.short for entry in entries]
            texts = [ucs_prompt(entry) for entry in entries]
            kind = ucs.fingerprint(entries)
        else:
            labels = shorts = [forms[0] for forms in ucs.CATEGORIES.values()]
            texts = [CATEGORY_PROMPT.format(category=name.lower()) for name in ucs.CATEGORIES]
            kind = CATEGORIES
        fitted = calibrated_temperature(encoder.name, encoder.weights_id, kind)
        calibrated = temperature is not None or fitted is not None
        temperature = temperature or fitted or 1.0 / encoder.logit_scale
        descriptors = {group: (list(words), encoder.embed_text(list(words.values())))
                       for group, words in DESCRIPTORS.items()}
        identity = json.dumps([encoder.name, encoder.weights_id, labels, texts, DESCRIPTORS, round(temperature, 6)])
        return cls(labels, list(shorts), encoder.embed_text(texts), descriptors, float(temperature), calibrated, kind,
                   hashlib.sha256(identity.encode()).hexdigest()[:16])

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) unit file vectors -> (n, labels) probabilities over the labels."""
        return softmax(vectors @ self.prompts.T / self.temperature)

    def suggest(self, vector: np.ndarray) -> tuple[list[tuple[str, str, float]], dict[str, tuple[str, float]]]:
        """One file's (label, short form, confidence) best first, and its best tag per group."""
        probabilities = self.probabilities(vector[None])[0]
        best = np.argsort(-probabilities)[:TOP]
        ranked = [(self.cat_ids[i], self.shorts[i], float(probabilities[i])) for i in best]
        tags = {}
        for group, (words, rows) in self.descriptors.items():
            chances = softmax(rows @ vector / self.temperature)
            tags[group] = (words[int(chances.argmax())], float(chances.max()))
        return ranked, tags


def pooled(window_vectors: np.ndarray, file_of_window: np.ndarray) -> dict[int, np.ndarray]:
    """file id -> the unit mean of its windows' vectors."""
    vectors = {}
    for file_id in np.unique(file_of_window):
        mean = window_vectors[file_of_window == file_id].mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm > 0:
            vectors[int(file_id)] = (mean / norm).astype(np.float32)
    return vectors


@dataclasses.dataclass
class TagReport:
    tagged: int = 0
    unchanged: int = 0  # tagged before, with this vocabulary, since last embedded
    calibrated: bool = True
    suggests: str = "subcategories"  # or "categories", without a UCS list


def tag_library(library: Library, vocabulary: Vocabulary | None = None,
                progress: Callable[[int, int], None] | None = None) -> TagReport:
    """Tag the library's embedded files that are not tagged yet (or were embedded again since)."""
    if vocabulary is None:
        listed = library.settings.ucs_list
        vocabulary = Vocabulary.of(library.encoder, ucs.load_list(listed) if listed else ())
    catalog = library.catalog
    untagged = catalog.untagged(vocabulary.fingerprint)
    if untagged and not vocabulary.calibrated:
        log.warning("no temperature is fitted for %s (weights %s): confidences are not calibrated",
                    library.encoder.name, library.encoder.weights_id)
    report = TagReport(unchanged=catalog.counts()["indexed"] - len(untagged), calibrated=vocabulary.calibrated,
                       suggests="subcategories" if vocabulary.subcategories else "categories")
    if untagged and not report.unchanged and not vocabulary.subcategories:  # the first run so
        log.warning("only UCS categories are suggested: for subcategories (CatIDs), save the official UCS list "
                    "(free, universalcategorysystem.com) as CSV and pass it with --ucs-list FILE")
    for at in range(0, len(untagged), BATCH_FILES):
        batch = untagged[at : at + BATCH_FILES]
        window_ids, file_of_window = catalog.windows_of_files(batch)
        vectors = pooled(library.store.reconstruct(window_ids), file_of_window) if len(window_ids) else {}
        for file_id, vector in vectors.items():
            ranked, tags = vocabulary.suggest(vector)
            catalog.set_suggestions(file_id, ranked, tags, vocabulary.fingerprint)
        catalog.commit()
        report.tagged += len(vectors)
        if progress is not None:
            progress(at + len(batch), len(untagged))
    return report
