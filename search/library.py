"""One library home: its settings, its catalog and vector store, and the model that reads it.

Every verb, the indexer, the query engine and the page take a Library. Opening one that
was never indexed is refused with ``NoIndexError`` before anything is created or any model
is loaded; ``create=True`` (the indexer) makes a new one. The encoder is loaded on first
use, chosen as the index remembers it: the same model, from the same weights file, found
again where it was. What the library holds (status, facets, duplicates) is asked here.

A home holds ``catalog.sqlite`` (unless the catalog is a database elsewhere), ``vectors/``
(FAISS), ``config.toml`` and ``indexing.json``, the progress of the current or last index run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from encoders import Encoder, MissingWeightsError, list_models, load_encoder
from search import duplicates
from search.catalog import INDEXED, PENDING, Catalog, CatalogMissing, Facets, ModelIdentity
from search.config import ConfigError, Settings
from search.store import VectorStore, discard_vectors, faiss_file, open_store

log = logging.getLogger(__name__)

DEFAULT_MODEL = "msclap-2023"
SHIPPED_MODEL = "clapdex-compact"
PROGRESS_FILE = "indexing.json"
STORE_CHECK_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class MissingFolder:
    """A library folder files were indexed from that looks away: ``why`` "not there", "empty" or
    the system's reason it cannot be listed; ``files``: how many catalogued files are under it."""

    path: str
    files: int
    why: str

    def line(self) -> str:
        hint = "if a disk mounts there, mount it" if self.why == "empty" else "if it is on a disk, connect it"
        return (f"library folder {self.why}: {self.path} ({self.files} files kept: {hint}; to forget them, "
                f"`clapdex forget {shlex.quote(self.path)}`)")


def is_within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (by path, not by name: "/a/bc" is not in "/a/b")."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def folders_away(roots: Iterable[str]) -> list[tuple[str, str]]:
    """(folder, why) of the outermost of ``roots`` that look away (``folder_away``), by path."""
    found: list[tuple[str, str]] = []
    for root in sorted(roots):
        if any(is_within(root, folder) for folder, _ in found):
            continue  # inside a folder already found away
        why = folder_away(root)
        if why is not None:
            found.append((root, why))
    return found


def folder_away(path: str) -> str | None:
    """Why the library folder ``path`` looks away: "not there", "empty" (the mount point of a disk
    not mounted) or "unreadable (reason)"; None when it is there to be read."""
    try:
        with os.scandir(path) as entries:
            return "empty" if next(entries, None) is None else None
    except (FileNotFoundError, NotADirectoryError):
        return "not there"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"


@dataclasses.dataclass(frozen=True)
class LibraryStatus:
    model: ModelIdentity
    indexed: int  # files
    pending: int  # catalogued, waiting to be embedded
    errors: list[tuple[str, str]]  # (path, reason) of the files that could not be read
    windows: int  # the units the vector search ranks
    run: dict | None  # the current or last index run's progress; None before any
    # Library folders that look away now (a disk unplugged): their files are kept, not searchable
    # as audio until it is back.
    away: list[MissingFolder] = dataclasses.field(default_factory=list)

    @property
    def run_described(self) -> str | None:
        return describe_run(self.run) if self.run else None


@dataclasses.dataclass(frozen=True)
class ServedFile:
    """What serving a file needs to know of it, read while the catalog was held."""

    name: str
    format: str | None
    duration: float | None
    sample_rate: int | None
    mtime: float


@dataclasses.dataclass
class NearUpdate:
    """A near-duplicate pass running in the background (``Library.start_near_update``)."""

    started: float  # time.time()
    doing: str = "starting"
    done: float = 0.0  # the part of ``doing`` done, 0 to 1
    how: str | None = None  # duplicates.update's answer, once finished
    error: str | None = None
    finished: float | None = None

    def report(self, doing: str, done: float) -> None:
        self.doing, self.done = doing, done


@dataclasses.dataclass(frozen=True)
class DuplicateGroups:
    """The duplicates a library lists: ``near``, the kept near duplicates they come from (whether
    current), and ``groups``, (kind, paths in path order) with "identical" files first."""

    near: duplicates.Kept
    groups: list[tuple[str, list[str]]]


