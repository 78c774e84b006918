"""Finding the audio files under the paths a user names, and telling whether one changed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".aif", ".aiff", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac"})


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
