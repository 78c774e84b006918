"""A messy library indexed by the real command: every bad file is reported with its reason,
every good one indexed, and the run never stops.

The permission case needs a file the indexer cannot read. Tests run as root in CI, and root
reads any file, so there the command runs with the two capabilities that let root ignore
file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) dropped by ``setpriv``: an honest
unprivileged read of a mode-000 file, without a second user account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sounds import ffmpeg_tone, sox_tone

from search.catalog import ERROR, INDEXED, Catalog
from search.config import load_settings
from search.store import open_store

CLAPDEX = Path(sys.executable).with_name("clapdex")

ODD_NAMES = ["Ünïcødé 雨 🌧.wav", "spaces & 'quotes' (1).flac", "-leading-dash.wav", "new\nline.wav", "UPPER.WAV"]


def build_messy_library(folder: Path) -> dict[str, str | None]:
    """Files -> the error they must be reported with (a phrase of it), or None when they must index."""
    folder.mkdir()
    sox_tone(folder / "mono-8k.wav", 1, rate=8000)
    sox_tone(folder / "stereo-192k-24bit.wav", 1, rate=192000, channels=2, bits=24)
    sox_tone(folder / "16ch-float.wav", 1, rate=48000, channels=16, bits=32, encoding="floating-point")
    sox_tone(folder / "odd-rate-44101.wav", 1, rate=44101)
    sox_tone(folder / "click-10ms.wav", 0.01)
    sox_tone(folder / "silence.flac", 2, tone="sine 440 vol 0")
    ffmpeg_tone(folder / "coded.opus", 1)
    for name in ODD_NAMES:
        sox_tone(folder / name, 0.5)
    full = sox_tone(folder / "full.wav", 4)
    expected: dict[str, str | None] = {path.name: None for path in folder.iterdir()}
    (folder / "truncated.wav").write_bytes(full.read_bytes()[:100_000])  # indexed: what is there
    expected["truncated.wav"] = None
    (folder / "header-only.wav").write_bytes(full.read_bytes()[:44])
    expected["header-only.wav"] = "no audio samples"
    flac = sox_tone(folder / "whole.flac", 4)
    (folder / "truncated.flac").write_bytes(flac.read_bytes()[:20_000])
    flac.unlink()
    expected["truncated.flac"] = "not readable as audio"
    (folder / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "empty file"
    (folder / "corrupt.flac").write_bytes(b"fLaC" + np.random.default_rng(0).bytes(4000))
    expected["corrupt.flac"] = "not readable as audio"
    (folder / "text.mp3").write_text("ID3? no, a shopping list\n" * 50)
    expected["text.mp3"] = "not readable as audio"
    header = bytearray(full.read_bytes())
    header[20:22] = (0x1234).to_bytes(2, "little")  # a format tag no decoder knows
    (folder / "unknown-codec.wav").write_bytes(bytes(header))
    expected["unknown-codec.wav"] = "unsupported audio codec"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=d=1", "-an", str(folder / "video-only.m4a")],
                   check=True)
    expected["video-only.m4a"] = "no audio stream"
    os.symlink("loop-b.wav", folder / "loop-a.wav")
    os.symlink("loop-a.wav", folder / "loop-b.wav")
    expected["loop-a.wav"] = expected["loop-b.wav"] = "Too many levels of symbolic links"
    locked = sox_tone(folder / "locked.wav", 1)
    locked.chmod(0)
    expected["locked.wav"] = "Permission denied"
    return expected


def without_root_file_access() -> list[str]:
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.fail("running as root needs setpriv (util-linux) to test unreadable files honestly")
    dropped = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={dropped}", f"--bounding-set={dropped}"]


def test_messy_library_indexes_every_good_file_and_reports_every_bad_one(tmp_path, tiny_weights, tiny_encoder):
    library = tmp_path / "library"
    expected = build_messy_library(library)
    home = tmp_path / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLAPDEX_BATCH_SIZE": "8"}
    command = [str(CLAPDEX), "--home", str(home), "--device", "cpu", "--weights", str(tiny_weights), "index", str(library)]

    result = subprocess.run(without_root_file_access() + command, capture_output=True, text=True, env=env, timeout=300)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    settings = load_settings(home)
    with Catalog(settings.catalog_url) as catalog:
        records = {Path(record.path).name: record for record in catalog.files()}
        assert sorted(records) == sorted(expected)
        for name, reason in expected.items():
            record = records[name]
            if reason is None:
                assert (record.status, record.error) == (INDEXED, None), name
                assert record.windows, name
            else:
                assert record.status == ERROR and reason in record.error, (name, record.error)
        assert (records["16ch-float.wav"].channels, records["16ch-float.wav"].bit_depth) == (16, 32)
        assert (records["stereo-192k-24bit.wav"].sample_rate, records["stereo-192k-24bit.wav"].bit_depth) == (192000, 24)
        assert [(w.start, w.end) for w in records["click-10ms.wav"].windows] == [(0.0, 0.01)]
        assert records["truncated.wav"].duration == pytest.approx((100_000 - 44) / 2 / 44100, abs=1e-3)
        store = open_store(settings, tiny_encoder.dim)
        assert sorted(store.ids()) == sorted(catalog.window_ids())
        assert np.isfinite(store.reconstruct(np.array(catalog.window_ids()))).all()  # silence included

    status = subprocess.run([str(CLAPDEX), "--home", str(home), "status"], capture_output=True, text=True).stdout
    for name, reason in expected.items():
        if reason is not None:
            assert f"error: {library / name}: " in status and reason in status
    errors = sum(reason is not None for reason in expected.values())
    assert f"{len(expected) - errors} indexed, {errors} errors, 0 pending" in status


def test_an_unchanged_rescan_skips_unreadable_files_and_tries_them_again_once_changed(tmp_path, tiny_weights):
    """Files that could not be decoded are skipped while unchanged; what the system refused (a
    symlink loop, permissions) is tried at every run, as chmod and a fixed link change no mtime."""
    library = tmp_path / "library"
    expected = build_messy_library(library)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLAPDEX_BATCH_SIZE": "8"}
    command = [*without_root_file_access(), str(CLAPDEX), "--home", str(tmp_path / "home"), "--device", "cpu",
               "--weights", str(tiny_weights), "index", str(library)]

    def index() -> tuple[str, list[str]]:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr
        summary = result.stdout.strip().splitlines()[-1]
        return summary, sorted(Path(line.split(": ")[1]).name for line in result.stderr.splitlines()
                                if line.startswith("error: "))

    index()
    refused = ["locked.wav", "loop-a.wav", "loop-b.wav"]
    assert index() == (f"0 indexed, {len(expected) - 3} skipped unchanged, 0 moved, 0 removed, 3 errors", refused)

    sox_tone(tmp_path / "good.flac", 2)
    shutil.move(tmp_path / "good.flac", library / "corrupt.flac")  # mended
    os.utime(library / "text.mp3")  # touched: still no audio, but tried again
    (library / "locked.wav").chmod(0o644)  # readable now, its mtime as it was
    assert index() == (f"2 indexed, {len(expected) - 5} skipped unchanged, 0 moved, 0 removed, 3 errors",
                       ["loop-a.wav", "loop-b.wav", "text.mp3"])


def test_an_unchanged_rescan_writes_nothing_for_files_that_could_not_be_decoded(tmp_path, tiny_encoder):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from libraries import index_into

    library = tmp_path / "library"
    library.mkdir()
    sox_tone(library / "good.wav", 1)
    (library / "empty.wav").write_bytes(b"")
    (library / "text.mp3").write_text("a shopping list\n" * 50)
    (library / "corrupt.flac").write_bytes(b"fLaC" + np.random.default_rng(0).bytes(4000))
    settings = load_settings(tmp_path / "home")
    first = index_into(settings, [library], tiny_encoder)
    assert (first.indexed, len(first.errors)) == (1, 3)

    statements = []

    def note(_connection, _cursor, statement, *_):
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(Engine, "before_cursor_execute", note)
    try:
        again = index_into(settings, [library], tiny_encoder)
    finally:
        event.remove(Engine, "before_cursor_execute", note)
    assert (again.indexed, again.unchanged, again.errors) == (0, 4, [])
    assert statements and not {"INSERT", "UPDATE", "DELETE"} & set(statements), statements
    with Catalog(settings.catalog_url) as catalog:
        assert sorted(Path(record.path).name for record in catalog.errors()) == ["corrupt.flac", "empty.wav", "text.mp3"]


def test_a_file_left_to_embed_while_its_disk_was_away_is_embedded_once_the_disk_is_back(tmp_path, tiny_encoder):
    """Embedding fails for a file whose disk was pulled out since the scan: the next run that
    finds it tries it again, though its size and mtime are still what the scan saw."""
    from libraries import index_into

    disk, other = tmp_path / "disk", tmp_path / "other"
    for folder, names in ((disk, ("a.wav", "b.wav")), (other, ("c.wav",))):
        folder.mkdir()
        for number, name in enumerate(names):
            sox_tone(folder / name, 2, tone=f"sine {300 + 200 * number}")
    settings = load_settings(tmp_path / "home")
    index_into(settings, [disk], tiny_encoder)
    with Catalog(settings.catalog_url) as catalog:  # left to embed, as by an interrupted run
        store = open_store(settings, tiny_encoder.dim)
        store.remove(np.array(catalog.mark_pending(catalog.file(str(disk / "a.wav"))), dtype=np.int64))
        store.save()
        catalog.commit()
    shutil.move(disk, tmp_path / "away")

    report = index_into(settings, [other], tiny_encoder)  # embeds what was left pending too
    assert [Path(path).name for path, _ in report.errors] == ["a.wav"]
    shutil.move(tmp_path / "away", disk)
    back = index_into(settings, [disk], tiny_encoder)
    assert (back.indexed, back.unchanged, back.errors) == (1, 1, [])
    with Catalog(settings.catalog_url) as catalog:
        assert catalog.file(str(disk / "a.wav")).status == INDEXED
