"""The Universal Category System's categories, so a filter can name a category as people say it.

A UCS file name starts with a CatID such as ``DOORWood``: the category's short form
(``DOOR``) and a subcategory. The catalog stores both (``ucs_cat_id``, ``ucs_category``);
this table adds the category's full name (``DOORS``), which appears nowhere in a file name.
Most categories have one short form; ARCHIVED, SWOOSHES and WEATHER have several.

Source: the UCS category list, version 8.2.1 (universalcategorysystem.com, by Tim Nielsen,
Justin Drury and Kai Paquin), released into the public domain.
"""

from __future__ import annotations

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
