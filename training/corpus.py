"""Build the CLAP training corpus from openly licensed audio in package registries.

    python -m training.corpus --out DIR [--sources a,b,...] [--max-seconds 10]

Downloads each source with its registry's own client into DIR/cache (reruns reuse it), opens
the archives where games keep their sounds, renders labelled General MIDI notes with
fluidsynth, and writes every distinct, non-silent sound as a mono Ogg Vorbis clip under
DIR/clips with a caption, a kind, its package, licence and origin in DIR/manifest.jsonl, and
counts in DIR/summary.json.

Clips are 32 kHz: the rate PANN/HTSAT-style audio towers are built for; 16 kHz of bandwidth
keeps everything that tells sounds apart, most sources are 22.05 or 44.1 kHz anyway, and the
corpus is a quarter smaller than at 44.1 kHz. Vorbis, because libsndfile writes it (Opus
cannot be 32 kHz) and it keeps the corpus to a few hundred MB, so it travels in 64 MiB chunks.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import av
import numpy as np
import soundfile

from encoders.audio import AUDIO_EXTENSIONS
from training import sources as rules
from training.sources import Source

log = logging.getLogger(__name__)

SAMPLE_RATE = 32_000
# What clapdex reads, and WavPack and Sun/NeXT .au, which some packages ship (decoded through FFmpeg).
AUDIO_SUFFIXES = frozenset(AUDIO_EXTENSIONS) | {".wv", ".au"}
SILENCE_DB = -50.0  # below the clip's peak: trimmed at both ends
MIN_PEAK = 10 ** (-50 / 20)  # a clip quieter than -50 dBFS throughout is near-empty
MIN_SECONDS = 0.05


# ---------------------------------------------------------------- fetching

def fetch(source: Source, cache: Path) -> tuple[Path, str]:
    """Download and unpack ``source`` under ``cache``; returns its file tree and version."""
    tree = cache / "tree" / source.name
    if source.registry == "deb":
        package = _download_deb(source.name, cache / "deb")
        version = unquote(package.name.split("_")[1])
        _unpack(tree, lambda into: _extract_deb(package, into, source.members))
    elif source.registry == "npm":
        version = source.version
        packed = cache / "npm"
        packed.mkdir(parents=True, exist_ok=True)
        if not any(packed.glob(f"{source.name}-{version}.tgz")):
            subprocess.run(["npm", "pack", f"{source.name}@{version}", "--pack-destination", str(packed)],
                           check=True, capture_output=True)
        _unpack(tree, lambda into: _extract_tar(packed / f"{source.name}-{version}.tgz", into))
    elif source.registry == "pypi":
        version = source.version
        wheels = cache / "pypi"
        found = [p for p in wheels.glob("*") if _normalise(p.name).startswith(_normalise(f"{source.name}-{version}"))]
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
                            f"{source.name}=={version}"], check=True)
            found = [p for p in wheels.glob("*") if _normalise(p.name).startswith(_normalise(f"{source.name}-{version}"))]
        archive = found[0]
        _unpack(tree, lambda into: zipfile.ZipFile(archive).extractall(into) if archive.suffix == ".whl"
                else _extract_tar(archive, into))
    else:
        raise ValueError(f"{source.name}: unknown registry {source.registry!r}")
    return tree, version


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _download_deb(package: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    found = sorted(into.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "-q", package], cwd=into, check=True, capture_output=True)
        found = sorted(into.glob(f"{package}_*.deb"))
    return found[-1]


def _extract_deb(package: Path, into: Path, members: tuple[str, ...]) -> None:
    """The whole package, or with ``members`` only the files those globs name and the package's
    documentation (its copyright file names the licences): for packages of gigabytes that
    keep their few sounds in one folder."""
    if not members:
        subprocess.run(["dpkg-deb", "-x", str(package), str(into)], check=True)
        return
    into.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(package)], stdout=subprocess.PIPE) as dpkg:
        subprocess.run(["tar", "-x", "-C", str(into), "--wildcards", "--no-anchored", *members, "usr/share/doc/*"],
                       stdin=dpkg.stdout, check=True)
    if dpkg.returncode:
        raise subprocess.CalledProcessError(dpkg.returncode, dpkg.args)


def _unpack(tree: Path, unpack) -> None:
    """Unpack into ``tree`` once: a marker written last tells a finished tree from an interrupted one."""
    marker = tree / ".unpacked"
    if marker.exists():
        return
    tree.mkdir(parents=True, exist_ok=True)
    unpack(tree)
    marker.touch()


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def open_archives(source: Source, tree: Path, cache: Path) -> list[tuple[Path, str]]:
    """Audio members of the zip archives (pk3, wz, zip) inside the package, as (file, origin)."""
    found = []
    for pattern in source.archives:
        for archive in sorted(tree.glob(pattern)):
            relative = archive.relative_to(tree).as_posix()
            into = cache / "inner" / source.name / relative
            if not (into / ".unpacked").exists():
                try:
                    _open_archive(archive, into, cache)
                except (zipfile.BadZipFile, subprocess.CalledProcessError, ValueError, struct.error) as error:
                    log.warning("%s: %s", archive, error)
                    continue
                (into / ".unpacked").touch()
            found += [(path, f"{relative}/{path.relative_to(into).as_posix()}") for path in _audio_files(into)]
    return found


def _open_archive(archive: Path, into: Path, cache: Path) -> None:
    if archive.suffix == ".ocg":
        # OpenClonk's C4Group format: only its own c4group tool (Debian package openclonk) opens it;
        # it turns the group file, nested groups too, into a folder of the same name.
        c4group = fetch(Source("openclonk"), cache)[0] / "usr/bin/c4group"
        shutil.rmtree(into, ignore_errors=True)
        into.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, into)
        subprocess.run([str(c4group), str(into), "-x"], check=True, capture_output=True)
        return
    into.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".rcc":
        for name, payload in qt_resources(archive.read_bytes()):
            if Path(name).suffix.lower() in AUDIO_SUFFIXES and ".." not in name.split("/"):
                target = into / name.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(payload)
        return
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            if Path(member).suffix.lower() in AUDIO_SUFFIXES and ".." not in member:
                bundle.extract(member, into)


def qt_resources(data: bytes):
    """(path, bytes) of each file in a Qt binary resource file (``rcc``, formats 1-3: GCompris
    keeps its sounds in them). Layout, all big-endian: "qres", the format, then the offsets of the
    node tree, the file data and the names. A node is a name offset and flags, then for a folder
    its child count and first child, for a file its locale and data offset (and from format 2 a
    modification time). Data is a length and the bytes, zlib after a 4-byte size when the
    node's flag 1 is set; zstd (flag 4) is refused, as no library here reads it."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    if not 1 <= version <= 3:
        raise ValueError(f"Qt resource format {version} is not known")
    node_size = 22 if version >= 2 else 14

    def name(offset: int) -> str:
        length, = struct.unpack(">H", data[names + offset:names + offset + 2])
        return data[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    folders = [(0, "")]  # the root folder is node 0, its name empty
    while folders:
        index, path = folders.pop()
        at = tree + index * node_size
        count, first = struct.unpack(">II", data[at + 6:at + 14])
        for child in range(first, first + count):
            at = tree + child * node_size
            name_offset, flags = struct.unpack(">IH", data[at:at + 6])
            child_path = f"{path}/{name(name_offset)}"
            if flags & 2:
                folders.append((child, child_path))
                continue
            offset, = struct.unpack(">I", data[at + 10:at + 14])
            length, = struct.unpack(">I", data[payload + offset:payload + offset + 4])
            blob = data[payload + offset + 4:payload + offset + 4 + length]
            if flags & 4:
                raise ValueError(f"{child_path} is zstd-compressed")
            yield child_path, zlib.decompress(blob[4:]) if flags & 1 else blob


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


# ---------------------------------------------------------------- licences

# Free-text copyright files name licences in prose; the first of these found wins.
LICENCE_PROSE = (
    (r"creative commons attribution[- ]share[- ]?alike[^\n]{0,40}?4\.0|CC[- ]BY[- ]SA[- ]4", "CC-BY-SA-4.0"),
    (r"creative commons attribution[- ]share[- ]?alike|CC[- ]BY[- ]SA", "CC-BY-SA-3.0"),
    (r"creative commons attribution|CC[- ]BY\b", "CC-BY-3.0"),
    (r"CC0|creative commons zero|public domain", "CC0-1.0"),
    (r"GNU (General )?Public License,? version 3|GPL-?3|GPLv3", "GPL-3+"),
    (r"GNU (General )?Public License|GPL", "GPL-2+"),
    (r"MIT License|Expat|Permission is hereby granted, free of charge", "MIT"),
)


def licence_rules(tree: Path, package: str) -> list[tuple[list[str], str]]:
    """(file patterns, licence) stanzas from the package's copyright file, in file order."""
    copyright_files = sorted(tree.glob("usr/share/doc/*/copyright"))
    own = [p for p in copyright_files if p.parent.name == package]
    if not (own or copyright_files):
        for candidate in (tree / "package.json", *tree.glob("*.dist-info/METADATA"), *tree.glob("package/package.json")):
            if candidate.exists():
                return [(["*"], _licence_from_metadata(candidate.read_text(errors="replace")))]
        return [(["*"], "unknown")]
    text = (own or copyright_files)[0].read_text(errors="replace")
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", block, re.M)
        licence = re.search(r"^License:[ \t]*(\S[^\n]*)", block, re.M)
        if files and licence:
            stanzas.append((files.group(1).split(), licence.group(1).strip()))
    if not stanzas:
        stanzas = [(["*"], next((spdx for pattern, spdx in LICENCE_PROSE if re.search(pattern, text, re.I)), "unknown"))]
    return stanzas


def _licence_from_metadata(text: str) -> str:
    found = re.search(r'"license"\s*:\s*"([^"]+)"|^License(?:-Expression)?:\s*(\S.*)$', text, re.M)
    if found:
        return (found.group(1) or found.group(2)).strip()
    return next((spdx for pattern, spdx in LICENCE_PROSE if re.search(pattern, text, re.I)), "unknown")


# Licences that forbid commercial use or allow only sampling (Creative Commons Sampling Plus,
# NonCommercial): not open enough for a model anyone may use, so such files are left out.
REFUSED_LICENCE = re.compile(r"sampling|\bNC\b|-NC-|non-?commercial", re.I)


def refused(licence: str) -> bool:
    return bool(REFUSED_LICENCE.search(licence))


def source_licence(source: Source, origin: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The licence of ``origin``: the source's own rule for it where it has one, else the copyright file's."""
    for pattern, licence in source.licences:
        if re.search(pattern, origin):
            return licence
    return licence_of(origin, stanzas)


def licence_of(origin: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The licence of the last stanza matching ``origin`` (DEP-5 order), patterns tried on every path tail.

    Copyright files name source-tree paths, not installed ones, and name a bundled archive or
    drum kit (``drumkits/X.h2drumkit``) where the package installs a folder: both match as folders.
    """
    parts = origin.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    chosen = "unknown"
    for patterns, licence in stanzas:
        for pattern in patterns:
            if pattern.startswith("debian/"):
                continue
            folder = re.sub(r"\.(h2drumkit|tar\.gz|zip)$", "", pattern)
            if any(fnmatch.fnmatch(tail, pattern) or fnmatch.fnmatch(tail, folder + "/*") for tail in tails):
                chosen = licence
    return chosen


# ---------------------------------------------------------------- captions

def words_of(name: str) -> list[str]:
    """Lower-case words of a file or folder name: camelCase, separators and digits split."""
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-zA-Z]+", name.lower()) if w]


def phrase(words: list[str], source: Source, filler: frozenset[str] = frozenset(), drums: bool | None = None) -> str:
    """Words with filler, package names and one-letter leftovers dropped and abbreviations spelled
    out; drum names too (``rules.DRUM_ABBREVIATIONS``) with ``drums``, by default for drum and
    instrument sources."""
    if drums is None:
        drums = source.kind in ("drum", "instrument")
    own_words = dict(rules.ABBREVIATIONS, **(rules.DRUM_ABBREVIATIONS if drums else {}), **dict(source.words))
    package_words = set(words_of(source.name))
    kept: list[str] = []
    for word in words:
        if word in rules.FILLER or word in package_words or word in source.filler or word in filler:
            continue
        if len(word) == 1 and word not in own_words:
            continue
        for spelled in own_words.get(word, word).split():
            if not kept or kept[-1] != spelled:
                kept.append(spelled)
    return " ".join(kept)


def caption_from_path(origin: str, source: Source) -> str:
    """A short phrase from the file name, with up to ``source.context`` nearest informative folders as context."""
    parts = origin.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    for pattern, template in source.captions:
        found = re.search(pattern, origin, re.I)
        if found:
            # Groups are names from paths ("EvilConfirm", "war_elephant"): spelled out as words first.
            return re.sub(r"\\(\d)", lambda g: phrase(words_of(found.group(int(g.group(1))) or ""), source), template)
    # A drum word in the path (a folder, or the file name beside the word itself) makes "crash" a cymbal.
    drums = source.kind in ("drum", "instrument") or any(set(words_of(part)) & rules.DRUM_CONTEXT for part in parts)
    name = phrase(words_of(stem), source, drums=drums)
    context: list[str] = []
    for folder in reversed(parts[:-1]):
        if len(context) >= source.context:
            break
        folder_phrase = phrase(words_of(folder), source, drums=drums)
        if folder_phrase and folder_phrase not in name and all(folder_phrase not in c for c in context):
            context.append(folder_phrase)
    if not name:
        return ", ".join(context)
    return f"{name} ({', '.join(context)})" if context else name


def described_caption(description: Path, origin: str, source: Source) -> str:
    """Tux Paint stamps: the stamp's own English description, with the folders as context."""
    first = description.read_text(errors="replace").splitlines()[0].strip().rstrip(".")
    caption = caption_from_path(origin, source)
    context = caption[caption.find("("):] if "(" in caption else ""
    return f"{first[0].lower()}{first[1:]} {context}".strip() if first else caption


def kind_of(origin: str, caption: str, duration: float, source: Source) -> str:
    for pattern, kind in source.kinds:
        if re.search(pattern, origin, re.I):
            return kind
    if re.search(r"(^|/)music(/|$)", origin, re.I):
        return "music"
    words = set(re.findall(r"[a-z-]+", caption.lower()))
    if source.kind in ("drum", "instrument", "speech", "music"):
        return source.kind
    if words & rules.ANIMAL_WORDS:
        return "animal"
    if words & rules.AMBIENCE_WORDS and duration >= 3.0:
        return "ambience"
    if source.kind == "effect" and words & rules.UI_WORDS and duration < 3.0:
        return "ui"
    return source.kind


def hydrogen_captions(tree: Path) -> dict[str, str]:
    """Sample path -> caption from each drum kit's drumkit.xml, which names the instrument each sample plays."""
    captions = {}
    drum_source = Source("hydrogen-drumkits", filler=rules.GEAR_WORDS)
    for kit in tree.rglob("drumkit.xml"):
        root = ElementTree.parse(kit).getroot()
        namespace = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
        kit_words = set(words_of(kit.parent.name))
        electronic = bool(re.search(r"electr|808|909|synth|techno|hard", kit.parent.name, re.I))
        for instrument in root.iter(f"{namespace}instrument"):
            name = instrument.findtext(f"{namespace}name") or ""
            for layer in instrument.iter(f"{namespace}filename"):
                sample = kit.parent / (layer.text or "")
                words = [w for w in words_of(name) if w not in kit_words] or words_of(sample.stem)
                caption = phrase(words, drum_source, drums=True)
                if not caption:
                    continue
                if not set(caption.split()) & rules.DRUM_WORDS:
                    caption += " (drum kit)"
                if electronic:
                    caption = f"electronic {caption}"
                captions[sample.relative_to(tree).as_posix()] = caption
    return captions


CHORD = re.compile(r"^(?P<root>[A-G])(?P<accidental>sharp|flat|b|#)? ?(?P<quality>major|minor)(?P<extension>7b5|7|maj7)?"
                   r"(?:_(?P<stroke>UP|DOWN))?", re.I)


def guitar_strum_caption(stem: str) -> str:
    found = CHORD.match(stem)
    if not found:
        return ""
    accidental = {"sharp": " sharp", "#": " sharp", "flat": " flat", "b": " flat"}.get((found["accidental"] or "").lower(), "")
    extension = {"7b5": " seventh flat five", "7": " seventh", "maj7": " major seventh"}.get((found["extension"] or "").lower(), "")
    stroke = {"up": ", upstroke", "down": ", downstroke"}.get((found["stroke"] or "").lower(), "")
    return f"acoustic guitar strumming a {found['root']}{accidental} {found['quality'].lower()}{extension} chord{stroke}"


# ---------------------------------------------------------------- audio

@dataclass(frozen=True)
class Clip:
    fingerprint: str
    duration: float


class SkipClip(Exception):
    pass


def decode(path: Path, max_seconds: float) -> np.ndarray:
    """Mono float32 at SAMPLE_RATE, at most a little more than ``max_seconds`` past leading silence.

    FFmpeg's resampler (through PyAV) costs the same for any pair of rates: its polyphase filter
    bank is capped at 1024 phases, so odd rates like 44,101 or 39,063 Hz stay cheap, unlike
    torchaudio's exact-ratio filters; it also reads every container here, WavPack included.
    """
    budget = int((max_seconds + 30) * SAMPLE_RATE)  # room for leading silence, without decoding hour-long tracks
    chunks, total = [], 0
    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                total += chunks[-1].size
            if total >= budget:
                break
        else:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise SkipClip("no audio")
    return np.nan_to_num(np.concatenate(chunks), nan=0.0, posinf=0.0, neginf=0.0)


def trim(samples: np.ndarray, max_seconds: float) -> np.ndarray:
    """Silence cut from both ends, cropped to ``max_seconds`` with a short fade where the crop cuts."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < MIN_PEAK:
        raise SkipClip("silent")
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (SILENCE_DB / 20))
    samples = samples[loud[0]:loud[-1] + 1]
    limit = int(max_seconds * SAMPLE_RATE)
    if samples.size > limit:
        samples = samples[:limit].copy()
        fade = int(0.05 * SAMPLE_RATE)
        samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    if samples.size < MIN_SECONDS * SAMPLE_RATE:
        raise SkipClip("too short")
    return samples


def fingerprint(samples: np.ndarray) -> str:
    """A hash of a coarse, gain-free spectrogram of the first 3 s: equal for the same recording
    re-encoded, resampled or re-levelled, as games ship it, and different for different sounds."""
    frame = 2048
    head = samples[: 3 * SAMPLE_RATE]
    frames = max(1, head.size // frame)
    padded = np.zeros(frames * frame, np.float32)
    padded[: min(head.size, padded.size)] = head[: padded.size]
    spectrum = np.abs(np.fft.rfft(padded.reshape(frames, frame) * np.hanning(frame), axis=1)) ** 2
    edges = np.unique(np.geomspace(4, frame // 2, 13).astype(int))
    bands = np.add.reduceat(spectrum, edges, axis=1)[:, :-1]
    level = 10 * np.log10(bands / (bands.max() + 1e-12) + 1e-6)
    coarse = np.clip(np.round(level / 8), -8, 0).astype(np.int8)
    length = int(round(2 * np.log2(samples.size / SAMPLE_RATE + 0.01)))
    return hashlib.blake2b(coarse.tobytes() + struct.pack("i", length), digest_size=10).hexdigest()


def make_clip(path: Path, clips: Path, max_seconds: float) -> Clip:
    """Decode, trim and fingerprint ``path``; write it as clips/<fp[:2]>/<fp>.ogg unless already there."""
    samples = trim(decode(path, max_seconds), max_seconds)
    key = fingerprint(samples)
    target = clips / key[:2] / f"{key}.ogg"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # A rare hot peak from the source would clip in Vorbis; normalise only those down to -1 dBFS.
        peak = float(np.abs(samples).max())
        if peak > 0.89:
            samples = samples * (0.89 / peak)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".ogg", delete=False) as partial:
            soundfile.write(partial, samples, SAMPLE_RATE, format="OGG", subtype="VORBIS")
        os.replace(partial.name, target)
    return Clip(key, round(samples.size / SAMPLE_RATE, 3))


def _make_clip_job(job: tuple[str, str, float]) -> tuple[str, dict]:
    path, clips, max_seconds = job
    try:
        clip = make_clip(Path(path), Path(clips), max_seconds)
        return path, {"fingerprint": clip.fingerprint, "duration": clip.duration}
    except SkipClip as reason:
        return path, {"skip": str(reason)}
    except Exception as error:  # a bad file is logged and skipped, never the end of the run
        log.debug("%s: skipped", path, exc_info=True)  # the reason alone is logged as the skip
        return path, {"skip": f"error: {type(error).__name__}: {error}"}


# ---------------------------------------------------------------- rendered instruments

def render_general_midi(tree: Path, into: Path) -> list[tuple[Path, str, str, str]]:
    """Render General MIDI notes with fluidsynth; returns (wav, origin, caption, kind) per note."""
    soundfont = next(tree.rglob("FluidR3_GM.sf2"))
    slots = _general_midi_slots()
    rendered = into / "general-midi.wav"
    if not rendered.exists():
        into.mkdir(parents=True, exist_ok=True)
        song = into / "general-midi.mid"
        song.write_bytes(_midi_file(slots))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SAMPLE_RATE), "-F", str(rendered),
                        str(soundfont), str(song)], check=True, capture_output=True)
    audio, rate = soundfile.read(rendered, dtype="float32", always_2d=True)
    notes = []
    for index, (origin, caption, kind, *_notes) in enumerate(slots):
        path = into / f"{index:04d}.wav"
        if not path.exists():
            start = int(index * SLOT_SECONDS * rate)
            soundfile.write(path, audio[start:start + int(SLOT_SECONDS * rate)].mean(axis=1), rate)
        notes.append((path, origin, caption, kind))
    return notes


SLOT_SECONDS = 5.0
TICKS_PER_SECOND = 960  # 480 ticks a quarter note at the default 120 bpm


def _general_midi_slots() -> list[tuple]:
    """(origin, caption, kind, channel, program, [(start s, length s, key, velocity)]) per rendered clip."""
    slots = []
    for number, instrument in enumerate(rules.GM_PROGRAMS, start=1):
        if number in rules.GM_EFFECT_KINDS:
            slots.append((f"program {number}", instrument, rules.GM_EFFECT_KINDS[number], 0, number - 1,
                          [(0.0, 3.5, 60, 100)]))
            continue
        low = 36 if re.search(r"bass|tuba|contrabass|bassoon|cello|timpani|baritone", instrument) else 48
        for register, key in (("low", low), ("middle", low + 12), ("high", low + 24), ("very high", low + 36)):
            name = f"{rules.NOTE_NAMES[key % 12]}{key // 12 - 1}"
            for loudness, velocity in (("", 100), (" softly", 45)):
                slots.append((f"program {number} key {key} velocity {velocity}",
                              f"{instrument} playing a single {register} note ({name}){loudness}",
                              "instrument", 0, number - 1, [(0.0, 1.5, key, velocity)]))
        arpeggio = [(i * 0.4, 0.45, low + 12 + step, 90) for i, step in enumerate((0, 4, 7, 12, 7, 4, 0))]
        slots.append((f"program {number} arpeggio", f"{instrument} playing a short melody up and down a major chord",
                      "instrument", 0, number - 1, arpeggio))
        # Compact 2: a held chord and a quick repeated note, two more ways each instrument sounds.
        chord = [(0.0, 2.0, low + 12 + step, 80) for step in (0, 4, 7)]
        slots.append((f"program {number} chord", f"{instrument} playing a sustained major chord",
                      "instrument", 0, number - 1, chord))
        repeated = [(i * 0.2, 0.15, low + 19, 75) for i in range(8)]
        slots.append((f"program {number} repeated", f"{instrument} playing one note repeated quickly",
                      "instrument", 0, number - 1, repeated))
    for key, drum in rules.GM_DRUMS.items():
        slots.append((f"percussion key {key}", f"{drum} hit", "drum", 9, 0, [(0.0, 0.5, key, 110)]))
        slots.append((f"percussion key {key} soft", f"{drum} hit softly", "drum", 9, 0, [(0.0, 0.5, key, 50)]))
        # Compact 2: a short roll, eight hits getting louder.
        roll = [(i * 0.12, 0.1, key, 40 + 10 * i) for i in range(8)]
        slots.append((f"percussion key {key} roll", f"a quick roll on the {drum}", "drum", 9, 0, roll))
    return slots


def _midi_file(slots: list[tuple]) -> bytes:
    """A type-0 standard MIDI file playing each slot SLOT_SECONDS after the previous one."""
    events = []  # (tick, order, bytes): note-offs sort before note-ons at the same tick
    for index, (_origin, _caption, _kind, channel, program, notes) in enumerate(slots):
        start = index * SLOT_SECONDS
        events.append((round(start * TICKS_PER_SECOND), 1, bytes([0xC0 | channel, program])))
        for offset, length, key, velocity in notes:
            events.append((round((start + offset) * TICKS_PER_SECOND), 2, bytes([0x90 | channel, key, velocity])))
            events.append((round((start + offset + length) * TICKS_PER_SECOND), 0, bytes([0x80 | channel, key, 0])))
    end = round(len(slots) * SLOT_SECONDS * TICKS_PER_SECOND)
    track, now = bytearray(), 0
    for tick, _order, message in sorted(events) + [(end, 3, b"\xff\x2f\x00")]:
        track += _variable_length(tick - now) + message
        now = tick
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def _variable_length(value: int) -> bytes:
    groups = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        groups.append((value & 0x7F) | 0x80)
    return bytes(reversed(groups))


# ---------------------------------------------------------------- the corpus

@dataclass
class Candidate:
    path: Path
    origin: str
    caption: str
    source: Source
    version: str
    licence: str
    kind: str = ""  # fixed by the source; empty: decided from caption and duration


def candidates(source: Source, cache: Path) -> list[Candidate]:
    """Every audio file of ``source`` with its caption, before decoding."""
    tree, version = fetch(source, cache)
    stanzas = licence_rules(tree, source.name)
    if source.name == "fluid-soundfont-gm":
        return [Candidate(path, origin, caption, source, version, source_licence(source, origin, stanzas), kind)
                for path, origin, caption, kind in render_general_midi(tree, cache / "render" / source.name)]
    files = [(path, path.relative_to(tree).as_posix()) for path in _audio_files(tree)]
    files += open_archives(source, tree, cache)
    special = hydrogen_captions(tree) if source.name == "hydrogen-drumkits" else {}
    found = []
    for path, origin in files:
        if source.skip and re.search(source.skip, origin, re.I):
            continue
        if _wav_beside(path):
            continue
        if origin in special:
            caption = special[origin]
        elif source.name == "hydrogen-drumkits-effects":
            caption = guitar_strum_caption(path.stem)
        elif source.name == "tuxpaint-stamps-default" and path.with_suffix(".txt").exists():
            # Its stamps' descriptions; elsewhere a .txt beside a sound is a licence note (redeclipse-data).
            caption = described_caption(path.with_suffix(".txt"), origin, source)
        else:
            caption = caption_from_path(origin, source)
        licence = source_licence(source, origin, stanzas)
        if refused(licence):
            log.info("%s: left out, licence %s", origin, licence)
            continue
        if caption:
            found.append(Candidate(path, origin, caption, source, version, licence))
    return found


def _wav_beside(path: Path) -> bool:
    """An .au beside a .wav of the same name: the same sound, 8-bit, so its fingerprint differs
    and the deduplication would keep both."""
    return path.suffix.lower() == ".au" and path.with_suffix(".wav").exists()


def build(out: Path, selected: list[Source], max_seconds: float, workers: int) -> dict:
    cache, clips = out / "cache", out / "clips"
    decoded_cache = cache / f"decoded-{SAMPLE_RATE}-{max_seconds:g}s.json"
    decoded = json.loads(decoded_cache.read_text()) if decoded_cache.exists() else {}
    found: list[Candidate] = []
    for source in selected:
        try:
            found += candidates(source, cache)
        except (subprocess.CalledProcessError, OSError, StopIteration, ElementTree.ParseError) as error:
            log.error("%s: skipped: %s", source.name, getattr(error, "stderr", None) or error)
    jobs = [(str(c.path), str(clips), max_seconds) for c in found
            if str(c.path) not in decoded or "fingerprint" in decoded[str(c.path)]
            and not (clips / decoded[str(c.path)]["fingerprint"][:2] / f"{decoded[str(c.path)]['fingerprint']}.ogg").exists()]
    log.info("%d candidate files, %d to decode", len(found), len(jobs))
    with multiprocessing.Pool(workers) as pool:
        for done, (path, result) in enumerate(pool.imap_unordered(_make_clip_job, jobs, chunksize=8), start=1):
            decoded[path] = result
            if result.get("skip", "").startswith("error"):
                log.warning("%s: %s", path, result["skip"])
            if done % 1000 == 0:
                log.info("decoded %d/%d", done, len(jobs))
                decoded_cache.write_text(json.dumps(decoded))
    decoded_cache.write_text(json.dumps(decoded))

    kept, seen, skipped = [], set(), collections.Counter()
    for candidate in found:
        result = decoded.get(str(candidate.path), {"skip": "not decoded"})
        if "skip" in result:
            skipped[result["skip"].split(":")[0]] += 1
            continue
        if result["fingerprint"] in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(result["fingerprint"])
        kind = candidate.kind or kind_of(candidate.origin, candidate.caption, result["duration"], candidate.source)
        kept.append({
            "audio": f"clips/{result['fingerprint'][:2]}/{result['fingerprint']}.ogg",
            "caption": candidate.caption,
            "kind": kind,
            "source": f"{candidate.source.name}@{candidate.version}",
            "licence": candidate.licence,
            "origin": candidate.origin,
            "duration": result["duration"],
        })
    with open(out / "manifest.jsonl", "w") as manifest:
        for row in kept:
            manifest.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = summarise(kept, out, skipped)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarise(kept: list[dict], out: Path, skipped: collections.Counter) -> dict:
    def counts(key):
        return dict(collections.Counter(row[key] for row in kept).most_common())

    words = collections.Counter(min(len(row["caption"].split()), 10) for row in kept)
    return {
        "clips": len(kept),
        "hours": round(sum(row["duration"] for row in kept) / 3600, 2),
        "bytes": sum((out / row["audio"]).stat().st_size for row in kept),
        "sample_rate": SAMPLE_RATE,
        "per_source": counts("source"),
        "per_kind": counts("kind"),
        "per_licence": counts("licence"),
        "caption_words": {("10+" if n == 10 else str(n)): words[n] for n in sorted(words)},
        "captions_of_two_words_or_fewer": sum(words[n] for n in (1, 2)),
        "skipped": dict(skipped.most_common()),
    }


def long_windows(out: Path, max_seconds: float, limit_seconds: float, window_seconds: float = 5.0,
                 workers: int = 2) -> list[dict]:
    """More clips from the long files: a clip the build cropped at ``max_seconds`` (ambiences, music,
    long effects) is decoded again up to ``limit_seconds`` and what lies past the crop is cut into
    back-to-back ``window_seconds`` windows, each a clip of its own with the file's caption, kind,
    source and licence (a window shorter than half a window is dropped). Appended to manifest.jsonl
    (``window`` = its start in seconds); reruns add nothing twice."""
    manifest = out / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    decoded = json.loads((out / "cache" / f"decoded-{SAMPLE_RATE}-{max_seconds:g}s.json").read_text())
    by_fingerprint = {v["fingerprint"]: path for path, v in decoded.items() if "fingerprint" in v}
    have = {row["audio"] for row in rows}
    long_rows = [row for row in rows if "window" not in row and row["duration"] >= max_seconds - 0.01]
    jobs = [(by_fingerprint[Path(row["audio"]).stem], str(out / "clips"), max_seconds, limit_seconds, window_seconds)
            for row in long_rows if Path(row["audio"]).stem in by_fingerprint]
    added = []
    with multiprocessing.Pool(workers) as pool:
        for row, windows in zip(long_rows, pool.imap(_long_windows_job, jobs, chunksize=2)):
            for start, clip in windows:
                audio = f"clips/{clip.fingerprint[:2]}/{clip.fingerprint}.ogg"
                if audio not in have:
                    have.add(audio)
                    added.append({**row, "audio": audio, "duration": clip.duration, "window": start})
    with open(manifest, "a") as file:
        for row in added:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows += added
    (out / "summary.json").write_text(json.dumps(summarise(rows, out, collections.Counter()), indent=2))
    return added


def _long_windows_job(job) -> list[tuple[float, Clip]]:
    path, clips, max_seconds, limit_seconds, window_seconds = job
    try:
        samples = trim(decode(Path(path), limit_seconds), limit_seconds)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the rest
        log.warning("%s: %s", path, error, exc_info=True)
        return []
    size, first = int(window_seconds * SAMPLE_RATE), int(max_seconds * SAMPLE_RATE)
    windows = []
    for start in range(first, samples.size - size // 2 + 1, size):
        window = samples[start:start + size]
        if float(np.abs(window).max()) < MIN_PEAK:
            continue
        key = fingerprint(window) + f"w{start // SAMPLE_RATE}"
        target = Path(clips) / key[:2] / f"{key}.ogg"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            peak = float(np.abs(window).max())
            soundfile.write(target, window * (0.89 / peak) if peak > 0.89 else window, SAMPLE_RATE,
                            format="OGG", subtype="VORBIS")
        windows.append((start / SAMPLE_RATE, Clip(key, round(window.size / SAMPLE_RATE, 3))))
    return windows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="corpus folder: clips/, manifest.jsonl, summary.json, cache/")
    parser.add_argument("--sources", help="comma-separated package names (default: all, in priority order)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="crop every clip to this length")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument("--long-windows", type=float, metavar="SECONDS",
                        help="only add windows of the long files up to SECONDS to an existing corpus")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    selected = list(rules.SOURCES)
    if args.sources:
        wanted = args.sources.split(",")
        unknown = set(wanted) - {s.name for s in rules.SOURCES}
        if unknown & rules.RESERVED_FOR_EVALUATION:
            parser.error(f"reserved for evaluation, never for training: {', '.join(sorted(unknown & rules.RESERVED_FOR_EVALUATION))}")
        if unknown:
            parser.error(f"unknown sources: {', '.join(sorted(unknown))}")
        selected = [s for s in rules.SOURCES if s.name in wanted]
    if args.long_windows:
        added = long_windows(args.out, args.max_seconds, args.long_windows, workers=args.workers)
        print(f"{len(added)} windows, {sum(row['duration'] for row in added) / 3600:.2f} h added")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    summary = build(args.out, selected, args.max_seconds, args.workers)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
