"""The decode and embed stage of an index run on a Ray cluster (`clapdex index --ray`).

Only that stage moves: this process still scans, catalogues and stores, as the run's one
writer (``indexer.pipeline``), so a run on Ray is as incremental and as safe under kill -9 as a
local one. The files to embed go to Ray Data as a list; stateless tasks on CPU workers decode
each file into pieces of windows (``encoders.decoding.decode_file``, as the local decoders do);
stateful actors, one per GPU (or, on a cluster without GPUs, CPU actors), each hold the model
and embed the pieces (``encoders.batches.BatchEmbedder``, as a local run does); the vectors
stream back here, where each file is stored once all its pieces are in.

A worker or node lost mid-run costs a retry, by Ray Data's own fault tolerance (its defaults, which
this module keeps): a decoding task runs again, an embedding actor is started again and the batch
it held retried. A piece that comes back twice (from a retried task) is the same piece, and a file
is stored once. Python errors in decoding are the file's, recorded as in a local run. A decoder
that kills its process on some file (a crash in a native decoder) would be retried as a lost
worker is, without end: a small actor (``_Ledger``) counts the decodings of each file that began
and never finished, and a file whose decoding died ``CRASHES_ALLOWED`` times is recorded as an
error, as a local run records a decoder crash, and the rest of its block goes on.

Ray is an optional dependency (``clapdex[cluster]``), imported only here, and this module only
by `index --ray`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from encoders import load_encoder
from encoders.audio import AudioInfo
from encoders.batches import BatchEmbedder
from encoders.decoding import WINDOWS_PER_PIECE, Piece, decode_file
from indexer.pipeline import TEXTS_AT_ONCE, FileJob, IndexRun

log = logging.getLogger(__name__)

INSTALL = 'pip install "clapdex[cluster]"'
# How long the head has to answer a connection before it counts as unreachable.
CONNECT_SECONDS = 10.0
# Files a decoding task is given at once (a block of the file list): a task lost with its worker
# decodes that many again; fewer make more tasks for Ray to schedule.
FILES_PER_BLOCK = 64
# Files whose pieces a decoding task hands on together.
FILES_PER_BATCH = 8
# Pieces (of up to WINDOWS_PER_PIECE windows) a decoding task hands on at once: at most about 25 MB
# of audio (4 pieces of 31.5 s, MS-CLAP's 8 windows at 3.5-s hops, at 48 kHz), however long the
# recordings.
PIECES_AT_ONCE = 4
# Memory a decoding task reserves: its pieces on their way out and its decoder's buffers. A real
# need, and one the embedding actors do not share, so Ray Data keeps decoding in tasks of its own
# (fused into the actors, it would run on as few cores as there are actors).
DECODE_MEMORY = 256 * 2**20
# CPU cores each embedding actor takes on a cluster without GPUs (its torch threads).
CPU_ACTOR_CORES = 1
# Times a file's decoding may kill its process before the file is recorded as an error: more
# than one, since a node lost mid-file is counted too.
CRASHES_ALLOWED = 3


class ClusterError(Exception):
    """Ray is missing, cannot be reached, or failed the run; said in one line."""


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class RayEmbedding:
    """Connects to the cluster at ``address`` (None: $RAY_ADDRESS, or a Ray started here for the
    run, stopped after it) on entering, and disconnects on leaving."""

    def __init__(self, address: str | None, device: str = "auto", show_progress: bool = False):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.device = device
        self.show_progress = show_progress
        self.ray = import_ray()

    def __enter__(self) -> RayEmbedding:
        ray = self.ray
        # Ray's own records, and its workers' output, are for those who ask (-v): our progress says
        # what is happening (Ray Data would also warn that its progress bars, off for ours, are off,
        # and say when each dataset is done; a local Ray, that it keeps token authentication on).
        verbose = log.isEnabledFor(logging.DEBUG)
        for name in ("ray.data._internal.progress", "ray.data._internal.issue_detection",
                     "ray.data._internal.execution.streaming_executor",
                     "ray._private.authentication.authentication_token_setup"):
            logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)
        where = self.address or "a local Ray started for this run"
        started = time.perf_counter()
        self.check_reachable()
        try:
            if self.address is None:
                ray.init(include_dashboard=False, logging_level=logging.WARNING, configure_logging=False,
                         log_to_driver=verbose)
            else:
                ray.init(address=self.address, logging_level=logging.WARNING, configure_logging=False,
                         log_to_driver=verbose)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise ClusterError(f"cannot reach the Ray cluster at {where}: {_one_line(error)}") from None
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours counts files stored
        context.print_on_execution_start = False
        resources = ray.cluster_resources()
        self.gpus = 0 if self.device == "cpu" else int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 0))
        if not self.gpus and self.cpus < 2:
            ray.shutdown()
            raise ClusterError(f"the Ray cluster at {where} has {self.cpus} CPUs and no GPU: it needs at least 2, "
                               "one to embed and one to decode")
        log.info("%s: %d CPUs, %d GPUs, %d nodes (connected in %.1f s)", where, self.cpus, self.gpus,
                 len([node for node in ray.nodes() if node.get("Alive")]), time.perf_counter() - started)
        return self

    def check_reachable(self) -> None:
        """A head that does not answer is said at once: Ray itself keeps trying for minutes."""
        if self.address is None or self.address == "auto":
            return
        host, port = self.address.removeprefix("ray://").rsplit(":", 1)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
        except OSError as error:
            raise ClusterError(f"cannot reach the Ray cluster at {self.address}: {error.strerror or error}") from None

    def __exit__(self, *exc_info) -> None:
        self.ray.shutdown()  # a Ray started for the run stops with it

    def embed(self, run: IndexRun, files: Iterable[tuple[int, str]], total: int | None = None) -> None:
        """Decode and embed ``files`` ((id, path) of pending files) on the cluster, storing each
        file through ``run`` as its last piece comes back."""
        with tqdm(total=total, desc="embedding", unit=" files", position=1,
                  disable=None if self.show_progress else True) as bar:
            run.bar = bar
            files = list(files)  # the scan, to its end: Ray Data takes the list whole
            if not files:
                return
            jobs = {file_id: _Assembly(FileJob(file_id, path)) for file_id, path in files}
            waiting: collections.deque[FileJob] = collections.deque()
            try:
                for batch in self.dataset(run, files).iter_batches(batch_format="numpy", batch_size=None):
                    for row in _rows(batch):
                        assembly = jobs.get(row["file_id"])
                        if assembly is not None and assembly.add(row):  # None: stored already (a retried task's)
                            waiting.append(jobs.pop(row["file_id"]).job)
                    run.store_ready(waiting)
                    if run.catalog.owes_texts:  # the scan's, a few at a time while the cluster works
                        run.catalog.pay_texts(TEXTS_AT_ONCE)
            except (self.ray.exceptions.RayError, self.ray.data.exceptions.SystemException) as error:
                raise ClusterError(f"the Ray run failed ({_one_line(error)}); the {run.done} files stored "
                                   "so far are kept, and indexing again resumes") from None
            if jobs:  # Ray Data gives back every row it was given, or fails: this would be our mistake
                raise RuntimeError(f"{len(jobs)} files did not come back from Ray, {next(iter(jobs.values())).job.path} "
                                   "the first; they stay pending")

    def dataset(self, run: IndexRun, files: list[tuple[int, str]]):
        ray = self.ray
        encoder = run.encoder
        blocks = max(min(len(files), 2 * self.cpus), math.ceil(len(files) / FILES_PER_BLOCK))
        listed = ray.data.from_items([{"file_id": file_id, "path": path} for file_id, path in files],
                                     override_num_blocks=blocks)
        # On this node (the driver's) where it can be, so it ends with the run. Where its node is
        # lost, Ray starts it again elsewhere and retries the calls waiting on it: its counts
        # start again from nothing, which only lets a crashing file be tried a little longer.
        here = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=True)
        ledger = ray.remote(_Ledger).options(num_cpus=0, scheduling_strategy=here, max_restarts=-1,
                                             max_task_retries=-1).remote()
        decoded = listed.map_batches(
            _decode_batch, batch_size=FILES_PER_BATCH, num_cpus=1, memory=DECODE_MEMORY,
            fn_kwargs={"sample_rate": encoder.sample_rate, "window_seconds": encoder.window_seconds,
                       "hop_seconds": run.hop, "ledger": ledger})
        model = {"name": encoder.name, "weights": encoder.weights_path or None, "weights_id": encoder.weights_id,
                 "batch_size": encoder.batch_size, "compiled": run.library.settings.compile,
                 "device": "cuda" if self.gpus else "cpu"}
        pieces = max(1, 2 * encoder.batch_size // WINDOWS_PER_PIECE)  # two model batches' worth at a time
        if self.gpus:
            resources = {"num_gpus": 1}
            actors = self.gpus
        else:
            # One a node, but never more than half the cores: decoding needs the rest (with every
            # core held by an actor, the decoding tasks would wait for ever).
            resources = {"num_cpus": CPU_ACTOR_CORES}
            nodes = len([node for node in ray.nodes() if node.get("Alive")])
            actors = max(1, min(nodes, self.cpus // (2 * CPU_ACTOR_CORES)))
        return decoded.map_batches(
            _Embedder, fn_constructor_kwargs=model, batch_size=pieces,
            compute=ray.data.ActorPoolStrategy(size=actors), **resources)


@dataclasses.dataclass(eq=False)
class _Assembly:
    """A file's pieces as they come back, in any order; whole once its last piece and every one
    before it are in."""

    job: FileJob
    pieces: dict[int, dict] = dataclasses.field(default_factory=dict)
    count: int | None = None  # known from the last piece

    def add(self, row: dict) -> bool:
        """Takes a piece; True when the file is whole, its windows and vectors in the job."""
        self.pieces[row["piece"]] = row
        if row["done"]:
            self.count = row["piece"] + 1
        if self.count is None or len(self.pieces) < self.count:
            return False
        job = self.job
        for number in range(self.count):
            piece = self.pieces[number]
            job.windows += zip(piece["starts"].tolist(), piece["ends"].tolist())
            job.vectors += list(piece["vectors"])
        last = self.pieces[self.count - 1]
        job.error = last["error"] or None
        if job.error is None:
            job.info = AudioInfo(int(last["sample_rate"]), int(last["channels"]), str(last["codec"]),
                                 float(last["duration"]), int(last["bit_depth"]) if last["bit_depth"] >= 0 else None)
        job.decoded = True
        return True


def _rows(batch: dict[str, np.ndarray]) -> Iterator[dict]:
    names = list(batch)
    for values in zip(*(batch[name] for name in names)):
        row = dict(zip(names, values))
        row["file_id"], row["piece"], row["done"] = int(row["file_id"]), int(row["piece"]), bool(row["done"])
        yield row


class _Ledger:
    """Ray actor: which decodings began and never finished, so that a file that kills its decoder
    is given up rather than retried for ever. A batch is watched file by file only once it is
    decoded again (a task retried): the first time costs one call a batch, not two a file."""

    def __init__(self):
        self.batches: collections.Counter[int] = collections.Counter()  # times begun, by first file id
        self.unfinished: collections.Counter[int] = collections.Counter()  # begun, not finished, by file id

    def begin_batch(self, first_file: int) -> bool:
        """True if this batch was begun before: its task died, or was lost with its node."""
        self.batches[first_file] += 1
        return self.batches[first_file] > 1

    def begin_file(self, file_id: int) -> int:
        """How many earlier decodings of the file began and never finished."""
        self.unfinished[file_id] += 1
        return self.unfinished[file_id] - 1

    def finish_file(self, file_id: int) -> None:
        self.unfinished[file_id] -= 1


def _decode_batch(batch: dict[str, np.ndarray], sample_rate: int, window_seconds: float,
                  hop_seconds: float, ledger) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data task: files -> their pieces, one row each (a file's last piece says how its
    reading ended), handed on every ``PIECES_AT_ONCE``, so a long recording is never whole in memory."""
    import ray

    rows = []
    watched = ray.get(ledger.begin_batch.remote(int(batch["file_id"][0])))
    for file_id, path in zip(batch["file_id"], batch["path"]):
        if watched and (crashes := ray.get(ledger.begin_file.remote(int(file_id)))) >= CRASHES_ALLOWED - 1:
            log.error("%s killed its decoder %d times; recorded as an error", path, crashes + 1)
            pieces = [Piece(0, [], [], [], True, None, f"the decoder crashed on this file ({crashes + 1} times)")]
        else:
            pieces = decode_file(str(path), sample_rate, window_seconds, hop_seconds)
        for number, piece in enumerate(pieces):
            info = piece.info
            rows.append({
                "file_id": int(file_id), "piece": number, "done": piece.done,
                "span": piece.span, "offsets": np.array(piece.offsets, np.int64),
                "lengths": np.array([len(window) for window in piece.samples], np.int64),
                "starts": np.array(piece.starts, np.float64), "ends": np.array(piece.ends, np.float64),
                "error": piece.error or "",
                "sample_rate": info.sample_rate if info else 0, "channels": info.channels if info else 0,
                "codec": info.codec if info else "", "duration": info.duration if info else 0.0,
                "bit_depth": info.bit_depth if info and info.bit_depth is not None else -1,
            })
            if len(rows) == PIECES_AT_ONCE:
                yield _columns(rows)
                rows = []
        if watched:
            ray.get(ledger.finish_file.remote(int(file_id)))
    if rows:
        yield _columns(rows)


