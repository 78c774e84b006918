"""The ``clapdex`` command: one verb per stage, each a thin call into the packages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

from encoders import MissingWeightsError, list_models
from encoders.audio import AudioDecodeError
from search.catalog import Catalog, ModelMismatchError
from search.config import ENV_PREFIX, ConfigError, Settings, load_settings
from search.engine import SORTS, Hit, Searcher, open_encoder
from search.filters import Filters
from search.progress import describe as describe_progress
from search.progress import read_progress
from search.query import Query, QueryError, parse_query, parse_time
from search.store import open_store
from ui import APP, MAX_UPLOAD_BYTES

# Errors that are the user's to fix: reported in one message, without a traceback.
USER_ERRORS = (ConfigError, MissingWeightsError, ModelMismatchError, AudioDecodeError, FileNotFoundError, QueryError)


def index(settings: Settings, args: argparse.Namespace) -> int:
    from indexer import index_paths  # torch and the model: only for the verbs that embed

    if args.watch:
        from indexer.watch import watch

        with Catalog(settings.catalog_url) as catalog:
            encoder, notice = open_encoder(settings, catalog.model())
        if notice:
            print(f"clapdex: {notice}", file=sys.stderr)
        watch(settings, args.paths, encoder, interval=args.interval, force_network=args.force_network,
              after_run=print_index_report, show_progress=True)
        return 0
    print_index_report(index_paths(settings, args.paths, checkpoint_files=args.commit_every, show_progress=True))
    return 0


def train(settings: Settings, args: argparse.Namespace) -> int:
    """Fine-tune a model on a manifest, or on the library's own metadata turned into one."""
    import logging

    from encoders.compact import PACKAGED_WEIGHTS  # torch: only for the verbs that need it
    from encoders.training.models import TRAINEES
    from encoders.training.train import TrainConfig
    from encoders.training.train import train as run_training

    logging.basicConfig(level=logging.INFO, format="clapdex: %(message)s")
    manifest, model = args.manifest, settings.model
    if args.from_library:
        from indexer.captions import write_library_manifest

        manifest = os.path.join(args.out, "manifest.jsonl")
        with Catalog(settings.catalog_url) as catalog:
            indexed = catalog.model()
            model = model or (indexed.name if indexed else "")
            if not (args.resume and os.path.exists(manifest)):
                written = write_library_manifest(catalog, manifest)
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
        return 2
    print(f"trained {model}: {record['result']}")
    print(f"index with it into a new home: clapdex --home NEW_HOME --model {model} --weights {record['result']} "
          "index PATH...")
    return 0


def print_index_report(report) -> None:
    if report.notice:
        print(f"clapdex: {report.notice}", file=sys.stderr)
    print(f"{report.indexed} indexed, {report.unchanged} skipped unchanged, {report.moved} moved, "
          f"{report.removed} removed, {len(report.errors)} errors", flush=True)
    for path, reason in report.errors:
        print(f"error: {path}: {reason}", file=sys.stderr)


def doctor(settings: Settings, args: argparse.Namespace) -> int:
    from indexer.doctor import examine, repair
    from indexer.pipeline import embed_pending

    with Catalog(settings.catalog_url) as catalog:
        model = catalog.model()
        if model is None:
            print("nothing indexed yet")
            return 0
        store = open_store(settings, model.dim)
        findings = examine(catalog, store, check_disk=True)
        for line in findings.lines():
            print(line)
        if findings.healthy:
            print("catalog and vectors agree")
            return 0
        if not args.fix:
            print("run `clapdex doctor --fix` to repair")
            return 1
        repair(catalog, store, findings)
        store.save()
        catalog.commit()
    report = embed_pending(settings, show_progress=True)
    print(f"repaired; {report.indexed} files embedded again, {len(report.errors)} errors")
    return 0


def duplicates(settings: Settings, args: argparse.Namespace) -> int:
    from search.duplicates import exact_duplicates, near_duplicates

    with Catalog(settings.catalog_url) as catalog:
        model = catalog.model()
        exact = exact_duplicates(catalog)
        near = near_duplicates(catalog, open_store(settings, model.dim), args.threshold) if model else []
    if args.json:
        print(json.dumps({"exact": exact, "near": [dataclasses.asdict(pair) for pair in near]}, indent=2))
        return 0
    for group in exact:
        print("exact: " + "  ".join(group))
    for pair in near:
        print(f"near {pair.score:.4f}: {pair.first}  {pair.second}")
    print(f"{len(exact)} groups of exact duplicates, {len(near)} near-duplicate pairs (threshold {args.threshold})")
    return 0


def search(settings: Settings, args: argparse.Namespace) -> int:
    return run_search(settings, args, parse_query(args.text) or None)


