"""How good a match is, in this library's own terms.

A cosine means little by itself: its size depends on the model, the kind of query and the
library ("kick drum" may best-match at 0.37 where made-up words best-match at 0.26). So a hit's
score is placed among the best scores that queries with no real answer get in the same
library:

- text: made-up words (a fixed list, so the same library always gets the same answer);
- sound: sounds of the library itself, each matched against the other files, so a sound
  query "matches well" when it is nearer its hit than a library sound is to its nearest
  neighbour.

``relevance`` is the share of those reference queries whose best match the hit beats (0 to 1);
``match`` names the level ("strong", "fair", "weak"). When a search's best hit is weak, nothing
in the library matches it well. A query mixing words and sounds ("rain + ./thunder.wav") scores
on a scale neither reference knows, so its hits get no level.
"""

from __future__ import annotations

import dataclasses
import random
import string

import numpy as np

STRONG = 0.95  # beats 95% of the reference queries' best matches
FAIR = 0.8
REFERENCE_QUERIES = 32
_NEIGHBOURS = 32  # windows searched per reference sound, enough to pass its own file's windows


def made_up_words(count: int = REFERENCE_QUERIES, seed: int = 20261203) -> list[str]:
    """Pronounceable nonsense ("kabelo tisu"): queries that no sound answers."""
    rng = random.Random(seed)
    vowels, consonants = "aeiou", "".join(sorted(set(string.ascii_lowercase) - set("aeiou")))

    def word() -> str:
        return "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))

    return [" ".join(word() for _ in range(rng.randint(1, 3))) for _ in range(count)]


def level(relevance: float | None) -> str | None:
    if relevance is None:
        return None
    return "strong" if relevance >= STRONG else "fair" if relevance >= FAIR else "weak"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The sorted best scores of reference queries without a real answer, per kind of query."""

    text: np.ndarray
    sound: np.ndarray

    def relevance(self, score: float, sound_query: bool) -> float | None:
        reference = self.sound if sound_query else self.text
        if not len(reference):
            return None
        return float(np.searchsorted(reference, score, side="left")) / len(reference)


def calibrate(embed_texts, store, file_ids_of_windows) -> Calibration:
    """Reference best scores for this library: ``embed_texts(list) -> (n, dim)`` unit vectors,
    ``store`` its vectors, ``file_ids_of_windows(ids) -> {window id: file id}``."""
    ids = np.sort(store.ids())
    if not len(ids):
        return Calibration(np.array([]), np.array([]))
    words = np.asarray(embed_texts(made_up_words()), dtype=np.float32)
    scores, _ = store.search(words, 1)
    text = np.sort(scores[:, 0])

    # Evenly spread over the library, so the same library always gives the same reference.
    chosen = ids[np.linspace(0, len(ids) - 1, min(REFERENCE_QUERIES, len(ids))).astype(int)]
    scores, found = store.search(store.reconstruct(chosen), min(_NEIGHBOURS, len(ids)))
    file_of = file_ids_of_windows(np.concatenate([chosen, found.ravel()]).tolist())
    sound = []
    for own, row_scores, row_ids in zip(chosen.tolist(), scores, found):
        others = [s for s, i in zip(row_scores.tolist(), row_ids.tolist())
                  if i >= 0 and file_of.get(i) not in (None, file_of.get(own))]
        if others:
            sound.append(others[0])
    return Calibration(text, np.sort(np.array(sound, dtype=np.float32)))