class NoIndexError(LookupError):
    """A verb that reads an index was pointed at a home (or catalog) that holds none."""

    def __init__(self, where: str):
        super().__init__(f"no index in {where}; run `clapdex index FOLDER` to make one")


class ModelReplaced(RuntimeError):
    """The library was embedded again with another model (``clapdex index --reembed``) since this
    process loaded its own: its queries would be compared with vectors of another space."""

    def __init__(self, loaded: ModelIdentity, indexed: ModelIdentity):
        self.loaded, self.indexed = loaded, indexed
        super().__init__(f"this library was embedded again with {indexed} since this process started with {loaded}; "
                         f"restart it to search with the new model")

    def __reduce__(self):
        # A search worker's exception crosses to the server pickled, and pickle would call
        # __init__ with the sentence alone (as for ModelMismatchError).
        return type(self), (self.loaded, self.indexed)


class CatalogUnreachable(ConnectionError):
    """The catalog's database cannot be opened: a server down, a wrong password, a locked file."""


class Library:
    """The catalog, the vector store and the encoder of one library, opened once per verb.

    ``create=False`` (every reading verb) raises NoIndexError, creating nothing, unless an
    index exists. ``create=True`` (the indexer) creates a new home's catalog only once its
    model has loaded, so a first run that cannot load one leaves nothing behind. ``encoder``
    hands over one already loaded (tests, benchmarks). ``reembed`` (with ``create``): an index
    built by another model, or other weights, takes the one chosen now (``adopt_model``).
    """

    def __init__(self, settings: Settings, *, create: bool = False, encoder: Encoder | None = None,
                 reembed: bool = False):
        self.settings = settings
        self._reembed = reembed
        self._catalog: Catalog | None = None
        try:
            self._catalog = Catalog(settings.catalog_url, create=False)
            self.indexed = self._catalog.model()
            self._catalog.rollback()
        except CatalogMissing:
            if not create:
                raise NoIndexError(self.where) from None
            self.indexed = None
        except OperationalError as error:
            raise CatalogUnreachable(f"the catalog at {self.where} cannot be opened: {error.orig or error}") from None
        if self.indexed is None and not create:
            self._catalog.close()
            raise NoIndexError(self.where)
        if create and self._catalog is not None:
            self._catalog.create_tables()  # those a newer clapdex added since the index was made
        log.debug("library %s: %s", self.where, self.indexed or "no index yet")
        # A SQLAlchemy session is for one thread at a time: the thread that opened the library
        # reads and writes through ``catalog``, every other one (a server's requests, the page's
        # sessions) reads through a session of its own, so requests never wait for each other.
        self._owner = threading.get_ident()
        self._local = threading.local()  # another thread's catalog, and how deep its readings nest
        self._lock = threading.RLock()  # loading the model and opening the store, once
        self._given = encoder
        self._encoder: Encoder | None = None
        self._store: VectorStore | None = None
        # A reading library (a server, the page) takes up what index runs in other processes
        # save, looking at most every STORE_CHECK_SECONDS: a new FAISS file is read again, and a
        # library embedded again with another model (on any store) is refused.
        self._follows_store = not create
        self._store_seen: tuple[float, tuple | None] = (0.0, None)  # when looked, what was there
        self._replaced_by: ModelIdentity | None = None  # the model another process embedded the library with since
        # What is computed from the whole catalog, by name: (the catalog's generation, the value).
        self._computed: dict[str, tuple[str | None, object]] = {}
        self._computing: dict[str, threading.Lock] = {}  # by name, while one is computed
        self._near_lock = threading.Lock()  # one near-duplicate pass at a time
        self._near_update: NearUpdate | None = None
        self._near_read: tuple[tuple, duplicates.Kept] | None = None  # (what it was read for, what was read)
        self._groups_joined: tuple[list, duplicates.Kept, DuplicateGroups] | None = None  # (from what, joined)
        # Said to the user when the model chosen is not the one they might expect.
        self.notice: str | None = None
        if encoder is not None:  # loaded already: check it against the index now
            try:
                _ = self.encoder
            except BaseException:
                self.close()
                raise

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:  # a new library, its model loaded: now it is made
            self._catalog = Catalog(self.settings.catalog_url, create=True)
        return self._catalog

    @property
    def where(self) -> str:
        """The home, or the catalog's URL where it lives elsewhere (without its password)."""
        if not self.settings.catalog:
            return str(self.settings.home)
        return make_url(self.settings.catalog).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Catalog]:
        """This thread's catalog (``thread_catalog``), with no read transaction left open after
        the outermost reading (SQLite's WAL would keep the writer's checkpoints waiting)."""
        catalog = self.thread_catalog
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield catalog
        finally:
            self._local.depth = depth
            if not depth:
                catalog.rollback()

    @property
    def thread_catalog(self) -> Catalog:
        """``catalog`` for the thread that opened the library; for any other, a session of its own."""
        if threading.get_ident() == self._owner:
            return self.catalog
        catalog = getattr(self._local, "catalog", None)
        if catalog is None:
            # Dropped with its thread; between readings it holds no connection.
            catalog = self._local.catalog = self.catalog.reader()
        return catalog

    @property
    def encoder(self) -> Encoder:
        """The model for this library, loaded on first use and checked against the index."""
        if self._encoder is not None:
            return self._encoder
        with self._lock:
            return self._encoder or self._load_encoder()

    def _load_encoder(self) -> Encoder:
        started = time.perf_counter()
        # Re-embedding: the index's model, unless another is named, with the weights found for it
        # now (shipped with this clapdex, in the Hugging Face cache), or in the file the user named.
        indexed = self.indexed
        if self._reembed and indexed is not None and not indexed.weights_named:
            indexed = dataclasses.replace(indexed, weights_path="")
        encoder, self.notice = (self._given, None) if self._given else choose_encoder(self.settings, indexed)
        log.debug("model %s (weights %s from %s) on %s, ready in %.1f s", encoder.name, encoder.weights_id,
                  encoder.weights_path or "clapdex", encoder.device, time.perf_counter() - started)
        named = bool(self.settings.weights) or bool(indexed and indexed.weights_named)
        self.identity = ModelIdentity.of(encoder, named=named)
        catalog = self.thread_catalog
        if self._reembed and self.indexed is not None and self.indexed != self.identity:
            self.adopt_model(self.identity)
        catalog.check_model(self.identity)
        if self.indexed is not None:
            catalog.remember_weights(self.identity)
            catalog.commit()
        self._encoder = encoder
        return encoder

    def adopt_model(self, identity: ModelIdentity) -> None:
        """Make ``identity`` the library's model: its vectors are discarded and every indexed file
        waits to be embedded again (the next index run embeds them, whatever folders it is given).
        The vectors go first: a run killed in between leaves the catalog naming the old model, with
        files whose vectors are missing, which every index run repairs, and a new --reembed finishes."""
        replaced = self.indexed
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            discard_vectors(self.settings)
        catalog = self.thread_catalog
        waiting = catalog.change_model(identity)
        duplicates.start_again(catalog, self.settings.home)
        catalog.commit()
        self.indexed = identity
        self.notice = "; ".join(filter(None, [self.notice, (
            f"embedding all {waiting} files again, with {identity} in place of {replaced}; then `clapdex tag` "
            f"suggests categories again from the new embeddings")]))

    @property
    def dim(self) -> int:
        return self.indexed.dim if self.indexed is not None else self.encoder.dim

    @property
    def store(self) -> VectorStore:
        if self._replaced_by is not None:
            raise ModelReplaced(self.identity, self._replaced_by)
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store_seen = (time.monotonic(), self._store_file())
                    self._store = open_store(self.settings, self.dim)
        elif self._follows_store and time.monotonic() - self._store_seen[0] > STORE_CHECK_SECONDS:
            self._look_again()
        return self._store

    def _look_again(self) -> None:
        # One thread looks; the others go on with the store they have meanwhile.
        if not self._lock.acquire(blocking=False):
            return
        try:
            was = self._store_seen[1]
            self._store_seen = (time.monotonic(), self._store_file())
            saved = self._store_seen[1] != was  # a new FAISS file (never on Qdrant: no file)
            # A FAISS library embedded again saves a new file, so its catalog is read only then;
            # Qdrant's collection changes in place, so its catalog is read every time.
            if self._encoder is not None and (self.settings.store != "faiss" or saved):
                with self.reading() as catalog:
                    indexed = catalog.model()
                if indexed is not None and indexed != self.identity:  # `index --reembed` in another process
                    log.error("the library was embedded again with %s; this process has %s", indexed, self.identity)
                    self._replaced_by = indexed
                    raise ModelReplaced(self.identity, indexed)
            if saved:
                log.info("the vector index was saved by another process; reading it again")
                self._store = open_store(self.settings, self.dim)  # the old one is freed when unused
        finally:
            self._lock.release()

    def _store_file(self) -> tuple | None:
        """What identifies the saved vector file's version (saves replace it: a new inode)."""
        if self.settings.store != "faiss":
            return None
        try:
            found = os.stat(faiss_file(self.settings))
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    # --- what the library holds

    def status(self) -> LibraryStatus:
        counts, errors, roots = self._kept("status", lambda catalog: (
            catalog.counts(), [(record.path, record.error or "unknown") for record in catalog.errors()],
            catalog.roots()))
        # Looked at on every call, not kept: a disk comes and goes without the catalog changing.
        away = [MissingFolder(folder, sum(count for root, count in roots if is_within(root, folder)), why)
                for folder, why in folders_away(root for root, _ in roots)]
        return LibraryStatus(self.indexed, counts[INDEXED], counts[PENDING], errors, counts["windows"],
                             read_progress(self.settings.home), away)

    def facets(self) -> Facets:
        return self._kept("facets", Catalog.facets)

    def exact_duplicates(self) -> list[list[str]]:
        """Groups of paths with the same content (by hash), each group in path order."""
        return self._kept("exact duplicates", duplicates.exact_duplicates)

    def _kept(self, name: str, compute):
        """``compute(catalog)``, computed again only once the catalog has changed: each is a pass
        over every file (seconds at a million), asked for on every click of the page."""
        with self.reading() as catalog:
            generation = catalog.generation()
            # One computation of each at a time: a click while ``warm`` computes it waits for that one.
            with self._computing.setdefault(name, threading.Lock()):
                kept = self._computed.get(name)
                if kept is not None and generation is not None and kept[0] == generation:
                    return kept[1]
                value = compute(catalog)
                # Read in one transaction with the generation, or later: never older than it says.
                self._computed[name] = (generation, value)
                return value

    def warm(self) -> threading.Thread:
        """Compute, in a thread of its own, what the page's other views read first (the status and
        the exact duplicates: seconds each at a million files), so that their first opening finds
        it kept; a view opened meanwhile waits for that computation rather than doing it again."""

        def run() -> None:
            started = time.perf_counter()
            try:
                self.status()
                self.duplicate_groups()
            except Exception:  # the views compute it again when opened, and say what failed
                log.warning("computing the library's status and duplicates ahead failed", exc_info=True)
            log.debug("status and duplicates computed ahead in %.1f s", time.perf_counter() - started)

        thread = threading.Thread(target=run, name="library-warm", daemon=True)
        thread.start()
        return thread

    def accept_suggestion(self, file_id: int, cat_id: str) -> bool:
        """Record that a person chose ``cat_id`` among the file's suggestions (the page's chips);
        False where the file was never tagged or ``cat_id`` is not among them."""
        with self.reading() as catalog:
            found = catalog.suggestions_of([file_id]).get(file_id)
            if found is None or cat_id not in [suggested for suggested, _ in found.ucs]:
                return False
            catalog.accept_suggestion(file_id, cat_id)
            catalog.commit()
            return True

    def near_duplicates(self, threshold: float = duplicates.DEFAULT_THRESHOLD,
                        progress: duplicates.Progress | None = None) -> list[duplicates.NearPair]:
        """Pairs of files with different bytes that sound the same (re-encodes, gain, resamples,
        trims): the kept ones, brought up to date first (minutes at a million files when nothing
        was kept, the changed files' when an index run changed some); a threshold below what is
        kept is a whole pass of its own, kept nowhere."""
        if threshold < duplicates.KEPT_FROM:
            with self.reading() as catalog:
                return duplicates.near_duplicates(catalog, self.store, threshold)
        self.update_near_duplicates(progress)
        return self.kept_near_duplicates(threshold).pairs

    def kept_near_duplicates(self, threshold: float = duplicates.DEFAULT_THRESHOLD) -> duplicates.Kept:
        """What the last near-duplicate pass kept, whether or not the catalog changed since: never a
        pass. Read again only when the pass or the catalog changed (the page asks on every click)."""
        with self.reading() as catalog:
            key = (catalog.near_state(), catalog.generation(), threshold)
            read = self._near_read
            if read is not None and read[0] == key:  # (none kept is kept too: the page asks on every click)
                return read[1]
            kept = duplicates.kept(catalog, threshold)
            self._near_read = (key, kept)
            return kept

    def duplicate_groups(self, threshold: float = duplicates.DEFAULT_THRESHOLD) -> DuplicateGroups:
        """What the page's Duplicates view lists: the groups of identical files, then those that sound
        the same at ``threshold`` (of the kept pairs, never a pass), joined once per state of the
        catalog and of the kept pairs, not on every click."""
        exact, near = self.exact_duplicates(), self.kept_near_duplicates(threshold)
        joined = self._groups_joined
        # The very objects kept above: a new generation or pass reads, and so joins, anew.
        if joined is not None and joined[0] is exact and joined[1] is near:
            return joined[2]
        groups = DuplicateGroups(near, [("identical", group) for group in exact]
                                 + [("sound the same", group) for group in duplicates.groups(near.pairs or [])])
        self._groups_joined = (exact, near, groups)
        return groups

    def update_near_duplicates(self, progress: duplicates.Progress | None = None) -> str:
        """Bring the kept near duplicates up to date (``duplicates.update``); one pass at a time per library."""
        with self._near_lock, self.reading() as catalog:
            return duplicates.update(catalog, self.store, self.settings.home, progress)

    def near_update(self) -> NearUpdate | None:
        """The background update of the near duplicates, running or last finished; None before any."""
        return self._near_update

    def start_near_update(self) -> NearUpdate:
        """Bring the near duplicates up to date in a thread of this process (the page's), unless
        one is at it already; its progress is read from what this returns."""
        with self._lock:
            if self._near_update is not None and not self._near_update.finished:
                return self._near_update
            update = self._near_update = NearUpdate(time.time())

            def run() -> None:
                try:
                    update.how = self.update_near_duplicates(update.report)
                except Exception as error:  # shown to the page's user, who can try again
                    log.exception("the near-duplicate pass failed")
                    update.error = f"{type(error).__name__}: {error}"
                finally:
                    update.finished = time.time()

            # A daemon: it ends with the page's process, whose catalog then keeps the last pass.
            threading.Thread(target=run, name="near-duplicates", daemon=True).start()
            return update

    def disagreement(self) -> str | None:
        """A warning when the catalog and the vector store no longer hold the same windows (a
        count, not ``doctor``'s full check: cheap enough for every search)."""
        with self.reading() as catalog:
            windows, vectors = catalog.window_count(), len(self.store)
        if windows == vectors:
            return None
        return (f"the catalog names {windows} windows but the vector store holds {vectors} vectors, so results "
                "may be missing; run `clapdex doctor` to see why and `clapdex doctor --fix` to repair")

    def served_file(self, path: str | os.PathLike) -> Path:
        """``path``, resolved, if it is an indexed file inside its library root; else PermissionError.

        Everything a user can reach through a query result goes through here, so no parameter
        can name a file outside the indexed roots (no ``..``, no symlink out of a root).
        """
        return self.served_record(path)[0]

    def served_record(self, path: str | os.PathLike) -> tuple[Path, ServedFile]:
        """``served_file``, with what serving it needs to know."""
        with self.reading() as catalog:
            return self._served(catalog.located(os.path.abspath(path)), path)

    def served_file_by_id(self, file_id: int) -> tuple[Path, ServedFile]:
        """The file catalogued as ``file_id``, by the same rule as ``served_file``."""
        with self.reading() as catalog:
            return self._served(catalog.file_by_id(file_id), f"file {file_id}")

    def _served(self, record, asked) -> tuple[Path, ServedFile]:
        refused = PermissionError(f"{asked} is not a file of this library")
        if record is None or record.status not in (INDEXED, PENDING):
            raise refused
        resolved = Path(record.path).resolve()
        # Configured roots are the authority; without them, the root the file was indexed under.
        allowed = [Path(root).resolve() for root in self.settings.roots or (record.root,)]
        if not any(resolved.is_relative_to(root) for root in allowed):
            raise refused
        return resolved, ServedFile(record.name, record.format, record.duration, record.sample_rate, record.mtime)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def choose_encoder(settings: Settings, indexed: ModelIdentity | None = None) -> tuple[Encoder, str | None]:
    """The encoder for a library, and a notice for the user when it is not the one they might expect.

    The model named in ``settings``, else the one the index was built with (``indexed``), read
    from the weights named in ``settings``, else from where the index found them; for a new
    index MS-CLAP 2023, or, where its weights cannot be had and none were named, the compact
    model that ships with clapdex, so a fresh offline machine still works.
    """
    name = settings.model or (indexed.name if indexed else "")
    if name and name not in list_models():
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if settings.compile and (name or DEFAULT_MODEL) != DEFAULT_MODEL:
        raise ConfigError(f"compiling applies to {DEFAULT_MODEL} only; {name} is small enough as it is")
    options = {"batch_size": settings.batch_size or None} | ({"compiled": True} if settings.compile else {})
    weights = settings.weights or _indexed_weights(indexed, name)
    if name or weights:
        return load_encoder(name or DEFAULT_MODEL, weights=weights, device=settings.device, **options), None
    try:
        return load_encoder(DEFAULT_MODEL, device=settings.device, **options), None
    except MissingWeightsError as missing:
        log.debug("MS-CLAP 2023 weights not found: %s", missing)
        try:
            encoder = load_encoder(SHIPPED_MODEL, device=settings.device, batch_size=settings.batch_size or None)
        except MissingWeightsError:
            raise missing from None
    return encoder, (
        f"MS-CLAP 2023's weights are not on this machine, so this library uses {SHIPPED_MODEL}, the small model "
        f"that ships with clapdex; for MS-CLAP 2023, pass --weights CLAP_weights_2023.pth (see the README's "
        f"Weights) and --model {DEFAULT_MODEL} with a new --home."
    )