def similar(settings: Settings, args: argparse.Namespace) -> int:
    if (args.start is None) != (args.end is None):
        raise QueryError("--start and --end go together")
    start, end = (parse_time(args.start), parse_time(args.end)) if args.start is not None else (None, None)
    return run_search(settings, args, Query.sound(os.path.abspath(args.file), start, end))


def run_search(settings: Settings, args: argparse.Namespace, query: Query | None) -> int:
    filters = Filters(
        min_duration=args.min_duration, max_duration=args.max_duration, sample_rates=tuple(args.rate),
        channels=tuple(args.channels), formats=tuple(args.format),
        folders=tuple(os.path.abspath(folder) for folder in args.folder), tags=tuple(args.tag),
        categories=tuple(args.category),
    )
    if query is None and not args.keywords and not filters:
        raise QueryError("give a description, --keywords or a filter")
    with Searcher(settings) as searcher:
        results = searcher.search(
            query, filters=filters, keywords_text=args.keywords, keyword_weight=args.keyword_weight,
            page_size=args.top, sort=args.sort,
        )
        print_hits(results.hits, args.json)
    return 0


def status(settings: Settings, args: argparse.Namespace) -> int:
    with Catalog(settings.catalog_url) as catalog:
        counts, model, errors = catalog.counts(), catalog.model(), catalog.errors()
        print(f"home:    {settings.home}")
        print(f"model:   {model or 'none yet (nothing indexed)'}")
        print(f"files:   {counts['indexed']} indexed, {counts['error']} errors, {counts['pending']} pending")
        print(f"windows: {counts['windows']}")
        run = read_progress(settings.home)
        if run is not None:
            print(f"run:     {describe_progress(run)}")
        for record in errors:
            print(f"error: {record.path}: {record.error}")
    return 0


