"""Real audio files for tests, made by sox and ffmpeg as a user's library would hold them."""

from __future__ import annotations

import subprocess
from pathlib import Path


def sox_tone(
    path: Path, seconds: float, *, rate: int = 44100, channels: int = 1, bits: int = 16,
    encoding: str = "signed-integer", tone: str = "sine 440",
) -> Path:
    """A tone file in the format sox picks from ``path``'s extension."""
    options = ["-r", str(rate), "-c", str(channels)]
    if path.suffix in {".wav", ".aiff", ".aif"}:
        options += ["-b", str(bits), "-e", encoding]
    _run("sox", "-n", *options, str(path), "synth", str(seconds), *tone.split())
    return path


def ffmpeg_tone(path: Path, seconds: float, *, rate: int = 44100, channels: int = 2, frequency: int = 440) -> Path:
    """A tone file in the format ffmpeg picks from ``path``'s extension (Opus, MP3, M4A, AAC)."""
    _run(
        "ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"sine=f={frequency}:d={seconds}:r={rate}",
        "-ac", str(channels), str(path),
    )
    return path


def concatenate(path: Path, *parts: Path) -> Path:
    """``parts`` one after another, sample for sample (they must share rate and channels)."""
    _run("sox", *map(str, parts), str(path))
    return path


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)
