"""The HTTP API (FastAPI, served by ``clapdex serve`` on uvicorn): what the command line and
the page do, for DAW plugins, web apps, scripts and catalogue systems. Versioned under /v1,
documented at /docs.

Every route needs an API key (``Authorization: Bearer KEY``, made by ``clapdex keys add``);
the admin routes need an admin key. Files are served only through the Library's check
(indexed, inside the library roots): any other path is a 404, however it is spelled.
"""


import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
import typing
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query as Param, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import QueryParams

from encoders.audio import AudioDecodeError
from encoders.processes import end_with_parent
from search.config import Settings
from search.duplicates import KEPT_FROM, NOT_KEPT, STALE
from search.engine import SORTS, Searcher
from search.filters import Filters
from search.library import Library, ModelReplaced, read_progress
from search.query import Query, QueryError, parse_query
from server import keys, media
from server.searching import Page, SearchProcesses, SearchUnavailable, page_of

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_CLIP_SECONDS = 30.0
MAX_TOP = 200
# A key checked this recently is not looked up again, so a revoked key is refused within this.
RECHECK_SECONDS = 5.0


@dataclasses.dataclass
class Limits:
    """What one caller may ask of the server."""

    requests_per_minute: int = 600
    upload_bytes: int = MAX_UPLOAD_BYTES
    clip_seconds: float = MAX_CLIP_SECONDS


