"""Finding the audio files under the paths a user names."""

from __future__ import annotations

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