class _Embedder:
    """Ray Data actor: holds the run's model (the one the run chose: same name and weights, checked
    by their fingerprint) and turns pieces' audio into their windows' vectors."""

    def __init__(self, name: str, weights: str | None, weights_id: str, batch_size: int, compiled: bool, device: str):
        options = {"compiled": True} if compiled else {}
        self.encoder = load_encoder(name, weights=weights, device=device, batch_size=batch_size, **options)
        if self.encoder.weights_id != weights_id:
            raise RuntimeError(f"{name} on this node has weights {self.encoder.weights_id}, not the run's "
                               f"{weights_id}: install the same clapdex and weights on every node")
        self.batches = BatchEmbedder(self.encoder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for span, offsets, lengths in zip(batch["span"], batch["offsets"], batch["lengths"]):
            if len(lengths):
                self.batches.add_windows(np.asarray(span, np.float32), offsets.tolist(), lengths.tolist())
        vectors = np.stack(list(self.batches.finish())) if any(len(lengths) for lengths in batch["lengths"]) else None
        taken, each = 0, []
        for lengths in batch["lengths"]:
            each.append(vectors[taken : taken + len(lengths)] if len(lengths)
                        else np.empty((0, self.encoder.dim), np.float32))
            taken += len(lengths)
        out = {name: values for name, values in batch.items() if name not in ("span", "offsets", "lengths")}
        out["vectors"] = _ragged(each)
        return out


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows -> a Ray Data batch: a column each, arrays of different lengths as object arrays."""
    columns = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        columns[name] = _ragged(values) if isinstance(values[0], np.ndarray) else np.array(values)
    return columns


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    column = np.empty(len(arrays), dtype=object)
    for at, array in enumerate(arrays):  # one by one: arrays of one shape would be broadcast
        column[at] = array
    return column


def _one_line(error: BaseException) -> str:
    """Ray's errors end with their cause, after a traceback from the worker."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__
