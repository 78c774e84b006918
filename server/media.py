"""Audio and pictures of library files over HTTP, for the page and the API: a file (with
Range requests, so long recordings seek without downloading), a region of it as WAV, its
waveform and its spectrogram.

Callers hand over files the Library has already agreed to serve (``Library.served_file_by_id``
or ``served_record``: only indexed files inside the library roots). The page's routes ask by
catalogue id, never by path; the browser loads them while the page draws, in parallel and
cached by the file's version (``?v=mtime``), so a page of results costs the page's script run
nothing but the search.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from encoders.audio import AudioDecodeError
from search.config import load_settings
from search.library import Library, ServedFile
from server import audio_view

# What the browser is told each format is; Chromium and Firefox play these as they are.
PLAYABLE = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "opus": "audio/ogg", "mp3": "audio/mpeg",
            "m4a": "audio/mp4"}
# Others (AIFF, ...) are sent as WAV made on the fly, from the start asked for, at most this long.
CONVERTED_SECONDS = 600.0
THUMBNAIL = (200, 36)
CACHE = "private, max-age=86400"  # the URL carries the file's version
# A file up to this size asked for whole is read by the thread that looked it up and sent as one
# body. Sent as a FileResponse, its stat, open, reads and close each went to an anyio thread and
# back: under load those hand-overs were a large part of what an 88 kB download cost the
# server (py-spy, 2026-12-04, docs/benchmarks.md 3c). Larger files, and every Range request, are streamed by FileResponse.
READ_WHOLE_BYTES = 1 << 20

_opened: Library | None = None
_opening = threading.Lock()


def library() -> Library:
    """The served library, opened on first request (the same settings as the page's)."""
    global _opened
    with _opening:
        if _opened is None:
            _opened = Library(load_settings())
        return _opened


class Refused(Exception):
    """A request this server answers with a status and a sentence, not a file."""

    def __init__(self, status: int, sentence: str):
        super().__init__(sentence)
        self.status = status


def answering(handler):
    @functools.wraps(handler)
    def answer(request: Request) -> Response:
        try:
            return handler(request)
        except Refused as refusal:
            return PlainTextResponse(str(refusal), status_code=refusal.status)
    return answer


def audio_response(path: Path, record: ServedFile, start: float | None, end: float | None,
                   download: bool = False, ranged: bool = True) -> Response:
    """The file as it is (Range requests answered), or ``start``-``end`` of it as WAV. ``ranged``:
    the request has a Range header (False lets a small file be read here, see ``file_response``)."""
    if start is None and end is None and record.format in PLAYABLE and not download:
        return file_response(path, PLAYABLE[record.format], {"Cache-Control": CACHE}, ranged)
    start = start or 0.0
    end = end if end is not None else min(record.duration or CONVERTED_SECONDS, start + CONVERTED_SECONDS)
    if not end > start:
        raise Refused(400, "end must be after start")
    data = _decoded(record, lambda: audio_view.region_wav(
        path, start, min(end, start + CONVERTED_SECONDS), record.sample_rate))
    headers = {"Cache-Control": CACHE}
    if download:
        stem = record.name.rsplit(".", 1)[0]
        headers["Content-Disposition"] = f'attachment; filename="{stem}_{start:.2f}-{end:.2f}.wav"'
    return Response(data, media_type="audio/wav", headers=headers)


def file_response(path: Path, media_type: str, headers: dict[str, str], ranged: bool) -> Response:
    """``path`` whole, or the part a Range header asks for, with FileResponse's headers (length,
    last modified, ETag, Accept-Ranges). Called on a worker thread: a file of at most
    READ_WHOLE_BYTES asked for whole is read here, so the event loop only writes it out."""
    if not ranged:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            data = file.read(READ_WHOLE_BYTES + 1) if status.st_size <= READ_WHOLE_BYTES else None
        if data is not None and len(data) == status.st_size:  # else it changed while read: streamed
            headers = FileResponse(path, media_type=media_type, headers=headers, stat_result=status).headers
            return Response(data, headers=headers)
    return FileResponse(path, media_type=media_type, headers=headers)


@answering
def audio(request: Request) -> Response:
    """The page's player: the file, or ``?start=&end=`` seconds of it as WAV (``&download=1``)."""
    path, record, start, end = _asked(request)
    return audio_response(path, record, start, end, request.query_params.get("download") == "1",
                          ranged="range" in request.headers)


@answering
def waveform(request: Request) -> Response:
    """A thumbnail of the whole file, ``?start=&end=`` marked."""
    path, record, start, end = _asked(request)
    png = _decoded(record, lambda: audio_view.waveform_png(
        _overview(str(path), record.mtime), _region(start, end), *THUMBNAIL))
    return Response(png, media_type="image/png", headers={"Cache-Control": CACHE})


@answering
def spectrogram(request: Request) -> Response:
    path, record, start, end = _asked(request)
    png = _decoded(record, lambda: audio_view.spectrogram_png(audio_view.display_samples(path), _region(start, end)))
    return Response(png, media_type="image/png", headers={"Cache-Control": CACHE})


@functools.lru_cache(maxsize=512)  # 32 KB each
def _overview(path: str, mtime: float) -> audio_view.Overview:
    return audio_view.file_overview(path)


def _asked(request: Request) -> tuple[Path, ServedFile, float | None, float | None]:
    """The file asked for (only one this library serves) and the ``start``/``end`` given."""
    try:
        path, record = library().served_file_by_id(request.path_params["file_id"])
    except PermissionError:
        raise Refused(404, "no such file in this library") from None
    return on_disk(path, record), record, seconds(request.query_params.get("start"), "start"), \
        seconds(request.query_params.get("end"), "end")


def on_disk(path: Path, record: ServedFile) -> Path:
    if not path.is_file():
        raise Refused(404, f"{record.name} is no longer where it was indexed")
    return path


def seconds(text: str | None, name: str) -> float | None:
    """A time parameter: seconds from the start of the file, or None when not given."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    return check_seconds(value, name)


def check_seconds(value: float | None, name: str) -> float | None:
    """``value``, if it is None or seconds from the start of a file; else Refused (400)."""
    if value is not None and not 0 <= value < 1e7:
        raise Refused(400, f"{name} must be seconds from the start of the file")
    return value


def _region(start: float | None, end: float | None) -> tuple[float, float] | None:
    return (start, end) if start is not None and end is not None else None


def _decoded(record: ServedFile, make):
    try:
        return make()
    except AudioDecodeError as exc:
        raise Refused(422, f"{record.name} cannot be read: {exc.reason}") from None


def page_routes() -> list[Route]:
    return [
        Route("/clapdex/audio/{file_id:int}", audio),
        Route("/clapdex/waveform/{file_id:int}.png", waveform),
        Route("/clapdex/spectrogram/{file_id:int}.png", spectrogram),
    ]


def url(kind: str, file_id: int, mtime: float, **params) -> str:
    """Where the page's browser finds ``kind`` ("audio", "waveform", "spectrogram") of a file."""
    suffix = "" if kind == "audio" else ".png"
    query = "&".join(f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in params.items() if value is not None)
    return f"/clapdex/{kind}/{file_id}{suffix}?v={mtime:.0f}" + (f"&{query}" if query else "")
