"""The corpus builder's caption rules and clip writer, on small files made with sox (no network)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile

from training import corpus, sources
from training.sources import Source

SOURCES = {source.name: source for source in sources.SOURCES}


def test_names_become_words_without_filler_numbers_or_package_names():
    assert corpus.words_of("EvilConfirm2alt") == ["evil", "confirm", "alt"]
    assert corpus.caption_from_path("usr/share/games/boswars/sounds/sd_hard01.wav", Source("boswars-data")) == "snare drum hard"
    assert corpus.caption_from_path("usr/share/games/x/sounds/weapons/expl_big.ogg", Source("x")) == "explosion big (weapons)"


def test_per_source_templates_keep_unit_names_as_context():
    megaglest = SOURCES["megaglest-data"]
    assert corpus.caption_from_path("techs/megapack/factions/magic/units/archer/sounds/archer_ack3.wav",
                                    megaglest) == "voice of a archer unit answering an order"
    assert corpus.kind_of("units/archer/sounds/archer_ack3.wav", "", 0.5, megaglest) == "speech"
    keyboard = SOURCES["keyboardsounds"]
    assert corpus.caption_from_path("keyboardsounds/profiles/mx-blue/release_back.mp3",
                                    keyboard) == "backspace key released on a mechanical computer keyboard"


def test_chord_names_and_kinds():
    assert corpus.guitar_strum_caption("Fsharp minor7b5_UP_02") == (
        "acoustic guitar strumming a F sharp minor seventh flat five chord, upstroke")
    assert corpus.kind_of("sounds/wolf-growl.ogg", "wolf growl", 1.0, Source("x")) == "animal"
    assert corpus.kind_of("sounds/wind.ogg", "wind", 8.0, Source("x")) == "ambience"


def test_licence_is_the_last_matching_copyright_stanza():
    stanzas = [(["*"], "GPL-2+"), (["drumkits/Kit.h2drumkit", "sounds/*.ogg"], "CC0"), (["debian/*"], "MIT")]
    assert corpus.licence_of("usr/share/hydrogen/data/drumkits/Kit/kick.wav", stanzas) == "CC0"
    assert corpus.licence_of("usr/share/games/x/sounds/a.ogg", stanzas) == "CC0"
    assert corpus.licence_of("usr/share/games/x/music/a.ogg", stanzas) == "GPL-2+"


def test_a_source_rule_overrides_a_copyright_file_read_in_prose():
    stanzas = [(["*"], "CC0-1.0")]  # what the prose reader makes of fluid-soundfont-gm's copyright file
    assert corpus.source_licence(SOURCES["fluid-soundfont-gm"], "program 1 key 36 velocity 100", stanzas) == "MIT"
    tuxtype = SOURCES["tuxtype-data"]
    assert corpus.source_licence(tuxtype, "usr/share/tuxtype/sounds/tuxi.ogg", stanzas) == "public-domain"
    assert corpus.source_licence(tuxtype, "usr/share/tuxtype/sounds/splat.wav", stanzas) == "GPL-2"
    gnome = SOURCES["gnome-audio"]
    assert corpus.source_licence(gnome, "usr/share/sounds/gtk-events/clicked.wav", [(["*"], "unknown")]) == "CC-BY-SA-2.0"
    assert corpus.source_licence(gnome, "usr/share/sounds/email.wav", [(["*"], "unknown")]) == "unknown"
    assert corpus.source_licence(Source("x"), "sounds/a.ogg", stanzas) == "CC0-1.0"


@pytest.mark.skipif(not Path("/usr/share/doc/fluid-soundfont-gm/copyright").exists(),
                    reason="Debian's fluid-soundfont-gm is not installed")
def test_fluid_soundfont_renders_are_mit_as_its_copyright_file_says():
    stanzas = corpus.licence_rules(Path("/"), "fluid-soundfont-gm")
    assert "MIT license" in Path("/usr/share/doc/fluid-soundfont-gm/copyright").read_text()
    assert corpus.source_licence(SOURCES["fluid-soundfont-gm"], "program 1 chord", stanzas) == "MIT"


def test_general_midi_file_is_well_formed():
    slots = corpus._general_midi_slots()
    song = corpus._midi_file(slots)
    assert song[:4] == b"MThd" and song.endswith(b"\xff\x2f\x00")
    assert len({origin for origin, *_ in slots}) == len(slots)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox makes the test files")
def test_clip_writer_crops_skips_silence_and_deduplicates(tmp_path):
    def sox(name, *effects, rate="44101", channels="2"):
        subprocess.run(["sox", "-n", "-r", rate, "-c", channels, str(tmp_path / name), "synth", *effects], check=True)
        return tmp_path / name

    long_tone = sox("tone.wav", "12", "sine", "440", "fade", "0", "12", "1")
    same_quieter = tmp_path / "tone-quiet.flac"
    subprocess.run(["sox", str(long_tone), "-r", "39063", "-c", "1", str(same_quieter), "vol", "0.5"], check=True)
    other = sox("noise.ogg", "2", "pinknoise", rate="22050", channels="1")
    silent = sox("silence.wav", "2", "sine", "440", "vol", "0")
    clips = tmp_path / "clips"

    tone = corpus.make_clip(long_tone, clips, max_seconds=10)
    assert tone.duration == pytest.approx(10, abs=0.01)
    written, rate = soundfile.read(clips / tone.fingerprint[:2] / f"{tone.fingerprint}.ogg")
    assert rate == corpus.SAMPLE_RATE and written.ndim == 1
    assert corpus.make_clip(same_quieter, clips, max_seconds=10).fingerprint == tone.fingerprint
    assert corpus.make_clip(other, clips, max_seconds=10).fingerprint != tone.fingerprint
    with pytest.raises(corpus.SkipClip):
        corpus.make_clip(silent, clips, max_seconds=10)


def test_everyday_sources_caption_and_licence_their_files():
    flightgear = SOURCES["flightgear-data-base"]
    assert corpus.caption_from_path("usr/share/games/flightgear/Aircraft/c172p/Sounds/engine-crank.wav",
                                    flightgear) == "engine crank (aircraft)"
    assert corpus.caption_from_path("usr/share/games/flightgear/Sounds/engstart.wav", flightgear) == "engine start"
    assert re.search(flightgear.skip, "usr/share/games/flightgear/Sounds/tcas/female/climb.wav")
    rescue = SOURCES["searchandrescue-data"]
    assert corpus.caption_from_path("usr/share/games/searchandrescue/sounds/hh60/engine_inside.wav",
                                    rescue) == "helicopter engine inside"
    crossfire = SOURCES["crossfire-client"]
    stanzas = [(["cmake/*Vala.cmake"], "BSD-2-clause")]  # the one stanza its copyright file has
    assert corpus.source_licence(crossfire, "usr/share/games/crossfire/sounds/painb.wav", stanzas) == "CC-BY-3.0"
    assert corpus.source_licence(crossfire, "usr/share/games/crossfire/sounds/step_lth2.ogg", stanzas) == "public-domain"
    assert corpus.source_licence(crossfire, "usr/share/games/crossfire/sounds/bell.wav", stanzas) == "GPL-2+"
    xemacs = SOURCES["xemacs21-basesupport"]
    assert corpus.source_licence(xemacs, "usr/share/xemacs21/xemacs-packages/etc/sounds/cry.wav", stanzas) == "GPL"
    assert not re.search(xemacs.skip, "usr/share/xemacs21/xemacs-packages/etc/sounds/snore.au")
    assert re.search(xemacs.skip, "usr/share/xemacs21/xemacs-packages/etc/sounds/README.au")
    scratch = SOURCES["scratch"]
    assert corpus.caption_from_path("usr/share/scratch/Media/Sounds/Human/Sneeze-female.wav",
                                    scratch) == "sneeze female (human)"
    assert corpus.kind_of("usr/share/scratch/Media/Sounds/Animal/Rooster.wav", "rooster (animal)", 1.0,
                          scratch) == "animal"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("sox") is None,
                    reason="dpkg-deb builds the package, sox its sound")
def test_members_unpack_only_the_named_files_and_the_docs(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: big-data\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: Nobody <nobody@example.org>\nDescription: test\n")
    sounds, doc = root / "usr/share/big/Aircraft/Sounds", root / "usr/share/doc/big-data"
    sounds.mkdir(parents=True)
    doc.mkdir(parents=True)
    subprocess.run(["sox", "-n", "-r", "22050", str(sounds / "rotor.wav"), "synth", "1", "brownnoise"], check=True)
    (sounds / "rotor.xml").write_text("<sound/>")
    (root / "usr/share/big/scenery.bin").write_bytes(b"\0" * 1000)
    (doc / "copyright").write_text("Files: *\nCopyright: nobody\nLicense: GPL-2+\n")
    package = tmp_path / "big-data_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(package)], check=True, capture_output=True)

    corpus._extract_deb(package, tmp_path / "tree", ("*.wav",))
    unpacked = {p.relative_to(tmp_path / "tree").as_posix() for p in (tmp_path / "tree").rglob("*") if p.is_file()}
    assert unpacked == {"usr/share/big/Aircraft/Sounds/rotor.wav", "usr/share/doc/big-data/copyright"}
    assert corpus.licence_rules(tmp_path / "tree", "big-data") == [(["*"], "GPL-2+")]
    corpus._extract_deb(package, tmp_path / "whole", ())
    assert (tmp_path / "whole/usr/share/big/scenery.bin").exists()


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox makes the test file")
def test_sun_au_files_are_found_and_decoded(tmp_path):
    subprocess.run(["sox", "-n", "-r", "8000", "-e", "mu-law", str(tmp_path / "snore.au"), "synth", "1.5", "pinknoise"],
                   check=True)
    assert corpus._audio_files(tmp_path) == [tmp_path / "snore.au"]
    clip = corpus.make_clip(tmp_path / "snore.au", tmp_path / "clips", max_seconds=10)
    assert clip.duration == pytest.approx(1.5, abs=0.01)
    assert not corpus._wav_beside(tmp_path / "snore.au")
    subprocess.run(["sox", str(tmp_path / "snore.au"), "-b", "16", str(tmp_path / "snore.wav")], check=True)
    assert corpus._wav_beside(tmp_path / "snore.au") and not corpus._wav_beside(tmp_path / "snore.wav")


def test_coverage_counts_clips_per_group_by_caption_words(tmp_path, capsys):
    import json

    from training import coverage

    def row(audio, caption, seconds=6.0, licence="GPL-2+", source="scratch@1.4"):
        return {"audio": audio, "caption": caption, "duration": seconds, "licence": licence, "source": source}

    before = [row("a", "dog barking (animal)"), row("b", "door close")]
    after = before + [row("c", "sneeze female (human)", 3.0, "CC-BY-SA-3.0"), row("d", "helicopter engine inside"),
                      row("e", "rooster (animal)", 1.5), row("f", "laser shot")]
    assert coverage.groups_of("Helicopter rotor with rain in the background") == ["aircraft", "weather and nature"]
    assert coverage.groups_of("laser shot") == []
    counts = coverage.coverage(after)
    assert counts["animals"]["clips"] == 2 and counts["animals"]["seconds"] == 7.5
    assert counts["human vocal non-speech"]["licences"] == {"CC-BY-SA-3.0": 1}

    (tmp_path / "before.jsonl").write_text("".join(json.dumps(r) + "\n" for r in before))
    (tmp_path / "after.jsonl").write_text("".join(json.dumps(r) + "\n" for r in after))
    assert coverage.main([str(tmp_path / "after.jsonl"), "--before", str(tmp_path / "before.jsonl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| animals | 1 | 1 | 0.0 | GPL-2+ 1 | scratch 1 |" in lines  # only the rooster is new
    assert "| household | 1 | 0 | 0.0 |  |  |" in lines
    (tmp_path / "bad.jsonl").write_text('{"audio": "x"}\n')
    with pytest.raises(SystemExit) as stopped:
        coverage.main([str(tmp_path / "bad.jsonl")])
    assert stopped.value.code == 2 and "no 'caption' field" in capsys.readouterr().err


def test_drum_names_are_spelled_out_only_among_drums():
    game = Source("x")
    assert corpus.caption_from_path("usr/share/games/x/sounds/crash.wav", game) == "crash"
    assert corpus.caption_from_path("usr/share/games/x/sounds/liquids/splash1.ogg", game) == "splash (liquids)"
    assert corpus.caption_from_path("usr/share/games/x/sounds/road-ride.wav", game) == "road ride"
    assert corpus.caption_from_path("usr/share/games/x/sounds/drums/crash.wav", game) == "crash cymbal (drums)"
    assert corpus.caption_from_path("usr/share/games/x/sounds/perc_kick_hard.wav", game) == "percussion kick drum hard"
    assert corpus.phrase(["crash"], game) == "crash"
    assert corpus.phrase(["crash"], Source("kit", kind="drum")) == "crash cymbal"
    assert corpus.caption_from_path("usr/share/lmms/samples/drums/kick01.ogg", SOURCES["lmms-common"]) == "kick drum (drums)"


def qt_resource_file(files: dict[str, bytes], compressed: frozenset[str] = frozenset()) -> bytes:
    """A Qt binary resource file (format 3) with ``files`` in one folder, "sounds", laid out as
    Qt's rcc writes it; the names in ``compressed`` stored zlib-compressed, as rcc does."""
    import struct
    import zlib

    names, data, nodes = b"", b"", []

    def name(text):
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    nodes.append(struct.pack(">IHII", name(""), 2, 1, 1) + bytes(8))
    nodes.append(struct.pack(">IHII", name("sounds"), 2, len(files), 2) + bytes(8))
    for file_name, payload in files.items():
        flags = 1 if file_name in compressed else 0
        stored = struct.pack(">I", len(payload)) + zlib.compress(payload) if flags else payload
        nodes.append(struct.pack(">IHHHI", name(file_name), flags, 0, 0, len(data)) + bytes(8))
        data += struct.pack(">I", len(stored)) + stored
    tree = b"".join(nodes)
    header = 24
    return (b"qres" + struct.pack(">IIIII", 3, header, header + len(tree), header + len(tree) + len(data), 0)
            + tree + data + names)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox makes the sounds")
