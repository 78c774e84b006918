"""What a file says about itself without decoding it: header, tags, BWF chunks, UCS name.

Read during the scan, so a file is findable by name and metadata before it is embedded.
Everything here is best effort: a file whose tags cannot be read is still indexed.

- header: mutagen's for Ogg Vorbis (the same numbers; libsndfile's open of an Ogg file sets up
  a whole Vorbis decoder, half of what the scan spent on such a file), libsndfile's for the
  rest, else mutagen's (M4A, AAC).
- tags: ID3 (MP3, WAV, AIFF), Vorbis comments (Ogg, Opus, FLAC) and MP4 atoms, via mutagen.
- BWF ``bext`` (description, originator) and ``iXML``: mutagen does not read them, so the
  RIFF chunks are walked here, seeking past the audio.
- UCS: ``CatID(-UserCategory)_FXName_CreatorID_SourceID(_UserData)`` file names.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import BinaryIO

import mutagen
import soundfile
from mutagen.oggvorbis import OggVorbis

from encoders.audio import SUBTYPE_BITS
from search.catalog import Metadata

log = logging.getLogger(__name__)

# Tag names per container that mean the same thing; ID3 frames are matched on their id.
_TAG_NAMES = {
    "title": ("TIT2", "title", "\xa9nam"),
    "artist": ("TPE1", "artist", "\xa9ART"),
    "album": ("TALB", "album", "\xa9alb"),
    "genre": ("TCON", "genre", "\xa9gen"),
    "comment": ("COMM", "TXXX:comment", "comment", "description", "\xa9cmt"),  # ffmpeg writes TXXX:comment
    "keywords": ("TXXX:keywords", "keywords", "----:com.apple.iTunes:keywords"),
}
_TAG_KEY_TO_NAME = {key.lower(): name for name, keys in _TAG_NAMES.items() for key in keys}
_LIST_SEPARATORS = re.compile(r"[;,]")
_LONGEST_VALUE = 4096
# iXML chunks are a few kB; anything far larger is not what we are after.
_LONGEST_CHUNK = 1 << 20
_IXML_FIELDS = ("PROJECT", "SCENE", "TAKE", "TAPE", "NOTE", "CATEGORY", "SUBCATEGORY", "KEYWORDS")


def read_metadata(path: str | os.PathLike) -> Metadata:
    metadata = Metadata()
    found = _open_tags(path)
    if isinstance(found, OggVorbis):
        info = found.info
        metadata.sample_rate, metadata.channels, metadata.codec = info.sample_rate, info.channels, "ogg/vorbis"
        metadata.duration = info.length  # from the last page's granule position, as libsndfile counts frames
    else:
        _read_header(path, metadata)
    _read_tags(found, metadata)
    if Path(path).suffix.lower() == ".wav":
        _read_riff_chunks(path, metadata)
    ucs = parse_ucs_name(Path(path).name)
    if ucs is not None:
        metadata.ucs_cat_id, metadata.ucs_category, metadata.ucs_subcategory = ucs["cat_id"], ucs["category"], ucs["subcategory"]
        metadata.title = metadata.title or ucs["fx_name"]
        metadata.extra.update({f"ucs:{key}": value for key, value in ucs.items() if value})
    return metadata


# --- UCS names

_CAT_ID = re.compile(r"^(?P<category>[A-Z]+?)(?P<subcategory>[A-Z][a-z][A-Za-z0-9]*)?$")


def parse_ucs_name(name: str) -> dict[str, str] | None:
    """The parts of a Universal Category System file name, or None if it is not one."""
    parts = Path(name).stem.split("_")
    if len(parts) < 4:
        return None
    cat_id, _, user_category = parts[0].partition("-")
    match = _CAT_ID.match(cat_id)
    if match is None or len(cat_id) < 3 or not all(part.strip() for part in parts[1:4]):
        return None
    return {
        "cat_id": cat_id,
        "category": match["category"],
        "subcategory": match["subcategory"] or "",
        "user_category": user_category,
        "fx_name": parts[1].strip(),
        "creator_id": parts[2].strip(),
        "source_id": parts[3].strip(),
        "user_data": "_".join(parts[4:]),
    }


# --- header and tags

def _read_header(path, metadata: Metadata) -> None:
    try:
        info = soundfile.info(os.fspath(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return  # mutagen may know (M4A); else decoding will say what is wrong
    metadata.sample_rate, metadata.channels = info.samplerate, info.channels
    metadata.duration = info.frames / info.samplerate if info.samplerate else None
    metadata.codec = f"{info.format}/{info.subtype}".lower()
    metadata.bit_depth = SUBTYPE_BITS.get(info.subtype)


def _open_tags(path) -> mutagen.FileType | None:
    try:
        return mutagen.File(os.fspath(path))
    except Exception:  # mutagen raises many kinds on odd files; tags are optional
        log.debug("%s: mutagen could not read its tags", path, exc_info=True)
        return None


def _read_tags(found: mutagen.FileType | None, metadata: Metadata) -> None:
    if found is None:
        return
    if metadata.sample_rate is None and found.info is not None:
        info = found.info
        metadata.sample_rate = getattr(info, "sample_rate", None) or None
        metadata.channels = getattr(info, "channels", None) or None
        metadata.duration = getattr(info, "length", None) or None
        metadata.bit_depth = getattr(info, "bits_per_sample", None) or None
    values: dict[str, list[str]] = {}
    for key, value in (found.tags or {}).items() if found.tags is not None else ():
        texts = _texts(value)
        if not texts:
            continue
        # ID3 frame keys carry a suffix ("COMM::eng"); TXXX frames are told apart by theirs.
        name = _TAG_KEY_TO_NAME.get(key.lower()) or _TAG_KEY_TO_NAME.get(key.split(":")[0].lower())
        values.setdefault(name or key, []).extend(texts)
    for key, texts in values.items():
        metadata.extra[f"tag:{key}"] = "; ".join(texts)[:_LONGEST_VALUE]
    metadata.title = _first(values.get("title"))
    metadata.originator = _first(values.get("artist"))
    metadata.description = _first(values.get("comment"))
    metadata.tags = tuple(
        word.strip() for name in ("genre", "keywords") for text in values.get(name, []) for word in _LIST_SEPARATORS.split(text)
    )


def _texts(value) -> list[str]:
    items = getattr(value, "text", value)  # ID3 frames keep their strings in .text
    if not isinstance(items, list):
        items = [items]
    texts = []
    for item in items:
        if isinstance(item, bytes):  # MP4 free-form atoms
            item = item.decode("utf-8", "replace")
        if isinstance(item, (str, int, float)) and str(item).strip():
            texts.append(str(item).strip()[:_LONGEST_VALUE])
    return texts


def _first(texts: list[str] | None) -> str | None:
    return texts[0] if texts else None


# --- RIFF chunks: bext and iXML

def _read_riff_chunks(path, metadata: Metadata) -> None:
    try:
        with open(path, "rb") as file:
            chunks = dict(_riff_chunks(file, wanted={b"bext", b"iXML"}))
    except (OSError, struct.error, ValueError):
        return
    if b"bext" in chunks:
        _apply_bext(chunks[b"bext"], metadata)
    if b"iXML" in chunks:
        _apply_ixml(chunks[b"iXML"], metadata)


def _riff_chunks(file: BinaryIO, wanted: set[bytes]):
    """(id, data) of the ``wanted`` chunks of a RIFF/RF64 WAVE file, seeking past the rest."""
    header = file.read(12)
    if len(header) < 12 or header[:4] not in (b"RIFF", b"RF64", b"BW64") or header[8:12] != b"WAVE":
        return
    end = os.fstat(file.fileno()).st_size
    data_size_64 = None
    while file.tell() + 8 <= end:
        chunk_id, size = struct.unpack("<4sI", file.read(8))
        if chunk_id == b"ds64":
            body = file.read(size + (size & 1))
            data_size_64 = struct.unpack_from("<Q", body, 8)[0] if len(body) >= 16 else None
            continue
        if size == 0xFFFFFFFF and chunk_id == b"data" and data_size_64 is not None:
            size = data_size_64  # RF64: the real size of the audio is in ds64
        if chunk_id in wanted and size <= _LONGEST_CHUNK:
            yield chunk_id, file.read(size)
            file.seek(size & 1, os.SEEK_CUR)
        else:
            file.seek(size + (size & 1), os.SEEK_CUR)


def _text(raw: bytes) -> str:
    raw = raw.split(b"\0", 1)[0]
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:  # the spec says ASCII; old tools wrote Latin-1
        return raw.decode("latin-1").strip()


def _apply_bext(chunk: bytes, metadata: Metadata) -> None:
    # EBU Tech 3285: Description[256] Originator[32] OriginatorReference[32] OriginationDate[10] OriginationTime[8] ...
    fields = {
        "description": _text(chunk[0:256]), "originator": _text(chunk[256:288]),
        "originator_reference": _text(chunk[288:320]), "origination_date": _text(chunk[320:330]),
        "origination_time": _text(chunk[330:338]),
    }
    if len(chunk) > 602:
        fields["coding_history"] = _text(chunk[602:])[:_LONGEST_VALUE]
    metadata.extra.update({f"bext:{key}": value for key, value in fields.items() if value})
    # The broadcast chunk is what sound librarians fill in; it wins over generic tags.
    metadata.description = fields["description"] or metadata.description
    metadata.originator = fields["originator"] or metadata.originator


def _apply_ixml(chunk: bytes, metadata: Metadata) -> None:
    try:
        root = ElementTree.fromstring(chunk.rstrip(b"\0 \n\r\t"))
    except ElementTree.ParseError:
        return
    for field in _IXML_FIELDS:
        element = root.find(f".//{field}")
        if element is not None and element.text and element.text.strip():
            metadata.extra[f"ixml:{field.lower()}"] = element.text.strip()[:_LONGEST_VALUE]
    metadata.description = metadata.description or metadata.extra.get("ixml:note")
    keywords = metadata.extra.get("ixml:keywords")
    if keywords:
        metadata.tags += tuple(word.strip() for word in _LIST_SEPARATORS.split(keywords))
