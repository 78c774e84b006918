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
    """The first ``count`` (at most 4) ESC-10 recordings in tests/data, one class after another."""
    from checkpoints import TEST_DATA

    classes = sorted((TEST_DATA / "esc10").iterdir())
    if count > len(classes):
        raise ValueError(f"tests/data/esc10 holds {len(classes)} recordings, not {count}")
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


def append_riff_chunks(path: Path, chunks: dict[bytes, bytes]) -> Path:
    """Append chunks (id -> data) to a RIFF WAVE file and fix its RIFF size, as BWF tools do."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    for chunk_id, body in chunks.items():
        data += chunk_id + len(body).to_bytes(4, "little") + body + b"\0" * (len(body) & 1)
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def bext_chunk(description: str, originator: str, reference: str = "REF0001") -> bytes:
    """An EBU Tech 3285 broadcast extension chunk (version 1)."""
    fixed = (
        description.encode().ljust(256, b"\0") + originator.encode().ljust(32, b"\0")
        + reference.encode().ljust(32, b"\0") + b"2024-05-01" + b"12:30:00" + (0).to_bytes(8, "little")
        + (1).to_bytes(2, "little") + bytes(64) + bytes(10) + bytes(180)
    )
    return fixed + b"A=PCM,F=48000,W=24,M=mono\r\n"


def tagged(path: Path, seconds: float, **tags: str) -> Path:
    """A tone file written by ffmpeg with ``tags`` as its container's metadata."""
    metadata = [option for key, value in tags.items() for option in ("-metadata", f"{key}={value}")]
    _run(
        "ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"sine=f=500:d={seconds}", *metadata, str(path),
    )
    return path
