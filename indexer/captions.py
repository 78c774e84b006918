"""Training captions from what an indexed library already says about its files.

``clapdex train --from-library`` writes these as a manifest (``write_library_manifest``) that
the user may read and edit before training on it. A caption is built from, in this order:
  * the UCS category, subcategory and FX name ("DOORWood_Creak Open Slow_..." ->
    "door, wood: creak open slow"), else the title tag, else the file name;
  * the BWF description (or comment tag), when it says more than the name;
  * the file's folder below the library root and its tags, as context in parentheses.
Names are split at underscores, hyphens and camelCase, lower-cased, and cleared of numbers
and of the filler that names carry (take, mix, final, stereo, sfx, ...).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from search.catalog import ERROR, Catalog, File

# Words in names that say nothing about the sound.
FILLER = frozenset(
    "take tk mix final edit edited copy new untitled mono stereo st ms lr sfx fx sound sounds audio file files "
    "version ver alt var variation render bounce master wav wave mp3 flac aif aiff ogg bit khz hz misc various "
    "library lib folder export exports raw the".split())
# UCS category abbreviations spelt out; the others read as they are ("DOOR" -> "door").
UCS_CATEGORIES = {
    "AMB": "ambience", "ANML": "animal", "ALRM": "alarm", "BLLT": "bullet", "CERM": "ceramic", "CHEM": "chemical",
    "COMM": "communication", "COMP": "computer", "CREA": "creature", "DSGN": "designed", "DEST": "destruction",
    "DRWR": "drawer", "ELEC": "electricity", "EQUIP": "equipment", "EXPL": "explosion", "FGHT": "fight",
    "FIREWRK": "fireworks", "FOLY": "foley", "FEET": "footsteps", "FURN": "furniture", "GLAS": "glass",
    "HUMN": "human", "LASR": "laser", "MACH": "machine", "MECH": "mechanical", "MOTR": "motor", "MUSC": "musical",
    "OBJ": "object", "PAPR": "paper", "PLAST": "plastic", "RUBR": "rubber", "SCI": "sci-fi", "SPRT": "sports",
    "SWSH": "swoosh", "TOON": "cartoon", "VEH": "vehicle", "VOX": "voice", "WATR": "water", "WEAP": "weapon",
    "WHSH": "whoosh", "WTHR": "weather", "WNDW": "window",
}
# Acronym before a capitalised word ("HTTPServer"), capitalised or lower words, acronyms, numbers.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
MAX_CONTEXT = 4  # folder and tags shown in the parentheses
SPAN_SECONDS = 10.0  # long files give one manifest row per span (the packer keeps 10 s of a row) ...
MAX_SPANS = 6  # ... up to this many


def words(text: str | None) -> list[str]:
    """'Door_CreakOpen-02 take3' -> ['door', 'creak', 'open']: no numbers, no filler."""
    return [word.lower() for word in _WORD.findall(text or "")
            if not word.isdigit() and len(word) > 1 and word.lower() not in FILLER]


def phrase(text: str | None) -> str:
    return " ".join(words(text))


def stems(text: str) -> set[str]:
    """Its words with a plural's s dropped, to tell whether a folder or tag adds anything ("doors" to "door")."""
    return {word[:-1] if word.endswith("s") and len(word) > 3 else word for word in words(text)}


def caption_for(file: File) -> str:
    """The caption of one catalogued file; empty when nothing about it is readable."""
    extra = json.loads(file.extra) if file.extra else {}
    if file.ucs_category:
        category = UCS_CATEGORIES.get(file.ucs_category.upper(), file.ucs_category.lower())
        kind = ", ".join(part for part in (category, phrase(file.ucs_subcategory)) if part)
        name = phrase(extra.get("ucs:fx_name"))
        head = f"{kind}: {name}" if name else kind
    else:
        head = phrase(file.title) or phrase(Path(file.name).stem)
    said = stems(head)
    description = " ".join((file.description or "").split()).strip(" .").lower()
    if description and not stems(description) <= said:
        head = f"{head}; {description}" if head else description
        said |= stems(description)
    context = []
    folder = Path(file.folder).relative_to(file.root).name if Path(file.folder).is_relative_to(file.root) else ""
    for candidate in [phrase(folder), *(phrase(tag) for tag in file.tags)]:
        if candidate and not stems(candidate) <= said and candidate not in context:
            context.append(candidate)
            said |= stems(candidate)
    context = context[:MAX_CONTEXT]
    if not head:
        return ", ".join(context)
    return f"{head} ({', '.join(context)})" if context else head


@dataclass
class LibraryManifest:
    path: Path
    rows: int  # lines written: one per file, more for long ones
    files: int
    uncaptioned: list[str]  # catalogued files left out: nothing readable to caption them with


def library_rows(file: File, caption: str) -> list[dict]:
    """One row for a file, or one per ``SPAN_SECONDS`` of a long one (up to ``MAX_SPANS``)."""
    if not file.duration or file.duration <= SPAN_SECONDS:
        return [{"audio": file.path, "caption": caption}]
    spans = min(MAX_SPANS, math.ceil(file.duration / SPAN_SECONDS))
    return [{"audio": file.path, "caption": caption, "start": i * SPAN_SECONDS,
             "end": min(file.duration, (i + 1) * SPAN_SECONDS)} for i in range(spans)]


def write_library_manifest(catalog: Catalog, path: str | Path) -> LibraryManifest:
    """Every catalogued file that is not in error, with its caption, as a JSONL manifest at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, files, uncaptioned = [], 0, []
    for file in catalog.files():
        if file.status == ERROR:
            continue
        caption = caption_for(file)
        if not caption:
            uncaptioned.append(file.path)
            continue
        rows += library_rows(file, caption)
        files += 1
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return LibraryManifest(path, len(rows), files, uncaptioned)