def _indexed_weights(indexed: ModelIdentity | None, name: str) -> str | None:
    """Where the index found its weights, if they are still there and are the model's own; None to
    look where the model looks by default (the Hugging Face cache, or inside clapdex)."""
    if indexed is None or not indexed.weights_path or name != indexed.name:
        return None
    if os.path.isfile(indexed.weights_path):
        return indexed.weights_path
    if indexed.weights_named:
        raise MissingWeightsError(
            f"this index was built with {indexed} from {indexed.weights_path}, which is not there any more; "
            "pass --weights PATH where the file is now (clapdex then remembers the new place)")
    return None


def read_progress(home: Path) -> dict | None:
    """The last run's progress, with ``running`` telling whether its process is still alive."""
    try:
        state = json.loads((Path(home) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    state["running"] = state.get("phase") != "finished" and _alive(state.get("pid"))
    return state


def describe_run(state: dict) -> str:
    phase, done, total = state.get("phase"), state.get("done", 0), state.get("total")
    if phase == "finished":
        summary = state.get("summary") or {}
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.get("finished", 0)))
        return f"last run finished {when}: " + ", ".join(f"{value} {key}" for key, value in summary.items())
    count = f"{done}/{total}" if total is not None else f"{done}"
    line = f"{phase} {count} files, {state.get('files_per_second', 0):.1f} files/s"
    if state.get("eta_seconds") is not None:
        line += f", ETA {_duration(state['eta_seconds'])}"
    if not state["running"]:
        line = f"interrupted while {line}; run `clapdex index` again to resume"
    return line


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
