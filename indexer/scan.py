"""Finding the audio files under the paths a user names, and telling whether one changed."""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple, TypeVar

from encoders.audio import AUDIO_EXTENSIONS
from encoders.decoding import default_workers
from encoders.processes import exit_with_parent



class Found(NamedTuple):
    path: str  # absolute
    root: str  # the named folder it was found under (a named file's own folder)


def scan(paths: Iterable[str | os.PathLike]) -> Iterator[Found]:
    """Audio files under ``paths``, each folder in name order, each file once.

    A file named explicitly is taken whatever its extension. Folders are followed through
    symlinks, but a folder already visited (a symlink loop, or two links to one place) is not
    walked again. Raises FileNotFoundError at once, before any file is found, for a path that
    does not exist.
    """
    named = [Path(os.path.abspath(p)) for p in paths]
    for path in named:
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
    return _unique(named)


def _unique(named: list[Path]) -> Iterator[Found]:
    seen_files: set[str] = set()
    seen_folders: set[tuple[int, int]] = set()
    for path in named:
        found = _walk(path, seen_folders) if path.is_dir() else [Found(str(path), str(path.parent))]
        for item in found:
            if item.path not in seen_files:
                seen_files.add(item.path)
                yield item


def _walk(root: Path, seen_folders: set[tuple[int, int]]) -> Iterator[Found]:
    for folder, subfolders, names in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen_folders:
            subfolders.clear()
            continue
        seen_folders.add((stat.st_dev, stat.st_ino))
        subfolders.sort()
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                yield Found(os.path.join(folder, name), str(root))


def content_hash(path: str | os.PathLike) -> str:
    """A digest of the file's bytes: what identifies a file across renames and touches."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Contents(NamedTuple):
    """What reading a file found."""

    digest: str | None  # content_hash; None: the file could not be read
    description: object  # what ``describe(path)`` said; None when the digest was the one known
    error: str | None  # why the file could not be read


def read_contents(path: str, known_digest: str | None, describe: Callable[[str], object]) -> Contents:
    """``path``'s content hash, and its description unless the hash is ``known_digest`` (unchanged)."""
    try:
        digest = content_hash(path)
    except OSError as exc:
        return Contents(None, None, exc.strerror or str(exc))
    return Contents(digest, None if digest == known_digest else describe(path), None)


Batch = TypeVar("Batch")
# Files a reader process reads at a time: a batch is read by several of them.
READ_PART = 16


def read_batches(batches: Iterable[tuple[Batch, list[tuple[str, str | None]]]], describe: Callable[[str], object],
                 workers: int | None = None, alone: int = 64) -> Iterator[tuple[Batch, list[Contents]]]:
    """Each batch with the ``read_contents`` of its (path, known digest) pairs, in the order given.

    Hashing and describing a file costs about a millisecond of one core, mostly in libsndfile
    and mutagen, which hold the GIL or contend in threads. So once more than ``alone`` files
    are to be read (a rescan that finds a few changes reads them here), ``workers`` processes
    (default: one per core) read the batches, a few ahead of the caller, which meanwhile
    writes the batches before into the catalog.
    """
    workers = default_workers() if workers is None else workers
    kept = _READERS.get(workers)
    pool, ahead, read_here = None, collections.deque(), 0
    try:
        for batch, files in batches:
            # Started ahead (``start_readers``), the workers read from the first file: a few
            # long recordings are as much hashing as hundreds of clips.
            if pool is None and workers > 1 and (kept is not None or read_here + len(files) > alone):
                pool = kept or _reader_pool(workers)
            if pool is None:
                read_here += len(files)
                yield batch, _read_all(files, describe)
                continue
            # In parts, so that all the workers read a batch of long recordings (hashing 64 files of
            # 5 MB took one worker a third of a second, while the decoders waited for the batch).
            ahead.append((batch, [pool.submit(_read_all, files[start : start + READ_PART], describe)
                                  for start in range(0, len(files), READ_PART)]))
            if len(ahead) > 2 * workers:
                yield _done(*ahead.popleft())
        while ahead:
            yield _done(*ahead.popleft())
    except BrokenProcessPool:
        if pool is kept:
            del _READERS[workers]  # the next call starts a whole pool again
        raise
    finally:
        if pool is not None and pool is not kept:
            pool.shutdown(cancel_futures=True)


def start_readers(workers: int | None = None) -> None:
    """Start ``read_batches``' worker processes now and keep them for every later call: forked
    from a process that already holds a model on a GPU, each costs about 47 ms to start."""
    workers = default_workers() if workers is None else workers
    if workers > 1 and workers not in _READERS:
        pool = _READERS[workers] = _reader_pool(workers)
        pool.submit(int).result()  # a forking pool starts all its processes at the first task


def _reader_pool(workers: int) -> ProcessPoolExecutor:
    # fork: the workers start in milliseconds, with ``describe`` and its modules loaded.
    return ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), _start_reader, (os.getpid(),))


# Pools started ahead by ``start_readers``, by worker count; they end with the process.
_READERS: dict[int, ProcessPoolExecutor] = {}


def _done(batch: Batch, parts: list[Future]) -> tuple[Batch, list[Contents]]:
    return batch, [contents for part in parts for contents in part.result()]


def _read_all(files: list[tuple[str, str | None]], describe: Callable[[str], object]) -> list[Contents]:
    return [read_contents(path, known, describe) for path, known in files]


def _start_reader(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which ends the pool
    exit_with_parent(parent)  # a parent killed outright leaves its pool's workers waiting for work forever


NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "afs", "ceph", "glusterfs"})


def network_filesystem(path: str | os.PathLike, mounts: str = "/proc/mounts") -> str | None:
    """The network file system type ``path`` lives on (from ``mounts``), or None if local."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces in mount points as \040.
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type if best_type in NETWORK_FILESYSTEMS else None
