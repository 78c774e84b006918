"""The ``clapdex`` command: one verb per stage, each a thin call into the packages.

Exit status: 0 done; 1 done, and found nothing (``search``, ``similar``) or found problems
(``doctor``); 2 a mistake in the command line, a setting or a query, or an input that cannot
be read; 3 the library cannot do this yet (no index, other or missing weights, no API key for a
server that needs one); 130 interrupted; 141 the output was closed (``| head``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import ipaddress
import json
import logging
import os
import re
import sys
import time

from clapdex import __version__
from encoders import DeviceError, MissingWeightsError, list_models
from encoders.audio import AUDIO_EXTENSIONS, AudioDecodeError
from encoders.processes import end_with_parent
from search import ucs
from search.catalog import KeyNameTaken, KeywordIndexUnavailable, ModelMismatchError
from search.config import ConfigError, Settings, device_problem, load_settings, store_problem
from search.engine import SORTS, Hit, Searcher
from search.filters import Filters
from search.library import CatalogUnreachable, Library, NoIndexError
from search.query import Query, QueryError, parse_query, parse_time
from search.store import with_huge_pages
from server import keys as api_keys

EXIT_NOTHING = EXIT_PROBLEMS = 1
EXIT_USAGE, EXIT_NOT_READY, EXIT_INTERRUPTED, EXIT_CLOSED_OUTPUT = 2, 3, 130, 141
# Errors that are the user's to fix, reported in one line without a traceback, most specific first.
USER_ERRORS = (
    (NoIndexError, EXIT_NOT_READY), (CatalogUnreachable, EXIT_NOT_READY), (ModelMismatchError, EXIT_NOT_READY),
    (MissingWeightsError, EXIT_NOT_READY), (ConfigError, EXIT_USAGE), (QueryError, EXIT_USAGE),
    (DeviceError, EXIT_USAGE), (AudioDecodeError, EXIT_USAGE), (FileNotFoundError, EXIT_USAGE),
    (KeyNameTaken, EXIT_USAGE), (api_keys.NoKeys, EXIT_NOT_READY), (KeywordIndexUnavailable, EXIT_NOT_READY),
    (ucs.ListError, EXIT_USAGE),
)


# --- the verbs

def index(settings: Settings, args: argparse.Namespace) -> int:
    from indexer.watch import check_watchable  # torch and the model: only for the verbs that embed

    if not args.paths and not args.reembed:
        raise ConfigError("index needs a PATH: the folders or files to index (or --reembed alone, to embed "
                          "the files indexed already with the model chosen now)")
    if args.watch:  # refused before anything is loaded or made
        if not args.paths:
            raise ConfigError("--watch needs the folders to watch")
        if args.ray is not None:
            raise ConfigError("--watch indexes on this machine; --ray is for one run over a library: use one or the other")
        check_watchable(args.paths, args.force_network)
    if args.ray is None:
        return index_with(settings, args, None)
    from indexer.cluster import ClusterError, RayEmbedding  # Ray: only for --ray

    try:
        return index_with(settings, args, RayEmbedding(None if args.ray is True else args.ray, device=settings.device, show_progress=True))
    except ClusterError as error:  # Ray missing or unreachable, or the run failed on it
        print(f"clapdex: {error}", file=sys.stderr)
        return EXIT_NOT_READY


def index_with(settings: Settings, args: argparse.Namespace, embedding) -> int:
    """The index verb, its options checked; ``embedding``: a ``indexer.cluster.RayEmbedding`` (it
    connects on entering), or None to decode and embed on this machine."""
    from indexer import index_paths
    from indexer.pipeline import embed_pending, start_index_workers
    from indexer.watch import watch

    start_index_workers(decoders=embedding is None)  # before the model: forked from a process holding a GPU, each costs ~47 ms
    with embedding or contextlib.nullcontext(), Library(settings, create=True, reembed=args.reembed) as library:
        if not args.paths and library.indexed is None:
            raise NoIndexError(library.where)
        if library.indexed is None or args.reembed:  # say at once which model it gets
            _ = library.encoder
            if library.notice:
                print(f"clapdex: {library.notice}", file=sys.stderr, flush=True)
        if args.watch:
            watch(library, args.paths, interval=args.interval, force_network=args.force_network,
                  after_run=functools.partial(print_index_report, as_json=args.json), show_progress=True)
            return 0
        if args.paths:
            report = index_paths(library, args.paths, checkpoint_files=args.commit_every, show_progress=True,
                                 embedding=embedding)
        else:
            report = embed_pending(library, checkpoint_files=args.commit_every, show_progress=True, embedding=embedding)
        print_index_report(report, as_json=args.json)
        if library.kept_near_duplicates().pairs is not None:
            # Kept near duplicates stay current: the changed files are compared with the library.
            started = time.perf_counter()
            if library.update_near_duplicates(_progress_line) != "current":
                print(f"near duplicates brought up to date in {time.perf_counter() - started:.1f} s", flush=True,
                      file=sys.stderr if args.json else sys.stdout)
    if args.paths and not any(report.summary().values()):
        print(f"clapdex: no audio files under {', '.join(args.paths)} (looked for "
              f"{', '.join(sorted(AUDIO_EXTENSIONS))})", file=sys.stderr)
    return 0


def print_index_report(report, as_json: bool = False) -> None:
    """The run's counts on one line, and each file that failed on stderr; or all of it as one JSON
    object on one line (with --watch, a line a run)."""
    if as_json:
        failed = [{"path": path, "reason": reason} for path, reason in report.errors]
        print(json.dumps({**report.summary(), "failed": failed}), flush=True)
        return
    print(f"{report.indexed} indexed, {report.unchanged} skipped unchanged, {report.moved} moved, "
          f"{report.removed} removed, {len(report.errors)} errors", flush=True)
    for path, reason in report.errors:
        print(f"error: {path}: {reason}", file=sys.stderr)


def search(settings: Settings, args: argparse.Namespace) -> int:
    return run_search(settings, args, parse_query(args.text) or None)


def similar(settings: Settings, args: argparse.Namespace) -> int:
    if (args.start is None) != (args.end is None):
        raise QueryError("--start and --end go together")
    if not os.path.isfile(args.file):
        raise FileNotFoundError(f"no such file: {args.file}")
    return run_search(settings, args, Query.sound(os.path.abspath(args.file), args.start, args.end))


def run_search(settings: Settings, args: argparse.Namespace, query: Query | None) -> int:
    if args.min_duration is not None and args.max_duration is not None and args.min_duration > args.max_duration:
        raise QueryError(f"--min-duration {args.min_duration:g} is above --max-duration {args.max_duration:g}")
    if args.suggested and not (args.category or args.keywords):
        raise QueryError("--suggested goes with --category or --keywords: it lets them match suggested categories")
    filters = Filters(
        min_duration=args.min_duration, max_duration=args.max_duration, sample_rates=tuple(args.rate),
        channels=tuple(args.channels), formats=tuple(args.format), folders=tuple(args.folder), tags=tuple(args.tag),
        categories=tuple(args.category), suggested=args.suggested,
    )
    if query is None and not args.keywords and not filters:
        raise QueryError("give a description, --keywords or a filter")
    with Library(settings) as library:
        warn(library.disagreement())
        results = Searcher(library).search(
            query, filters=filters, keywords_text=args.keywords, keyword_weight=args.keyword_weight,
            page_size=args.top, sort=args.sort,
        )
    print_hits(results.hits, args.json)
    if not results.hits:  # as grep does: a script can tell "nothing found" from "found"
        print("clapdex: no files match", file=sys.stderr)
        return EXIT_NOTHING
    if results.best_match == "weak":
        print("clapdex: nothing matches well: the best hit scores no higher than queries with no answer "
              "in this library do", file=sys.stderr)
    return 0


def print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        return
    print(f"{'rank':>4}  {'score':>6}  {'match':<6}  {'start-end (s)':>13}  path")
    for rank, hit in enumerate(hits, 1):
        score = f"{hit.score:>6.3f}" if hit.score is not None else f"{'-':>6}"  # keywords or filters alone
        print(f"{rank:>4}  {score}  {hit.match or '-':<6}  {f'{hit.start:.1f}-{hit.end:.1f}':>13}  {hit.path}")


def tag(settings: Settings, args: argparse.Namespace) -> int:
    """Suggest UCS categories and tags for the files not tagged yet; or write, run or undo a rename plan."""
    from indexer import renaming  # the indexer's packages (torch): only for this verb

    if args.apply or args.undo:
        plan = args.apply or args.undo
        try:
            renaming.read_plan(plan)  # a plan that cannot be read is refused before the library opens
            with keys_library(settings) as library:
                log_file = renaming.default_undo_log(plan) if args.apply else None
                report = renaming.apply_plan(library, plan, undo_log=log_file)
        except renaming.PlanError as error:
            print(f"clapdex: {error}", file=sys.stderr)
            return EXIT_USAGE
        if args.json:
            print(json.dumps({"renamed": [{"from": old, "to": new} for old, new in report.renamed],
                              "skipped": [{"path": path, "reason": why} for path, why in report.skipped],
                              "undo_log": report.undo_log}, indent=2))
        else:
            for old, new in report.renamed:
                print(f"renamed: {old} -> {os.path.basename(new)}")
            print(f"{len(report.renamed)} renamed, {len(report.skipped)} skipped")
        for path, why in report.skipped:
            print(f"clapdex: skipped {path}: {why}", file=sys.stderr)
        if report.undo_log:
            print(f"clapdex: undo with `clapdex tag --undo {report.undo_log}`", file=sys.stderr)
        return EXIT_PROBLEMS if report.skipped else 0
    from indexer.tagging import tag_library  # the model's text tower: only to tag

    if args.export and not settings.ucs_list:
        print("clapdex: --export plans UCS names, which need subcategories: pass --ucs-list FILE, the official "
              "UCS list saved as CSV (or set ucs_list in config.toml)", file=sys.stderr)
        return EXIT_USAGE
    if settings.ucs_list:
        ucs.load_list(settings.ucs_list)  # a list that cannot be read is refused before the library opens
    with keys_library(settings) as library:
        report = tag_library(library, progress=print_tag_progress)
        rows = renaming.export_plan(library, args.export, min_confidence=args.min_confidence, creator=args.creator,
                                    source=args.source) if args.export else None
    if args.json:
        print(json.dumps({**dataclasses.asdict(report), "plan": args.export, "plan_rows": rows}, indent=2))
    else:
        print(f"{report.tagged} tagged, {report.unchanged} unchanged")
        if args.export:
            print(f"{rows} renames planned in {args.export}; read it, then `clapdex tag --apply {args.export}`")
    return 0


def print_tag_progress(done: int, total: int) -> None:
    if done < total:  # the last batch's count is the summary's
        print(f"clapdex: tagged {done} of {total} files", file=sys.stderr, flush=True)


def status(settings: Settings, args: argparse.Namespace) -> int:
    with Library(settings) as library:
        state, disagreement = library.status(), library.disagreement()
    if args.json:
        print(json.dumps({"home": str(settings.home), **dataclasses.asdict(state)}, indent=2))
        return 0
    model = state.model
    print(f"home:    {settings.home}")
    print(f"model:   {model}" + (f" from {model.weights_path}" if model.weights_path else ""))
    print(f"files:   {state.indexed} indexed, {len(state.errors)} errors, {state.pending} pending")
    print(f"windows: {state.windows}")
    if state.run is not None:
        print(f"run:     {state.run_described}")
    for path, error in state.errors:
        print(f"error: {path}: {error}")
    for folder in state.away:
        print(folder.line())
    warn(disagreement)
    return 0


def duplicates(settings: Settings, args: argparse.Namespace) -> int:
    with Library(settings) as library:
        exact, near = library.exact_duplicates(), library.near_duplicates(args.threshold, _progress_line)
    if args.json:
        print(json.dumps({"exact": exact, "near": [dataclasses.asdict(pair) for pair in near]}, indent=2))
        return 0
    for group in exact:
        print("exact: " + "  ".join(group))
    for pair in near:
        print(f"near {pair.score:.4f}: {pair.first}  {pair.second}")
    print(f"{len(exact)} groups of exact duplicates, {len(near)} near-duplicate pairs (threshold {args.threshold})")
    return 0


def doctor(settings: Settings, args: argparse.Namespace) -> int:
    from indexer.doctor import checkup  # the model: only when there is something to embed again

    with Library(settings) as library:
        found = checkup(library, fix=args.fix, show_progress=not args.json)
    findings = found.findings
    exit_status = EXIT_PROBLEMS if findings.missing_folders or (found.repaired is None and not findings.healthy) else 0
    if args.json:
        print(json.dumps(found.as_json(), indent=2))
        return exit_status
    for line in findings.lines():
        print(line)
    if findings.healthy:
        print("catalog, vectors and disk agree")
    elif found.repaired is None:
        if findings.repairable:  # missing folders are their user's to settle, not --fix's
            print("run `clapdex doctor --fix` to repair" + (" the rest" if findings.missing_folders else ""))
    else:
        print(f"repaired; {found.repaired.indexed} files embedded again, {len(found.repaired.errors)} errors")
        for path, reason in found.repaired.errors:
            print(f"error: {path}: {reason}", file=sys.stderr)
    return exit_status


def forget(settings: Settings, args: argparse.Namespace) -> int:
    from indexer.forgetting import IndexRunning, NothingIndexed, forget as forget_paths

    with Library(settings) as library:
        try:
            forgotten = forget_paths(library, args.paths)
        except (NothingIndexed, IndexRunning) as refused:
            print(f"clapdex: {refused}", file=sys.stderr)
            return EXIT_USAGE if isinstance(refused, NothingIndexed) else EXIT_NOT_READY
        if library.kept_near_duplicates().pairs is not None:  # kept current, as after an index run
            library.update_near_duplicates(_progress_line)
    files, windows = sum(item.files for item in forgotten), sum(item.windows for item in forgotten)
    if args.json:
        print(json.dumps({"forgotten": [dataclasses.asdict(item) for item in forgotten], "files": files,
                          "windows": windows}, indent=2))
        return 0
    for item in forgotten:
        print(f"forgot {item.files} files ({item.windows} windows) under {item.path}")
    if len(forgotten) > 1:
        print(f"forgot {files} files ({windows} windows) in all")
    return 0


def ui(settings: Settings, args: argparse.Namespace) -> int:
    """Become the Streamlit server (exec), so a signal to this process reaches the server itself."""
    from server.sign_in import provider_configured
    from ui import KEYS, MAX_UPLOAD_BYTES, PROVIDER, SECRETS, SERVER, SIGN_IN

    # Refuse at once, before any server starts: a home with no index; a page open to the network.
    secrets_file = settings.home / SECRETS
    sign_in = ""
    with Library(settings) as library:
        if args.sign_in or not is_loopback(args.host):
            sign_in = PROVIDER if provider_configured(secrets_file) else KEYS
        if sign_in == KEYS:
            ways = (f"configure an OpenID Connect provider ([auth] in {secrets_file}) or make a key "
                    "(`clapdex keys add NAME --role read`)")
            api_keys.require_some(library, f"the page on {args.host} would be open to anyone who can reach it: {ways}"
                                  if not args.sign_in else f"nobody could sign in: {ways}")
    # The page searches the library's index: its codes in huge pages (search.store).
    environment = with_huge_pages({**os.environ, **settings.environment(), SIGN_IN: sign_in})
    command = [
        sys.executable, "-m", "streamlit", "run", str(SERVER),
        "--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true",
        "--server.maxUploadSize", str(MAX_UPLOAD_BYTES // 2**20), "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        # The home's secrets only, never those of whatever folder the page was started in.
        "--secrets.files", str(secrets_file),
    ]
    how = {PROVIDER: "; visitors sign in through the OpenID Connect provider in " + str(secrets_file),
           KEYS: "; visitors sign in with an API key"}.get(sign_in, "")
    print(f"clapdex: serving {settings.home} on http://{args.host}:{args.port}{how}", file=sys.stderr, flush=True)
    end_with_parent()
    os.execve(sys.executable, command, environment)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """The HTTP API on uvicorn, until SIGTERM or SIGINT (or this process's parent ends)."""
    import uvicorn

    from server.api import Limits, create_app

    with Library(settings) as library:
        api_keys.require_some(library, "no API keys yet, and every call needs one: make one with "
                                       "`clapdex keys add NAME --role admin`")
    workers = args.workers
    if workers and settings.store.startswith("qdrant+local://"):
        # qdrant-client's local mode lets one process open its folder: search in this one.
        print("clapdex: a qdrant+local:// store is searched in the server's own process (--workers 0); "
              "a Qdrant server lets workers share it", file=sys.stderr)
        workers = 0
    app = create_app(settings, limits=Limits(requests_per_minute=args.rate_limit), cors_origins=tuple(args.cors_origin),
                     search_processes=workers)
    print(f"clapdex: serving the API of {settings.home} on http://{args.host}:{args.port} (its docs at /docs)",
          file=sys.stderr, flush=True)
    end_with_parent()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def train(settings: Settings, args: argparse.Namespace) -> int:
    """Fine-tune a model on a manifest, or on the library's own metadata turned into one."""
    from encoders.compact import PACKAGED_WEIGHTS  # torch: only for the verbs that need it
    from training.models import TRAINEES
    from training.train import TrainConfig
    from training.train import train as run_training

    manifest, model = args.manifest, settings.model
    if args.from_library:
        from indexer.captions import write_library_manifest

        manifest = os.path.join(args.out, "manifest.jsonl")
        with Library(settings) as library:
            model = model or library.indexed.name
            if not (args.resume and os.path.exists(manifest)):
                written = write_library_manifest(library.catalog, manifest)
                print(f"clapdex: {written.path}: {written.rows} clips from {written.files} files; "
                      f"{len(written.uncaptioned)} left out, with nothing to caption them by", file=sys.stderr)
    model = model or "clapdex-compact"
    config = TrainConfig(
        out=args.out, manifest=manifest, model=model,
        weights=settings.weights or (str(PACKAGED_WEIGHTS) if model == "clapdex-compact" else None),
        epochs=args.epochs, batch_size=args.batch_size, warmup_steps=args.warmup_steps,
        learning_rate=args.learning_rate or TRAINEES[model].fine_tuning_rate, freeze_audio=args.freeze_audio,
        freeze_text=args.freeze_text, resume=args.resume, seed=args.seed, workers=args.workers,
        device=settings.device)
    try:
        record = run_training(config)
    except ValueError as error:  # data or options that cannot train: the user's to fix
        print(f"clapdex: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"trained {model}: {record['result']}")
    print(f"index with it into a new home: clapdex --home NEW_HOME --model {model} --weights {record['result']} "
          "index PATH...")
    return 0


def keys_add(settings: Settings, args: argparse.Namespace) -> int:
    with keys_library(settings) as library:
        key = api_keys.add(library, args.name, args.role)
    print(json.dumps({"name": args.name, "role": args.role, "key": key}) if args.json else key)
    print(f"clapdex: key {args.name} ({args.role}) made; it is shown only now, store it", file=sys.stderr)
    return 0


def keys_list(settings: Settings, args: argparse.Namespace) -> int:
    with keys_library(settings) as library:
        keys = api_keys.listed(library)
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    print_table([("name", "role", "created", "last used", "revoked")] + [
        (key["name"], key["role"], key["created"], key["last_used"] or "-", key["revoked"] or "-") for key in keys])
    return 0


def keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    with keys_library(settings) as library:
        revoked = api_keys.revoke(library, args.name)
    if not revoked:
        print(f"clapdex: no active key named {args.name}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"name": args.name, "revoked": True}))
    print(f"clapdex: key {args.name} revoked", file=sys.stderr)
    return 0


@contextlib.contextmanager
def keys_library(settings: Settings):
    """The library whose API keys (or suggestions) are meant; a catalog made before there were
    keys (or suggestions) gets their tables."""
    with Library(settings) as library:
        library.catalog.create_tables()
        yield library


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(map(len, column)) for column in zip(*rows)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


_last_line = [0.0]


def _progress_line(doing: str, done: float) -> None:
    """A near-duplicate pass's progress on stderr, a line every few seconds (minutes at 10^6 files)."""
    if time.monotonic() - _last_line[0] >= 5 or done >= 1:
        _last_line[0] = time.monotonic()
        print(f"clapdex: near duplicates: {doing} ({done:.0%})", file=sys.stderr, flush=True)


def warn(problem: str | None) -> None:
    if problem:
        print(f"clapdex: warning: {problem}", file=sys.stderr)


# --- the command line

def _checked(check, what: str):
    """An argparse type: ``check(text)`` gives the value or None, and None is an error naming ``what``."""
    def convert(text: str):
        try:
            value = check(text)
        except (ValueError, QueryError):
            value = None
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    convert.__name__ = what
    return convert


def _number(kind, low=None, high=None, above=None):
    def check(text):
        value = kind(text)
        ok = (low is None or value >= low) and (high is None or value <= high) and (above is None or value > above)
        return value if ok else None
    return check


COUNT = _checked(_number(int, low=1), "a whole number of at least 1")
NATURAL = _checked(_number(int, low=0), "a whole number of at least 0")
SECONDS = _checked(_number(float, low=0.0), "a number of seconds, 0 or more")
POSITIVE_SECONDS = _checked(_number(float, above=0.0), "a number of seconds above 0")
POSITIVE = _checked(_number(float, above=0.0), "a number above 0")
SHARE = _checked(_number(float, low=0.0, high=1.0), "a share between 0 and 1")
SIMILARITY = _checked(_number(float, above=0.0, high=1.0), "a cosine similarity above 0 and at most 1")
PORT = _checked(_number(int, low=1, high=65535), "a port from 1 to 65535")
TIME = _checked(parse_time, "a time: seconds (75) or minutes:seconds (1:15)")
FOLDER = _checked(lambda text: os.path.abspath(text) if os.path.isdir(text) else None, "a folder")
EXISTING = _checked(lambda text: text if os.path.exists(text) else None, "an existing file or folder")
MODEL = _checked(lambda text: text if text in list_models() else None, f"a model ({', '.join(list_models())})")
DEVICE = _checked(lambda text: None if device_problem(text) else text,
                  "a device: auto, cpu, cuda, cuda:N, several such as cuda:0,cuda:1, or all")


def STORE(text: str) -> str:
    """An argparse type: a store URL whose problem, if any, is named (a misspelt option, say)."""
    problem = store_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r} is not a vector store: {problem}")
    return text


KEY_NAME = _checked(api_keys.valid_name, api_keys.NAME_RULE)
ROLE = _checked(lambda text: text if text in api_keys.ROLES else None, f"a role ({', '.join(api_keys.ROLES)})")
# A path that need not exist; an empty one (an unset shell variable) would name the current folder.
PATH = _checked(lambda text: text if text.strip() else None, "a path")
EXISTING_FILE = _checked(lambda text: text if os.path.isfile(text) else None, "an existing file")
UCS_BLOCK = _checked(lambda text: text if text.strip() and "_" not in text and os.sep not in text else None,
                     "a UCS name block (no underscore, no slash)")
# auto (the cluster this machine is part of), HOST:PORT of the head, ray://HOST:PORT (Ray Client).
_RAY_ADDRESS = re.compile(r"(auto|(ray://)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5}))")
RAY_ADDRESS = _checked(
    lambda text: text if (found := _RAY_ADDRESS.fullmatch(text)) and (text == "auto" or 0 < int(found[4]) <= 65535)
    else None, "a Ray address: auto, HOST:PORT or ray://HOST:PORT (the PATHs go before --ray, or write --ray=ADDRESS)")
FORMAT_NAMES = sorted(set(AUDIO_EXTENSIONS.values()))


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line naming what is wrong, as every other message of clapdex: no usage block."""
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def global_options(defaults: bool) -> argparse.ArgumentParser:
    """The options every verb takes. The top level holds their defaults; a verb's copies default
    to nothing (SUPPRESS), so they never overwrite one given at the top level."""
    parser = Parser(add_help=False)
    default = None if defaults else argparse.SUPPRESS
    group = parser.add_argument_group("library options")
    group.add_argument("--home", default=default, help="library home (default: $CLAPDEX_HOME or ~/.clapdex)")
    group.add_argument("--catalog", default=default, metavar="URL",
                       help="catalog database URL (default: SQLite in the home)")
    group.add_argument("--model", type=MODEL, default=default,
                       help=f"model: {', '.join(list_models())} (default: the index's own; for a new one msclap-2023, "
                            "or clapdex-compact where its weights cannot be had)")
    group.add_argument("--weights", default=default, metavar="PATH", help="the model's weights file")
    group.add_argument("--device", "--devices", dest="device", type=DEVICE, default=default,
                       help="auto (default), cpu, cuda, cuda:1, ...; for msclap-2023 also several, cuda:0,cuda:1, "
                            "or all (every GPU), which share each batch")
    group.add_argument("--store", type=STORE, default=default, metavar="URL",
                       help="vector store: faiss (default), qdrant://HOST:6333, qdrant+local:///FOLDER; a Qdrant "
                            "URL may lay out the collection it makes: ?shards=6&replicas=2&write_consistency=2")
    group.add_argument("-v", "--verbose", action="store_true", default=False if defaults else argparse.SUPPRESS,
                       help="show clapdex's debug log (what each step does, every error's traceback)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    common = global_options(defaults=False)
    parser = Parser(prog="clapdex", description="Semantic search for sound libraries.",
                    parents=[global_options(defaults=True)])
    parser.add_argument("--version", action="version", version=f"clapdex {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    def verb(name: str, run, help: str, under=verbs) -> argparse.ArgumentParser:
        added = under.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".", parents=[common])
        added.set_defaults(run=run)
        return added

    index_verb = verb("index", index, "index the audio files under folders or files")
    index_verb.add_argument("paths", nargs="*", type=EXISTING, metavar="PATH")
    index_verb.add_argument("--reembed", action="store_true",
                            help="a library indexed with another model or other weights (an older clapdex's): "
                                 "embed all its files again with the model chosen now (--model, --weights, or "
                                 "its model's own weights), then index the PATHs if any")
    index_verb.add_argument("--watch", action="store_true",
                            help="keep indexing as files change (polls; refused on network mounts)")
    index_verb.add_argument("--interval", type=POSITIVE_SECONDS, default=10.0, metavar="SECONDS",
                            help="with --watch: seconds between polls (default 10)")
    index_verb.add_argument("--force-network", action="store_true", help="with --watch: watch a network mount anyway")
    index_verb.add_argument("--compile", action="store_true", default=None,
                            help="on a GPU, compile the audio model first (about 45 s): twice the windows/s, "
                                 "worth it for many hours of audio")
    index_verb.add_argument("--ray", nargs="?", const=True, type=RAY_ADDRESS, metavar="ADDRESS",
                            help="decode and embed on a Ray cluster: auto, HOST:PORT of its head or ray://HOST:PORT "
                                 "(default: $RAY_ADDRESS, or a Ray started for the run); needs "
                                 "pip install \"clapdex[cluster]\"")
    index_verb.add_argument("--json", action="store_true",
                            help='print the outcome as one JSON object: {"indexed", "unchanged", "moved", "removed", '
                                 '"errors", "failed": [{"path", "reason"}]} (with --watch, a line a run)')
    index_verb.add_argument("--commit-every", type=COUNT, default=500, metavar="N",
                            help="checkpoint catalog and vectors after every N files embedded (default 500)")

    search_verb = verb("search", search, "find sounds matching a description, keywords and filters")
    search_verb.add_argument("text", nargs="?", default="",
                             help='a description; terms add and subtract, quoted terms stay whole: '
                                  '"rain + ./thunder.wav - 2:traffic", \'rain + "./a - b.wav"\'')
    add_hit_options(search_verb)

    similar_verb = verb("similar", similar, "find sounds like an audio file")
    similar_verb.add_argument("file")
    similar_verb.add_argument("--start", type=TIME, metavar="TIME",
                              help="with --end: only this time range of the file (75, 1:15)")
    similar_verb.add_argument("--end", type=TIME, metavar="TIME")
    add_hit_options(similar_verb)

    tag_verb = verb("tag", tag, "suggest UCS categories and descriptive tags for every indexed file; plan, "
                                "apply and undo renames to UCS names")
    plan_action = tag_verb.add_mutually_exclusive_group()
    plan_action.add_argument("--export", metavar="PLAN.csv",
                             help="after tagging, write a rename plan: path, new_name (UCS), cat_id, confidence")
    plan_action.add_argument("--apply", type=EXISTING_FILE, metavar="PLAN.csv",
                             help="rename the files the plan lists (never over an existing file) and write an undo log")
    plan_action.add_argument("--undo", type=EXISTING_FILE, metavar="LOG.csv", help="rename back what an --apply did")
    tag_verb.add_argument("--min-confidence", type=SHARE, default=0.0, metavar="P",
                          help="with --export: plan only suggestions at least this likely, 0 to 1 (default 0; "
                               "accepted ones always)")
    tag_verb.add_argument("--creator", type=UCS_BLOCK, default="Unknown", metavar="ID",
                          help="with --export: the CreatorID of names made anew (default Unknown)")
    tag_verb.add_argument("--source", type=UCS_BLOCK, metavar="ID",
                          help="with --export: the SourceID of names made anew (default: the library folder's name)")
    tag_verb.add_argument("--ucs-list", metavar="FILE",
                          help="the official UCS list saved as CSV (free, public domain, universalcategorysystem.com): "
                               "suggest its subcategories, not only the 82 categories (default: ucs_list in "
                               "config.toml, CLAPDEX_UCS_LIST)")
    tag_verb.add_argument("--json", action="store_true", help="print the outcome as one JSON object")

    status_verb = verb("status", status, "what is indexed, with which model, and which files failed")
    status_verb.add_argument("--json", action="store_true", help="print it as one JSON object")

    duplicates_verb = verb("duplicates", duplicates, "list exact and near-duplicate files (deletes nothing)")
    duplicates_verb.add_argument("--threshold", type=SIMILARITY, default=0.98, metavar="T",
                                 help="cosine similarity from which two files count as near duplicates (default 0.98)")
    duplicates_verb.add_argument("--json", action="store_true", help='print {"exact": [[paths]], "near": [pairs]}')

    doctor_verb = verb("doctor", doctor, "check that catalog, vectors and disk agree")
    doctor_verb.add_argument("--fix", action="store_true",
                             help="repair what is found, embedding files again where needed")
    doctor_verb.add_argument("--json", action="store_true",
                             help="print the findings (and with --fix the repair) as one JSON object; "
                                  "the exit status is as without it")

    forget_verb = verb("forget", forget, "forget the files under folders gone for good (a retired disk), or "
                                         "not wanted: their catalog entries and vectors; no file is touched")
    forget_verb.add_argument("paths", nargs="+", type=PATH, metavar="PATH",
                             help="a library folder (as `clapdex doctor` lists it), any folder inside one, or a file")
    forget_verb.add_argument("--json", action="store_true",
                             help='print {"forgotten": [{"path", "files", "windows"}], "files": N, "windows": N}')

    ui_verb = verb("ui", ui, "serve the search page in the browser")
    ui_verb.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui_verb.add_argument("--port", type=PORT, default=8501, help="port to listen on (default 8501)")
    ui_verb.add_argument("--sign-in", action="store_true",
                         help="visitors sign in, through the OpenID Connect provider in the home's "
                              ".streamlit/secrets.toml or with an API key (always so on an address other than loopback)")

    keys_verb = verb("keys", None, "make, list and revoke the keys of the HTTP API")
    keys_actions = keys_verb.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_key = verb("add", keys_add, "make a key; it is printed once, and only its hash is kept", keys_actions)
    add_key.add_argument("name", type=KEY_NAME, metavar="NAME", help="who or what the key is for (ci-bot, ana@studio)")
    add_key.add_argument("--role", type=ROLE, required=True, help="read (search) or admin (everything)")
    add_key.add_argument("--json", action="store_true", help='print {"name", "role", "key"}')
    list_keys = verb("list", keys_list, "list the keys, revoked ones too (never the keys themselves)", keys_actions)
    list_keys.add_argument("--json", action="store_true", help="print a JSON array")
    revoke_key = verb("revoke", keys_revoke, "revoke a key at once; its name stays taken", keys_actions)
    revoke_key.add_argument("name", metavar="NAME")
    revoke_key.add_argument("--json", action="store_true", help='print {"name", "revoked": true}')

    serve_verb = verb("serve", serve, "serve the HTTP API for other tools (every call needs an API key)")
    serve_verb.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve_verb.add_argument("--port", type=PORT, default=8000, help="port to listen on (default 8000)")
    serve_verb.add_argument("--rate-limit", type=COUNT, default=600, metavar="N",
                            help="requests a minute per key, in bursts of ten seconds' worth (default 600)")
    serve_verb.add_argument("--cors-origin", action="append", default=[], metavar="URL",
                            help="a web origin allowed to call the API from a browser (repeat for more)")
    serve_verb.add_argument("--workers", type=NATURAL, default=min(os.cpu_count() or 1, 4), metavar="N",
                            help="search processes, each with its own model (default: the CPUs, at most 4; "
                            "0 searches in the server's own process)")

    train_verb = verb("train", train, "fine-tune a model on a manifest or on the library's own metadata")
    source = train_verb.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="JSONL or CSV: audio (path; relative to the manifest), caption, "
                        "optional start and end (seconds)")
    source.add_argument("--from-library", action="store_true",
                        help="captions from the indexed files' names, folders, tags, descriptions and UCS "
                        "categories, written to OUT/manifest.jsonl")
    train_verb.add_argument("--out", required=True, metavar="DIR", help="run folder: shards, checkpoints, log.jsonl")
    train_verb.add_argument("--epochs", type=COUNT, default=10)
    train_verb.add_argument("--batch-size", type=COUNT, default=64, help="clips per step (default 64; fewer clips: all)")
    train_verb.add_argument("--learning-rate", type=POSITIVE,
                            help="peak learning rate (default: 1e-4 for clapdex-compact, 1e-5 for msclap-2023)")
    train_verb.add_argument("--warmup-steps", type=NATURAL, default=20)
    train_verb.add_argument("--freeze-audio", action="store_true",
                            help="keep the audio tower and its projection as they are")
    train_verb.add_argument("--freeze-text", action="store_true", help="keep the text tower and its projection as they are")
    train_verb.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    train_verb.add_argument("--seed", type=int, default=0)
    train_verb.add_argument("--workers", type=NATURAL, default=4, help="data loader processes (default 4)")
    return parser


def verb_options_behind_the_verb(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`clapdex --top 2 search bell` as `clapdex search --top 2 bell`: argparse takes only a
    parser's own options before its verb, and users put any option anywhere. Every verb takes
    the library options as well, so moving everything before the verb behind it changes nothing
    else. A token is the verb unless it is the value of an option before it (`--home search`)."""
    verbs = next((action for action in parser._actions if isinstance(action, argparse._SubParsersAction)), None)
    if verbs is None:
        return argv
    taking_values = {option for each in (parser, *verbs.choices.values()) for action in each._actions
                     if action.nargs != 0 for option in action.option_strings}
    for at, token in enumerate(argv):
        if token == "--":
            break
        if token in verbs.choices and not (at and argv[at - 1] in taking_values):
            return [token, *verb_options_behind_the_verb(verbs.choices[token], argv[:at] + argv[at + 1:])]
    return argv


def add_hit_options(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--top", type=COUNT, default=10, metavar="K", help="how many files to list (default 10)")
    verb.add_argument("--json", action="store_true", help="print a JSON array of hits")
    verb.add_argument("--sort", choices=SORTS, default="relevance", help="order of the listed files (default relevance)")
    verb.add_argument("--keywords", default="", metavar="WORDS",
                      help='names, folders, tags, descriptions: space AND, comma OR, -NOT ("door -metal, gate")')
    verb.add_argument("--keyword-weight", type=SHARE, default=0.5, metavar="W",
                      help="keywords' share of the ranking beside the description, 0 to 1 (default 0.5)")
    filters = verb.add_argument_group("filters (applied inside the search; repeat a flag for any of several values)")
    filters.add_argument("--min-duration", type=SECONDS, metavar="SECONDS")
    filters.add_argument("--max-duration", type=POSITIVE_SECONDS, metavar="SECONDS")
    filters.add_argument("--rate", type=COUNT, action="append", default=[], metavar="HZ", help="sample rate")
    filters.add_argument("--channels", type=COUNT, action="append", default=[], metavar="N")
    filters.add_argument("--format", type=str.lower, choices=FORMAT_NAMES, action="append", default=[],
                         metavar="FORMAT", help=f"{', '.join(FORMAT_NAMES)}")
    filters.add_argument("--folder", type=FOLDER, action="append", default=[], metavar="DIR",
                         help="files anywhere below DIR")
    filters.add_argument("--tag", action="append", default=[], metavar="TAG", help="files with every --tag given")
    filters.add_argument("--category", action="append", default=[], metavar="UCS",
                         help="UCS category (DOORS), its CatID prefix (DOOR) or a whole CatID (DOORWood)")
    filters.add_argument("--suggested", action="store_true",
                         help="--category and --keywords also match the UCS category `clapdex tag` suggests first "
                              "for a file, or the one accepted for it")


# Our packages: their debug records are what -v shows; other libraries' stay at warnings.
PACKAGES = ("clapdex", "encoders", "indexer", "search", "server", "training", "ui")


class LogLines(logging.Formatter):
    """`clapdex: message` for progress, `clapdex: warning: message` for what went wrong; with -v,
    every level and the logger's name too, and tracebacks."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        where = f"{record.relativeCreated / 1000:.2f}s {record.name}: " if self.verbose else ""
        line = f"clapdex: {level}{where}{record.getMessage()}"
        if record.exc_info and self.verbose:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LogLines(verbose))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for package in PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(verb_options_behind_the_verb(parser, sys.argv[1:] if argv is None else list(argv)))
        configure_logging(args.verbose)
        settings = load_settings(args.home, catalog=args.catalog, model=args.model, weights=args.weights,
                                 device=args.device, store=args.store, compile=getattr(args, "compile", None),
                                 ucs_list=getattr(args, "ucs_list", None))
        return args.run(settings, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`clapdex status | head`): end quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLOSED_OUTPUT
    except Exception as error:
        for kind, status in USER_ERRORS:
            if isinstance(error, kind):
                print(f"clapdex: {error}", file=sys.stderr)
                return status
        raise
