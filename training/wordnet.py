"""WordNet's synonyms and broader terms, read from Debian's ``wordnet-base`` files.

Used when packing (``training.captions.variants``), never on the GPU machine. Only what the
caption variants need: a word's most frequent sense as a noun or a verb (WordNet lists a
word's senses by frequency), the other words of that sense, and its direct hypernyms. The
files are WordNet 3.0's ``index.<pos>`` (word -> synset offsets) and ``data.<pos>`` (a
synset at its byte offset: its words and pointers, ``@`` for a hypernym).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
POS_FILES = {"n": "noun", "v": "verb"}
# Detachment rules for inflected forms (WordNet's morphy), after the exception lists.
SUFFIXES = {
    "n": (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y"), ("s", "")),
    "v": (("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""), ("s", "")),
}


@dataclass(frozen=True)
class Synset:
    words: tuple[str, ...]  # spaces for WordNet's underscores
    hypernyms: tuple[tuple[str, int], ...]  # (pos, offset)


class WordNet:
    def __init__(self, folder: str | Path = WORDNET):
        folder = Path(folder)
        if not (folder / "index.noun").exists():
            raise FileNotFoundError(f"No WordNet in {folder}: apt-get install wordnet-base")
        self.index, self.data, self.exceptions = {}, {}, {}
        for pos, name in POS_FILES.items():
            senses = {}
            for line in (folder / f"index.{name}").read_text(encoding="latin-1").splitlines():
                if line.startswith(" "):
                    continue  # the licence header
                fields = line.split()
                count, pointers = int(fields[2]), int(fields[3])
                senses[fields[0]] = [int(offset) for offset in fields[6 + pointers:6 + pointers + count]]
            self.index[pos] = senses
            self.data[pos] = (folder / f"data.{name}").read_bytes()
            self.exceptions[pos] = dict(line.split()[:2] for line in
                                        (folder / f"{name}.exc").read_text(encoding="latin-1").splitlines()
                                        if len(line.split()) >= 2)

    def base_form(self, word: str, pos: str) -> str | None:
        """The form WordNet lists ``word`` under as ``pos`` ("barking" -> "bark"), or None."""
        word = word.lower()
        if word in self.index[pos]:
            return word
        if self.exceptions[pos].get(word) in self.index[pos]:
            return self.exceptions[pos][word]
        for suffix, replacement in SUFFIXES[pos]:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                base = word[:len(word) - len(suffix)] + replacement
                if base in self.index[pos]:
                    return base
        return None

    def synset(self, pos: str, offset: int) -> Synset:
        return _synset(self, pos, offset)

    def first_sense(self, word: str, pos: str) -> Synset | None:
        """The most frequent sense of ``word`` as ``pos``, or None if WordNet lacks it."""
        base = self.base_form(word, pos)
        return self.synset(pos, self.index[pos][base][0]) if base else None

    def depth(self, pos: str, offset: int) -> int:
        """Steps from the top of the hierarchy along first hypernyms (entity is 0)."""
        return _depth(self, pos, offset)


@lru_cache(maxsize=None)
def _synset(wordnet: WordNet, pos: str, offset: int) -> Synset:
    data = wordnet.data[pos]
    fields = data[offset:data.index(b"\n", offset)].decode("latin-1").split(" | ")[0].split()
    count = int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].split("(")[0].replace("_", " ") for i in range(count))
    position = 4 + 2 * count
    pointers = int(fields[position])
    hypernyms = []
    for i in range(pointers):
        symbol, target, target_pos = fields[position + 1 + 4 * i:position + 4 + 4 * i]
        if symbol in ("@", "@i") and target_pos in POS_FILES:
            hypernyms.append((target_pos, int(target)))
    return Synset(words, tuple(hypernyms))


@lru_cache(maxsize=None)
def _depth(wordnet: WordNet, pos: str, offset: int) -> int:
    hypernyms = wordnet.synset(pos, offset).hypernyms
    return 0 if not hypernyms else 1 + _depth(wordnet, *hypernyms[0])


@lru_cache(maxsize=1)
def wordnet() -> WordNet:
    return WordNet()