class RateLimiter:
    """A token bucket per key: bursts of up to ten seconds' worth, then the steady rate."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60
        self.capacity = max(1.0, self.rate * 10)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def wait_needed(self, name: str) -> float:
        """0 when a request may go now (and takes a token), else the seconds to wait."""
        now = time.monotonic()
        with self.lock:
            tokens, then = self.buckets.get(name, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self.buckets[name] = (tokens - 1, now)
                return 0.0
            self.buckets[name] = (tokens, now)
            return (1 - tokens) / self.rate


def create_app(settings: Settings, *, limits: Limits = Limits(), cors_origins: tuple[str, ...] = (),
               search_processes: int = 0) -> FastAPI:
    """The API over the library at ``settings``; the model loads when the server starts, in
    ``search_processes`` worker processes (server.searching), or in this one for 0."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        library = Library(settings)
        searching = None
        try:
            state["library"] = library
            if search_processes:
                searching = SearchProcesses(settings, search_processes, limits.clip_seconds)
                # Started from this, the server's main thread, and not a pool's: Linux ends a
                # worker (end_with_parent) when the thread that started it ends, and idle pool
                # threads end. Nothing is served before this returns.
                searching.wait_ready()
                state["search"] = searching
            else:
                state["search"] = Searcher(library, library_only=True, max_clip_seconds=limits.clip_seconds)
                state["search"].calibration()  # the first query should wait for neither it nor the model
                state["search"].encoder.prepare_for_queries()
            yield
        finally:
            if searching is not None:
                searching.close()
            library.close()

    app = FastAPI(
        title="clapdex", version="1", lifespan=lifespan,
        description="Semantic search for sound libraries. Send `Authorization: Bearer KEY` (`clapdex keys add`).",
    )
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["X-Total-Count"])
    limiter = RateLimiter(limits.requests_per_minute)
    indexing = IndexRuns(settings)
    checked: dict[str, tuple[float, keys.Caller]] = {}  # valid keys' hashes: when checked, whose

    async def caller(authorization: Annotated[str | None, Header()] = None) -> keys.Caller:
        # Asynchronous, and asking the catalog only every RECHECK_SECONDS per key: most requests
        # are let through without a trip to a worker thread and the database.
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise HTTPException(401, "send an API key: Authorization: Bearer KEY (make one with `clapdex keys add`)",
                                headers={"WWW-Authenticate": "Bearer"})
        key_hash = keys.hash_key(presented.strip())
        when, found = checked.get(key_hash, (-RECHECK_SECONDS, None))
        if time.monotonic() - when >= RECHECK_SECONDS:
            found = await run_in_threadpool(keys.authenticate, state["library"], presented.strip())
            if found is None:
                checked.pop(key_hash, None)
            else:
                checked[key_hash] = (time.monotonic(), found)
        if found is None:
            raise HTTPException(401, "this API key is not valid: unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        if wait := limiter.wait_needed(found.name):
            raise HTTPException(429, f"too many requests for key {found.name}; try again in {wait:.1f} s",
                                headers={"Retry-After": str(max(1, round(wait)))})
        return found

    def admin(who: Annotated[keys.Caller, Depends(caller)]) -> keys.Caller:
        if not who.is_admin:
            raise HTTPException(403, f"key {who.name} has the read role; this needs an admin key")
        return who

    reader = [Depends(caller)]

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        # A sentence naming the parameter, as every other refusal, not FastAPI's list of records.
        return JSONResponse({"detail": _sentence(_first_problem(exc.errors(), skip=1))}, status_code=422)

    @app.exception_handler(QueryError)
    async def _query_error(_request: Request, exc: QueryError):
        return JSONResponse({"detail": _sentence(exc)}, status_code=400)

    @app.exception_handler(PermissionError)
    async def _not_served(_request: Request, _exc: PermissionError):
        return JSONResponse({"detail": "no such file in this library"}, status_code=404)

    @app.exception_handler(AudioDecodeError)
    async def _unreadable(_request: Request, exc: AudioDecodeError):
        return JSONResponse({"detail": f"the clip cannot be read: {exc.reason}"}, status_code=422)

    @app.exception_handler(SearchUnavailable)
    async def _unavailable(_request: Request, exc: SearchUnavailable):
        return JSONResponse({"detail": _sentence(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(ModelReplaced)
    async def _replaced(_request: Request, exc: ModelReplaced):
        return JSONResponse({"detail": _sentence(exc)}, status_code=503)

    @app.exception_handler(media.Refused)
    async def _refused(_request: Request, exc: media.Refused):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    hits = {"dependencies": reader, "response_model": list[dict]}

    async def searched(query: Query | None, options: SearchOptions) -> Response:
        arguments = _search_arguments(query, options)
        searcher = state["search"]
        if isinstance(searcher, SearchProcesses):  # awaited in this loop, no thread waiting for it
            return _hits(await searcher.search(query, **arguments))
        return _hits(await run_in_threadpool(lambda: page_of(searcher.search(query, **arguments))))

    @app.get("/v1/search", **hits, summary="Files matching a description, keywords and filters",
             openapi_extra={"parameters": _query_parameters(SearchOptions)})
    async def search_get(request: Request) -> Response:
        # The options read here, not by FastAPI from a parameter model: its per-request handling
        # of SearchOptions cost about 0.1 ms of the server's CPU a search (2026-12-04), the same check.
        options = _query_options(request.query_params)
        return await searched(parse_query(options.q) or None, options)

    @app.post("/v1/search", **hits, summary="Search with an uploaded clip (multipart) or a JSON query")
    async def search_post(request: Request) -> Response:
        options, query = await _posted_query(request, limits)
        return await searched(query, options)

    @app.get("/v1/similar", **hits, summary="Files like a library file, or a time range of it")
    async def similar(path: str, start: float | None = None, end: float | None = None,
                      top: Annotated[int, Param(ge=1, le=MAX_TOP)] = 10) -> Response:
        if (start is None) != (end is None):
            raise QueryError("start and end go together")
        return await searched(Query.sound(path, start, end), SearchOptions(top=top))

    @app.get("/v1/audio", dependencies=reader, summary="A library file (Range requests), or a region as WAV")
    def audio(request: Request, path: str, start: float | None = None, end: float | None = None,
              download: bool = False) -> Response:
        served, record = state["library"].served_record(path)
        media.check_seconds(start, "start")
        media.check_seconds(end, "end")
        return media.audio_response(media.on_disk(served, record), record, start, end, download,
                                    ranged="range" in request.headers)

    @app.get("/v1/status", dependencies=reader, summary="What is indexed, with which model, and what failed")
    def status() -> dict:
        library = state["library"]
        current = library.status()
        return {**dataclasses.asdict(current), "model": str(current.model), "disagreement": library.disagreement()}

    @app.get("/v1/duplicates", dependencies=reader, summary="Exact and near-duplicate files (deletes nothing)")
    def duplicates(threshold: Annotated[float, Param(ge=KEPT_FROM, le=1)] = 0.98) -> dict:
        # What the library keeps, never a pass (minutes at a million files): `clapdex index` keeps
        # it current once `clapdex duplicates` (or the page) has found them.
        library = state["library"]
        kept = library.kept_near_duplicates(threshold)
        note = None if kept.current else NOT_KEPT if kept.pairs is None else STALE
        return {"exact": library.exact_duplicates(), "near_current": kept.current, "near_note": note,
                "near": None if kept.pairs is None else [dataclasses.asdict(pair) for pair in kept.pairs]}

    @app.post("/v1/index", dependencies=[Depends(admin)], status_code=202,
              summary="Index the library roots, or folders under them (admin)")
    def index(request_body: IndexRequest | None = None) -> dict:
        return indexing.start(state["library"], (request_body or IndexRequest()).paths)

    @app.get("/v1/index", dependencies=[Depends(admin)], summary="The current or last index run's progress (admin)")
    def index_progress() -> dict:
        return indexing.progress()

    return app


class SearchOptions(BaseModel):
    """The command line's search options, as query parameters (or a JSON object, or form fields)."""

    model_config = ConfigDict(extra="forbid")

    q: str = ""
    top: int = Field(10, ge=1, le=MAX_TOP)
    page: int = Field(0, ge=0)
    keywords: str = ""
    keyword_weight: float = Field(0.5, ge=0, le=1)
    sort: str = "relevance"
    min_duration: float | None = Field(None, ge=0)
    max_duration: float | None = Field(None, gt=0)
    rate: list[int] = []
    channels: list[int] = []
    format: list[str] = []
    folder: list[str] = []
    tag: list[str] = []
    category: list[str] = []

    def filters(self) -> Filters:
        return Filters(
            min_duration=self.min_duration, max_duration=self.max_duration, sample_rates=tuple(self.rate),
            channels=tuple(self.channels), formats=tuple(name.lower() for name in self.format),
            folders=tuple(os.path.abspath(folder) for folder in self.folder), tags=tuple(self.tag),
            categories=tuple(self.category),
        )


# Options given once per value: ?format=wav&format=flac.
LIST_OPTIONS = {name for name, field in SearchOptions.model_fields.items() if typing.get_origin(field.annotation) is list}


class IndexRequest(BaseModel):
    paths: list[str] = []


def _search_arguments(query: Query | None, options: SearchOptions) -> dict:
    """``Searcher.search``'s keyword arguments for ``query`` with ``options``, checked."""
    if options.sort not in SORTS:
        raise QueryError(f"unknown sort {options.sort!r}; one of {', '.join(SORTS)}")
    filters = options.filters()
    if query is None and not options.keywords and not filters:
        raise QueryError("give q (a description), keywords or a filter")
    return dict(filters=filters, keywords_text=options.keywords, keyword_weight=options.keyword_weight,
                page=options.page, page_size=options.top, sort=options.sort)


def _hits(page: Page) -> Response:
    # Sent as made (``page_of``), not by FastAPI from a return value: its check and conversion
    # of every field against the response model only cost time.
    return Response(page.body, media_type="application/json", headers={"X-Total-Count": str(page.total)})


async def _posted_query(request: Request, limits: Limits) -> tuple[SearchOptions, Query | None]:
    """A multipart form (``file``: the clip; other fields as the GET parameters) or a JSON
    object of the GET parameters."""
    length = int(request.headers.get("content-length") or 0)
    if length > limits.upload_bytes + 64 * 1024:
        if length <= 4 * limits.upload_bytes:
            # Read what was sent, so the client, still sending, gets the answer and not a reset.
            async for _ in request.stream():
                pass
        raise HTTPException(413, f"the upload is {length / 2**20:.1f} MB; at most {limits.upload_bytes // 2**20} MB")
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=32)
        fields = _fields((name, value) for name, value in form.multi_items() if isinstance(value, str))
        clip = form.get("file")
        data = await clip.read(limits.upload_bytes + 1) if clip is not None and not isinstance(clip, str) else None
        if data is not None and len(data) > limits.upload_bytes:
            raise HTTPException(413, f"the clip is larger than {limits.upload_bytes // 2**20} MB")
        options = _options(fields)
        query = parse_query(options.q)
        if data:
            query = Query(query.terms + Query.clip(data, clip.filename or "clip").terms)
        return options, query or None
    if kind.startswith("application/json"):
        body = await request.json()
        if not isinstance(body, dict):
            raise QueryError("the JSON body is an object of search options, such as {\"q\": \"rain\"}")
        options = _options(body)
        return options, parse_query(options.q) or None
    raise HTTPException(415, "send multipart/form-data (with a file) or application/json")


def _fields(items: typing.Iterable[tuple[str, str]]) -> dict:
    """Query parameters or form fields as SearchOptions takes them: a list option's values as a
    list, any other name's last value (as Starlette and FastAPI read a repeated parameter)."""
    fields: dict = {}
    for name, value in items:
        if name in LIST_OPTIONS:
            fields.setdefault(name, []).append(value)
        else:
            fields[name] = value
    return fields


def _options(fields: dict) -> SearchOptions:
    try:
        return SearchOptions.model_validate(fields)
    except ValidationError as error:
        raise QueryError(_first_problem(error.errors())) from None


def _query_options(parameters: QueryParams) -> SearchOptions:
    """SearchOptions from a GET's query parameters; a value that fails its check is refused as
    FastAPI refuses a parameter (422, the sentence of ``_invalid``)."""
    try:
        return SearchOptions.model_validate(_fields(parameters.multi_items()))
    except ValidationError as error:
        raise RequestValidationError([{**problem, "loc": ("query", *problem["loc"])}
                                      for problem in error.errors()]) from None


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    """``model``'s fields as OpenAPI query parameters, as FastAPI documents a parameter model, for
    a route that reads its query itself."""
    schema = model.model_json_schema()
    return [{"name": name, "in": "query", "required": name in schema.get("required", ()), "schema": field}
            for name, field in schema["properties"].items()]


def _first_problem(errors, skip: int = 0) -> str:
    """"top: input should be ...": the first of pydantic's ``errors``, its location less ``skip``
    parts ("query", "body")."""
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"][skip:]) or "the request"
    return f"{where}: {first['msg'][:1].lower()}{first['msg'][1:]}"


class IndexRuns:
    """One `clapdex index` at a time, started for an admin: its own process (the CLI, as a
    user would run it), ended with this server, its progress read from the home's progress file."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.running: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self, library: Library, paths: list[str]) -> dict:
        roots = [Path(root).resolve() for root in self.settings.roots or library.facets().roots]
        chosen = [Path(path).resolve() for path in paths] or roots
        outside = [str(path) for path in chosen if not any(path.is_relative_to(root) for root in roots)]
        if outside or not chosen:
            raise HTTPException(400, f"{outside[0] if outside else 'nothing'} is not under the library roots "
                                     f"({', '.join(map(str, roots)) or 'none configured'})")
        with self.lock:
            if self.running is not None and self.running.poll() is None:
                raise HTTPException(409, "an index run is going; see GET /v1/index")
            self.running = subprocess.Popen(
                [sys.executable, "-m", "clapdex", "index", *map(str, chosen)],
                env={**os.environ, **self.settings.environment()},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=end_with_parent,
            )
        log.info("indexing %s (process %d)", ", ".join(map(str, chosen)), self.running.pid)
        return {"started": [str(path) for path in chosen], "progress": "/v1/index"}

    def progress(self) -> dict:
        with self.lock:
            going = self.running is not None and self.running.poll() is None
            finished = None if self.running is None or going else self.running.returncode
        return {"running": going, "exit_status": finished, "progress": read_progress(self.settings.home)}


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:]
