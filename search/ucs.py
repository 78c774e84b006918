"""The Universal Category System: its categories, built in, and its subcategories, read from
the user's copy of the official list, so a filter can name a category as people say it and
``clapdex tag`` can suggest a category or a subcategory for a sound.

A UCS file name starts with a CatID such as ``DOORWood``: the category's short form
(``DOOR``) and a subcategory. The catalog stores both (``ucs_cat_id``, ``ucs_category``);
this table adds the category's full name (``DOORS``), which appears nowhere in a file name.
Most categories have one short form; ARCHIVED, SWOOSHES and WEATHER have several.

Source of the built-in categories: the UCS category list, version 8.2.1
(universalcategorysystem.com, by Tim Nielsen, Justin Drury and Kai Paquin), released into the
public domain. The subcategories are not shipped: no package carries the list, and clapdex
ships no copy taken from a repository. The official list is a free public-domain download;
saved as CSV, it is read here (``load_list``) from where the user points ``ucs_list``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
from pathlib import Path

# Category name -> the short forms its CatIDs begin with.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "AIR": ("AIR",), "AIRCRAFT": ("AERO",), "ALARMS": ("ALRM",), "AMBIENCE": ("AMB",), "ANIMALS": ("ANML",),
    "ARCHIVED": ("ADR", "ASSET", "BNCE", "IR", "LPGRP", "MIX", "PFX", "PROD", "RAW", "REF", "SCNE", "TEST",
                 "TMARK", "WIP", "WTF"),
    "BEEPS": ("BEEP",), "BELLS": ("BELL",), "BIRDS": ("BIRD",), "BOATS": ("BOAT",), "BULLETS": ("BLLT",),
    "CARTOON": ("TOON",), "CERAMICS": ("CERM",), "CHAINS": ("CHAIN",), "CHEMICALS": ("CHEM",),
    "CLOCKS": ("CLOCK",), "CLOTH": ("CLOTH",), "COMMUNICATIONS": ("COM",), "COMPUTERS": ("CMPT",),
    "CREATURES": ("CREA",), "CROWDS": ("CRWD",), "DESIGNED": ("DSGN",), "DESTRUCTION": ("DESTR",),
    "DIRT & SAND": ("DIRT",), "DOORS": ("DOOR",), "DRAWERS": ("DRWR",), "ELECTRICITY": ("ELEC",),
    "EQUIPMENT": ("EQUIP",), "EXPLOSIONS": ("EXPL",), "FARTS": ("FART",), "FIGHT": ("FGHT",), "FIRE": ("FIRE",),
    "FIREWORKS": ("FRWK",), "FOLEY": ("FOLY",), "FOOD & DRINK": ("FOOD",), "FOOTSTEPS": ("FEET",),
    "GAMES": ("GAME",), "GEOTHERMAL": ("GEO",), "GLASS": ("GLAS",), "GORE": ("GORE",), "GUNS": ("GUN",),
    "HORNS": ("HORN",), "HUMAN": ("HMN",), "ICE": ("ICE",), "LASERS": ("LASR",), "LEATHER": ("LETHR",),
    "LIQUID & MUD": ("LIQ",), "MACHINES": ("MACH",), "MAGIC": ("MAG",), "MECHANICAL": ("MECH",),
    "METAL": ("METL",), "MOTORS": ("MOTR",), "MOVEMENT": ("MOVE",), "MUSICAL": ("MUSC",),
    "NATURAL DISASTER": ("NATD",), "OBJECTS": ("OBJ",), "PAPER": ("PAPR",), "PLASTIC": ("PLAS",),
    "RAIN": ("RAIN",), "ROBOTS": ("ROBT",), "ROCKS": ("ROCK",), "ROPE": ("ROPE",), "RUBBER": ("RUBR",),
    "SCIFI": ("SCI",), "SNOW": ("SNOW",), "SPORTS": ("SPRT",), "SWOOSHES": ("SWSH", "WHSH"), "TOOLS": ("TOOL",),
    "TOYS": ("TOY",), "TRAINS": ("TRN",), "USER INTERFACE": ("UI",), "VEGETATION": ("VEGE",),
    "VEHICLES": ("VEH",), "VOICES": ("VOX",), "WATER": ("WATR",), "WEAPONS": ("WEAP",),
    "WEATHER": ("HAIL", "STORM", "THUN", "WTHR"), "WHISTLES": ("WHST",), "WIND": ("WIND",),
    "WINDOWS": ("WNDW",), "WINGS": ("WING",), "WOOD": ("WOOD",),
}

_NAME_OF = {short: name for name, shorts in CATEGORIES.items() for short in shorts}


def short_forms(value: str) -> tuple[str, ...]:
    """The CatID short forms a filter value names: a category's name in any case ("doors",
    "Dirt & Sand"), or a short form itself ("DOOR", "door"); () for anything else (a whole
    CatID such as "DOORWood", or a library's own category)."""
    value = value.strip().upper()
    if value in CATEGORIES:
        return CATEGORIES[value]
    return (value,) if value in _NAME_OF else ()


def category_name(short: str) -> str | None:
    """The category's name for a CatID's short form ("DOOR" -> "DOORS"), if UCS has it."""
    return _NAME_OF.get(short)


def shorts_naming(word: str) -> list[str]:
    """The short forms of the categories whose name or short form holds ``word`` (any case,
    inside a word too, as keyword search reads names): "door" -> DOOR, "weather" -> HAIL, STORM..."""
    word = word.strip().upper()
    if not word:
        return []
    return [short for name, shorts in CATEGORIES.items() for short in shorts if word in name or word in short]


@dataclasses.dataclass(frozen=True)
class Subcategory:
    cat_id: str  # "DOORWood"
    category: str  # "DOORS"
    subcategory: str  # "WOOD"
    short: str  # "DOOR"
    explanation: str
    synonyms: tuple[str, ...]


class ListError(ValueError):
    """The UCS list file cannot be read, or lacks a column it needs."""


REQUIRED = ("CatID", "Category", "SubCategory")
# The official sheet's header, then the short one some exports use.
SYNONYMS = ("Synonyms - Comma Separated", "Synonyms")


@functools.cache
def load_list(path: str) -> tuple[Subcategory, ...]:
    """The subcategories of the UCS list saved as CSV at ``path`` (the official sheet's columns:
    CatID, Category, SubCategory, and CatShort, Explanations, Synonyms if it has them), in its order."""
    try:
        with open(Path(path).expanduser(), newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED if name not in header]
            if missing:
                raise ListError(f"UCS list {path} has no {missing[0]} column: expected the official UCS list "
                                f"saved as CSV (CatID, Category, SubCategory, ...)")
            synonyms = next((name for name in SYNONYMS if name in header), None)
            rows = [{(key or "").strip(): (value or "").strip() for key, value in row.items() if key}
                    for row in reader]
    except OSError as error:
        raise ListError(f"UCS list {path} cannot be read: {error.strerror or error}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise ListError(f"UCS list {path} is not a CSV file in UTF-8: {error}") from None
    entries = tuple(Subcategory(row["CatID"], row["Category"].upper(), row["SubCategory"],
                                row.get("CatShort") or _short_of(row["CatID"], row["Category"]),
                                row.get("Explanations", ""),
                                tuple(word.strip() for word in row.get(synonyms, "").split(",") if word.strip())
                                if synonyms else ())
                    for row in rows if row.get("CatID"))
    if not entries:
        raise ListError(f"UCS list {path} has no rows with a CatID")
    return entries


def _short_of(cat_id: str, category: str) -> str:
    """A CatID's short form where the list has no CatShort column: the category's that begins it."""
    forms = sorted(CATEGORIES.get(category.upper(), ()), key=len, reverse=True)
    return next((short for short in forms if cat_id.upper().startswith(short)), cat_id[:4].upper())


def fingerprint(entries: tuple[Subcategory, ...]) -> str:
    """Which list this is, from its CatIDs alone: a fitted temperature is kept under it."""
    return hashlib.sha256("\n".join(entry.cat_id for entry in entries).encode()).hexdigest()[:16]


def describe(value: str, entries: tuple[Subcategory, ...] = ()) -> str:
    """A suggested value in words: a CatID by the list's names and explanation where ``entries``
    has it, a category's short form by its name ("ANML" -> "ANIMALS")."""
    entry = next((entry for entry in entries if entry.cat_id == value), None)
    if entry:
        return f"{entry.category} › {entry.subcategory}: {entry.explanation}".rstrip(": ")
    if value in _NAME_OF:
        return _NAME_OF[value]
    category = next((_NAME_OF[short] for short in sorted(_NAME_OF, key=len, reverse=True) if value.startswith(short)),
                    None)
    return f"{category} › {value}" if category else value