def ui(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the page with Streamlit, handing it these settings through CLAPDEX_* variables."""
    environment = dict(os.environ)
    for name in ("home", "catalog", "store", "model", "weights", "device"):
        environment[ENV_PREFIX + name.upper()] = str(getattr(settings, name))
    environment[ENV_PREFIX + "ROOTS"] = os.pathsep.join(settings.roots)
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true",
        "--server.maxUploadSize", str(MAX_UPLOAD_BYTES // 2**20), "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]
    print(f"clapdex: serving {settings.home} on http://{args.host}:{args.port}", file=sys.stderr)
    return subprocess.run(command, env=environment).returncode


def print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        return
    print(f"{'rank':>4}  {'score':>6}  {'start-end (s)':>13}  path")
    for rank, hit in enumerate(hits, 1):
        score = f"{hit.score:>6.3f}" if hit.score is not None else f"{'-':>6}"  # keywords or filters alone
        print(f"{rank:>4}  {score}  {f'{hit.start:.1f}-{hit.end:.1f}':>13}  {hit.path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clapdex", description="Semantic search for sound libraries.")
    parser.add_argument("--home", help="library home (default: $CLAPDEX_HOME or ~/.clapdex)")
    parser.add_argument("--catalog", help="catalog database URL (default: SQLite in the home)")
    parser.add_argument("--model", help="encoder model name (default: msclap-2023)")
    parser.add_argument("--weights", help="path to the model weights file")
    parser.add_argument("--device", "--devices", dest="device",
                        help="torch device: auto (default), cpu, cuda, cuda:1, ...; for msclap-2023 also several, "
                             "cuda:0,cuda:1, or all (every GPU), which share each batch")
    parser.add_argument("--store", help="vector store: faiss (default), qdrant://HOST:6333, qdrant+local:///FOLDER")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    verb = verbs.add_parser("index", help="index the audio files under folders or files")
    verb.add_argument("paths", nargs="+", metavar="PATH")
    verb.add_argument("--watch", action="store_true",
                      help="keep indexing as files change (polls; refused on network mounts)")
    verb.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                      help="with --watch: seconds between polls (default 10)")
    verb.add_argument("--force-network", action="store_true", help="with --watch: watch a network mount anyway")
    verb.add_argument("--compile", action="store_true", default=None,
                      help="on a GPU, compile the audio model first (about 35 s): twice the windows/s, "
                           "worth it for many hours of audio")
    verb.add_argument("--commit-every", type=int, default=500, metavar="N",
                      help="checkpoint catalog and vectors after every N files embedded (default 500)")
    verb.set_defaults(run=index)

    verb = verbs.add_parser("train", help="fine-tune a model on a manifest or on the library's own metadata")
    source = verb.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="JSONL or CSV: audio (path; relative to the manifest), caption, "
                        "optional start and end (seconds)")
    source.add_argument("--from-library", action="store_true",
                        help="captions from the indexed files' names, folders, tags, descriptions and UCS "
                        "categories, written to OUT/manifest.jsonl")
    verb.add_argument("--out", required=True, metavar="DIR", help="run folder: shards, checkpoints, log.jsonl")
    # SUPPRESS: unless given here, the global --model/--weights (or the settings) hold.
    verb.add_argument("--model", choices=list_models(), default=argparse.SUPPRESS,
                      help="model to fine-tune (default: the library's, else clapdex-compact)")
    verb.add_argument("--weights", default=argparse.SUPPRESS,
                      help="weights to start from (default: the model's own, as for index)")
    verb.add_argument("--epochs", type=int, default=10)
    verb.add_argument("--batch-size", type=int, default=64, help="clips per step (default 64; fewer clips: all)")
    verb.add_argument("--learning-rate", type=float,
                      help="peak learning rate (default: 1e-4 for clapdex-compact, 1e-5 for msclap-2023)")
    verb.add_argument("--warmup-steps", type=int, default=20)
    verb.add_argument("--freeze-audio", action="store_true", help="keep the audio tower and its projection as they are")
    verb.add_argument("--freeze-text", action="store_true", help="keep the text tower and its projection as they are")
    verb.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    verb.add_argument("--seed", type=int, default=0)
    verb.add_argument("--workers", type=int, default=4, help="data loader processes (default 4)")
    verb.set_defaults(run=train)

    verb = verbs.add_parser("doctor", help="check that catalog, vectors and disk agree")
    verb.add_argument("--fix", action="store_true", help="repair what is found, embedding files again where needed")
    verb.set_defaults(run=doctor)

    verb = verbs.add_parser("duplicates", help="list exact and near-duplicate files (deletes nothing)")
    verb.add_argument("--threshold", type=float, default=0.98, metavar="T",
                      help="cosine similarity from which two files count as near duplicates (default 0.98)")
    verb.add_argument("--json", action="store_true", help='print {"exact": [[paths]], "near": [pairs]}')
    verb.set_defaults(run=duplicates)

    verb = verbs.add_parser("search", help="find sounds matching a description, keywords and filters")
    verb.add_argument("text", nargs="?", default="", help='a description; terms add and subtract: "rain + ./thunder.wav - 2:traffic"')
    add_hit_options(verb)
    verb.set_defaults(run=search)

    verb = verbs.add_parser("similar", help="find sounds like an audio file")
    verb.add_argument("file")
    verb.add_argument("--start", metavar="TIME", help="with --end: only this time range of the file (75, 1:15)")
    verb.add_argument("--end", metavar="TIME")
    add_hit_options(verb)
    verb.set_defaults(run=similar)

    verb = verbs.add_parser("ui", help="serve the search page in the browser")
    verb.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    verb.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    verb.set_defaults(run=ui)

    verb = verbs.add_parser("status", help="what is indexed, with which model, and which files failed")
    verb.set_defaults(run=status)
    return parser


def add_hit_options(verb: argparse.ArgumentParser) -> None:
    verb.add_argument("--top", type=int, default=10, metavar="K", help="how many files to list (default 10)")
    verb.add_argument("--json", action="store_true", help="print a JSON array of hits")
    verb.add_argument("--sort", choices=SORTS, default="relevance", help="order of the listed files (default relevance)")
    verb.add_argument("--keywords", default="", metavar="WORDS",
                      help='names, folders, tags, descriptions: space AND, comma OR, -NOT ("door -metal, gate")')
    verb.add_argument("--keyword-weight", type=float, default=0.5, metavar="W",
                      help="keywords' share of the ranking beside the description, 0 to 1 (default 0.5)")
    filters = verb.add_argument_group("filters (applied inside the search; repeat a flag for any of several values)")
    filters.add_argument("--min-duration", type=float, metavar="SECONDS")
    filters.add_argument("--max-duration", type=float, metavar="SECONDS")
    filters.add_argument("--rate", type=int, action="append", default=[], metavar="HZ", help="sample rate")
    filters.add_argument("--channels", type=int, action="append", default=[], metavar="N")
    filters.add_argument("--format", action="append", default=[], metavar="EXT", help="wav, flac, aiff, mp3, ...")
    filters.add_argument("--folder", action="append", default=[], metavar="DIR", help="files anywhere below DIR")
    filters.add_argument("--tag", action="append", default=[], metavar="TAG", help="files with every --tag given")
    filters.add_argument("--category", action="append", default=[], metavar="UCS", help="UCS category or CatID")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            args.home, catalog=args.catalog, model=args.model, weights=args.weights, device=args.device,
            store=args.store, compile=getattr(args, "compile", None),
        )
        return args.run(settings, args)
    except USER_ERRORS as exc:
        print(f"clapdex: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
