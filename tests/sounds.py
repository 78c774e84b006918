"""Real audio files for tests, made by sox and ffmpeg as a user's library would hold them."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
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


def esc10_clips(count: int) -> list[Path]:
    """The first ``count`` ESC-10 recordings, one class after another."""
    from checkpoints import shared_dir

    classes = sorted((shared_dir() / "data" / "esc10").iterdir())
    return [sorted(folder.glob("*.ogg"))[0] for folder in classes[:count]]


def build_library(folder: Path) -> dict[str, Path]:
    """A small sound library: several formats, nested folders, real recordings and bad files.

    ``long.wav`` is 20 s whose second window (7-14 s) is, sample for sample, ``tone.wav``.
    """
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "recordings").mkdir()
    files = {
        "tone": sox_tone(folder / "tone.wav", 7),
        "stereo": sox_tone(folder / "sub" / "stereo.flac", 3, channels=2, tone="square 220"),
        "mp3": ffmpeg_tone(folder / "sub" / "deeper" / "beep.mp3", 2, frequency=1500),
        "m4a": ffmpeg_tone(folder / "sub" / "chirp.m4a", 2, frequency=300),
    }
    with tempfile.TemporaryDirectory() as parts:
        before = sox_tone(Path(parts) / "before.wav", 7, tone="square 200")
        after = sox_tone(Path(parts) / "after.wav", 6, tone="sawtooth 3000")
        files["long"] = concatenate(folder / "long.wav", before, files["tone"], after)
    for number, clip in enumerate(esc10_clips(2)):
        files[f"esc{number}"] = folder / "recordings" / clip.name
        shutil.copyfile(clip, files[f"esc{number}"])
    files["corrupt"] = folder / "sub" / "corrupt.flac"
    files["corrupt"].write_bytes(b"fLaC" + bytes(range(256)) * 20)
    files["text"] = folder / "notes.wav"
    files["text"].write_text("not audio, despite the name\n")
    files["empty"] = folder / "empty.ogg"
    files["empty"].write_bytes(b"")
    (folder / "readme.txt").write_text("not an audio extension: never scanned\n")
    return files


BAD = ("corrupt", "text", "empty")
