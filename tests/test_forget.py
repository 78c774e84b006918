"""Library folders that go away: `clapdex doctor` lists them and keeps their files (a disk not
plugged in costs nothing); `clapdex forget` forgets them, catalog and vectors together, on a
real SQLite and a real PostgreSQL catalog with real FAISS vectors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sounds import sox_tone
from libraries import index_into, searching
from postgres import fresh_database
from sqlalchemy import bindparam, text

from indexer.consistency import examine
from search.catalog import Catalog, Metadata
from search.config import Settings, load_settings
from search.library import Library
from search.query import Query
from search.store import open_store

TONES = {"a.wav": "sine 300", "b.wav": "square 500", "sub/c.flac": "sawtooth 800"}


def clapdex(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """`clapdex --home HOME [--catalog URL] ARGS...` as a user runs it, in a process of its own."""
    catalog = ["--catalog", settings.catalog] if settings.catalog else []
    return subprocess.run([sys.executable, "-m", "clapdex", "--home", str(settings.home), *catalog, *args],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


def tones(folder: Path, names=TONES) -> Path:
    for name, tone in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sox_tone(folder / name, 9, tone=tone)
    return folder


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Settings:
    return load_settings(tmp_path / "home", catalog=fresh_database() if request.param == "postgresql" else None,
                         batch_size=4)


def catalogued(settings: Settings, dim: int) -> dict[str, list[int]]:
    """path -> its window ids, after checking that catalog, vectors and keyword text agree."""
    with Catalog(settings.catalog_url) as catalog:
        store = open_store(settings, dim)
        assert examine(catalog, store).healthy
        assert sorted(store.ids()) == sorted(catalog.window_ids())
        texts = catalog.session.scalar(text("SELECT count(*) FROM file_text"))
        files = {record.path: [window.id for window in record.windows] for record in catalog.files()}
        assert texts == len(files)
        return files


def rows_of(catalog: Catalog, file_ids: list[int]) -> dict[str, int]:
    """Rows that name any of ``file_ids``, per table."""
    return {table: catalog.session.scalar(text(f"SELECT count(*) FROM {table} WHERE file_id IN :ids")
                                          .bindparams(bindparam("ids", expanding=True)), {"ids": file_ids})
            for table in ("windows", "file_tags", "file_text", "suggestions", "taggings")}


def test_a_demo_home_reused_after_its_old_folder_was_deleted(settings, tmp_path, tiny_encoder):
    """The old clone's folder is gone; the new one holds the same sounds. Every hit came twice
    until the old folder was forgotten; doctor said so and kept the files meanwhile."""
    old, new = tones(tmp_path / "old-clone" / "demo"), tones(tmp_path / "new-clone" / "demo", {**TONES, "d.wav": "sine 900"})
    index_into(settings, [old], tiny_encoder)
    index_into(settings, [new], tiny_encoder)
    query = Query.sound(str(shutil.copy(new / "a.wav", tmp_path / "query.wav")))  # a.wav's sound, from outside
    with searching(settings, tiny_encoder) as searcher:
        hits = searcher.search(query, page_size=2).hits
    assert {hit.path for hit in hits} == {str(old / "a.wav"), str(new / "a.wav")}  # the same sound twice
    before = catalogued(settings, tiny_encoder.dim)
    shutil.rmtree(tmp_path / "old-clone")

    listed = f"library folder not there: {old} (3 files kept: if it is on a disk, connect it; to forget them, " \
             f"`clapdex forget {old}`)"
    for flags in ((), ("--fix",)):
        found = clapdex(settings, "doctor", *flags)
        assert (found.returncode, found.stdout.splitlines()) == (1, [listed]), found.stderr
    assert catalogued(settings, tiny_encoder.dim) == before  # nothing forgotten by doctor, even with --fix
    as_json = clapdex(settings, "doctor", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["missing_folders"] == [
        {"path": str(old), "files": 3, "why": "not there"}], as_json.stderr
    assert json.loads(as_json.stdout)["healthy"] is False and json.loads(as_json.stdout)["repaired"] is None
    status = clapdex(settings, "status")
    assert status.returncode == 0 and listed in status.stdout.splitlines(), status.stdout
    assert json.loads(clapdex(settings, "status", "--json").stdout)["away"] == [
        {"path": str(old), "files": 3, "why": "not there"}]

    typo = clapdex(settings, "forget", str(tmp_path / "old-clone" / "dmeo"))
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr == (f"clapdex: nothing is indexed under {tmp_path / 'old-clone' / 'dmeo'}; the library's "
                           f"folders: {new} (4 files), {old} (3 files)\n")
    assert catalogued(settings, tiny_encoder.dim) == before

    windows = sum(len(ids) for path, ids in before.items() if path.startswith(f"{old}/"))
    with Catalog(settings.catalog_url) as catalog:  # what else the catalog keeps of a file, to go with it
        old_ids = [catalog.file(str(old / name)).id for name in TONES]
        for file_id in old_ids:
            catalog.set_metadata(catalog.file_by_id(file_id), Metadata(tags=("kick",)))
            catalog.set_suggestions(file_id, [("DOORWood", "DOOR", 0.9)], {"material": ("wood", 0.8)}, "test")
        catalog.commit()
        assert rows_of(catalog, old_ids) == {"windows": windows, "file_tags": 3, "file_text": 3, "suggestions": 6,
                                             "taggings": 3}

    with Library(settings) as library:  # near duplicates looked for: kept current by forgetting too
        library.update_near_duplicates()
        assert library.kept_near_duplicates().current

    forgotten = clapdex(settings, "forget", str(old), "--json")
    assert forgotten.returncode == 0, forgotten.stderr
    assert json.loads(forgotten.stdout) == {"forgotten": [{"path": str(old), "files": 3, "windows": windows}],
                                            "files": 3, "windows": windows}
    after = catalogued(settings, tiny_encoder.dim)
    with Catalog(settings.catalog_url) as catalog:
        assert set(rows_of(catalog, old_ids).values()) == {0}
    with Library(settings) as library:
        assert library.kept_near_duplicates().current
    assert after == {path: ids for path, ids in before.items() if path.startswith(f"{new}/")}
    assert clapdex(settings, "doctor").stdout == "catalog, vectors and disk agree\n"
    healthy = clapdex(settings, "doctor", "--json")
    assert healthy.returncode == 0 and json.loads(healthy.stdout)["healthy"] is True
    with searching(settings, tiny_encoder) as searcher:
        hits = searcher.search(query, page_size=2).hits
        assert hits[0].path == str(new / "a.wav") and hits[1].path != str(old / "a.wav")
        assert {hit.path for hit in searcher.search(None, keywords_text="wav, flac", page_size=10).hits} == set(after)


def test_an_unmounted_disk_keeps_its_files_and_comes_back_as_it_was(settings, tmp_path, tiny_encoder, caplog):
    """A disk not mounted leaves an empty mount point: doctor and index runs keep its files,
    nothing is embedded again when it is back, and a folder or file inside a library folder can
    be forgotten alone."""
    disk, elsewhere = tones(tmp_path / "mnt" / "sfx"), tmp_path / "unmounted"
    index_into(settings, [disk], tiny_encoder)
    before = catalogued(settings, tiny_encoder.dim)
    shutil.move(disk, elsewhere)
    disk.mkdir()  # the mount point, empty

    found = clapdex(settings, "doctor", "--fix")
    assert found.returncode == 1 and found.stdout.splitlines() == [
        f"library folder empty: {disk} (3 files kept: if a disk mounts there, mount it; to forget them, "
        f"`clapdex forget {disk}`)"], found.stderr
    with caplog.at_level(logging.WARNING, logger="indexer"):
        unmounted = index_into(settings, [disk], tiny_encoder)  # as `clapdex index --watch` does, unplugged
    assert (unmounted.indexed, unmounted.removed, unmounted.errors) == (0, 0, [])
    assert f"{disk} is empty, but 3 files are indexed under it: kept" in caplog.text
    assert catalogued(settings, tiny_encoder.dim) == before
    disk.rmdir()
    shutil.move(elsewhere, disk)  # mounted again
    again = index_into(settings, [disk], tiny_encoder)
    assert (again.indexed, again.unchanged, again.removed) == (0, 3, 0)
    assert catalogued(settings, tiny_encoder.dim) == before

    one, folder = clapdex(settings, "forget", str(disk / "a.wav")), clapdex(settings, "forget", str(disk / "sub") + "/")
    assert one.stdout == f"forgot 1 files ({len(before[str(disk / 'a.wav')])} windows) under {disk / 'a.wav'}\n"
    assert folder.stdout == f"forgot 1 files ({len(before[str(disk / 'sub' / 'c.flac')])} windows) under {disk / 'sub'}\n"
    assert list(catalogued(settings, tiny_encoder.dim)) == [str(disk / "b.wav")]