def test_qt_resource_files_give_their_sounds(tmp_path):
    subprocess.run(["sox", "-n", "-r", "22050", str(tmp_path / "a.wav"), "synth", "1", "sine", "300"], check=True)
    subprocess.run(["sox", "-n", "-r", "22050", str(tmp_path / "b.wav"), "synth", "1", "pinknoise"], check=True)
    sounds = {"dog.wav": (tmp_path / "a.wav").read_bytes(), "rain_garden.wav": (tmp_path / "b.wav").read_bytes(),
              "icon.svg": b"<svg/>"}
    resource = qt_resource_file(sounds, compressed=frozenset({"rain_garden.wav"}))
    assert dict(corpus.qt_resources(resource)) == {f"/sounds/{n}": payload for n, payload in sounds.items()}
    archive = tmp_path / "tree/usr/share/gcompris-qt/rcc/farm.rcc"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(resource)
    found = corpus.open_archives(SOURCES["gcompris-qt-data"], tmp_path / "tree", tmp_path / "cache")
    assert sorted(origin for _, origin in found) == ["usr/share/gcompris-qt/rcc/farm.rcc/sounds/dog.wav",
                                                      "usr/share/gcompris-qt/rcc/farm.rcc/sounds/rain_garden.wav"]
    assert all(path.read_bytes() == sounds[path.name] for path, _ in found)
    with pytest.raises(ValueError, match="not a Qt resource"):
        list(corpus.qt_resources(b"PK\x03\x04"))


def test_sampling_and_noncommercial_licences_are_refused():
    assert corpus.refused("CC-sampling-plus-1.0") and corpus.refused("CC-BY-NC-SA-3.0")
    assert corpus.refused("Creative Commons NonCommercial")
    assert not any(corpus.refused(licence) for licence in ("CC-BY-SA-3.0", "GPL-2+", "free-art", "CC0-1.0", "unknown"))
