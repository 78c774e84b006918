"""Near duplicates kept by the library: a whole pass kept in a real catalog (SQLite and
PostgreSQL) and a real FAISS store, then brought up to date after files are added, embedded
again, moved and removed, gives what a whole pass over the new library gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from postgres import fresh_database
from test_duplicates_many import DIM, add_files, noisy, planted_library, unit

from search import duplicates
from search.catalog import Catalog, Embedded
from search.duplicates import KEPT_FROM, kept, near_duplicates, update
from search.store import FaissStore


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}" if request.param == "sqlite" else fresh_database()
    store = FaissStore(tmp_path / "windows.faiss", DIM)
    catalog = Catalog(url)
    yield catalog, store, tmp_path
    store.close()
    catalog.close()


def whole(catalog, store, exact_up_to):
    """A whole pass over the catalog as it is now: its pairs from KEPT_FROM, and each file's nearest."""
    library = duplicates._indexed_files(catalog)
    result = duplicates._whole_pass(library, store, exact_up_to, KEPT_FROM)
    nearest = {library.paths[place]: {library.paths[other] for other in row if other >= 0}
               for place, row in enumerate(result.neighbours)}
    return near_duplicates(catalog, store, KEPT_FROM, exact_up_to=exact_up_to), nearest


def kept_nearest(catalog, home_folder):
    with np.load(home_folder / duplicates.GRAPH_FILE) as saved:
        ids, neighbours = saved["ids"], saved["neighbours"]
    paths = {file_id: record.path for file_id, record in catalog.files_by_id(ids.tolist()).items()}
    return {paths[i]: {paths[o] for o in row if o >= 0} for i, row in zip(ids.tolist(), neighbours.tolist())}


def change_library(catalog, store, rng, sounds):
    """Add 60 files (re-encodes and trims of kept ones among them, and ten near misses crowding one
    file's nearest), embed 5 again as other sounds, move 3, remove 20 (paired ones among them)."""
    records = sorted(catalog.files(), key=lambda record: record.path)
    for record in records[:20]:
        store.remove(np.array([window.id for window in record.windows]))
        catalog.delete_file(record)
    for number, record in enumerate(records[20:25]):
        removed, (ids,) = catalog.replace_windows_of(
            [Embedded(record, [(0.0, 7.0), (3.5, 10.5)], 10.5, 44100, 1, "wav/pcm_16")])
        store.remove(np.array(removed))
        store.add(np.array(ids), unit(rng.standard_normal((2, DIM))).astype(np.float32))
    for record in records[25:28]:
        catalog.move_file(record, record.path.replace("/lib/", "/lib/zz-moved-"), root="/lib", mtime=2.0)
    catalog.commit()
    crowded = sounds[records[30].path]
    added = [(None, noisy(sounds[record.path], rng, 0.05)) for record in records[40:60]]
    added += [(None, noisy(sounds[record.path][:max(1, len(sounds[record.path]) - 1)], rng, 0.05))
              for record in records[60:70]]
    added += [(None, noisy(crowded, rng, 0.3)) for _ in range(10)]
    added += [(None, unit(rng.standard_normal((int(rng.integers(1, 6)), DIM)))) for _ in range(20)]
    add_files(catalog, store, [f"/lib/new-{number:03d}.wav" for number in range(len(added))], added)


@pytest.mark.parametrize("exact_up_to", [duplicates.EXACT_UP_TO, 0], ids=["exact", "inverted file"])
def test_kept_pairs_brought_up_to_date_equal_a_whole_pass(home, exact_up_to):
    catalog, store, folder = home
    rng = np.random.default_rng(11)
    files = planted_library(rng)
    paths = [f"/lib/{name:04d}.wav" for name in rng.permutation(len(files))]
    add_files(catalog, store, paths, files)
    sounds = dict(zip(paths, (windows for _, windows in files)))

    assert kept(catalog).pairs is None
    assert update(catalog, store, folder, exact_up_to=exact_up_to) == "whole"
    pairs, nearest = whole(catalog, store, exact_up_to)
    assert kept(catalog, KEPT_FROM) == duplicates.Kept(True, pairs)
    assert len([pair for pair in pairs if pair.score >= 0.98]) == 43
    assert update(catalog, store, folder, exact_up_to=exact_up_to) == "current"

    change_library(catalog, store, rng, sounds)
    assert not kept(catalog).current
    assert update(catalog, store, folder, exact_up_to=exact_up_to) == "updated"

    pairs, nearest = whole(catalog, store, exact_up_to)
    assert kept(catalog, KEPT_FROM) == duplicates.Kept(True, pairs)
    assert kept(catalog, 0.98).pairs == [pair for pair in pairs if pair.score >= 0.98]
    # The rest holds for the exact index; an inverted file's nearest are approximate either way.
    if exact_up_to == 0:
        # The update started from the inverted file of means the whole pass kept; one is kept, of the last pass.
        assert [path.name for path in folder.glob("near_duplicates-*.faiss")] == \
            [duplicates.MEANS_FILE.format(token=json.loads(catalog.near_state())["token"])]
        return
    # Each file's nearest as a whole pass finds them; of exact copies tied at the last place,
    # which one the search keeps depends on how many files it was asked about at once.
    hashes = {record.path: record.content_hash for record in catalog.files()}
    for path, found in kept_nearest(catalog, folder).items():
        swapped = (sorted(hashes[other] for other in found - nearest[path]),
                   sorted(hashes[other] for other in nearest[path] - found))
        assert swapped[0] == swapped[1] and None not in swapped[0], path
    # The changes reach the pairs: new partners found, removed files' pairs gone.
    assert any(pair.first.startswith("/lib/new-") or pair.second.startswith("/lib/new-") for pair in pairs)
    assert all(catalog.file(pair.first) and catalog.file(pair.second) for pair in pairs)


def test_a_kept_graph_that_is_not_the_catalogs_means_a_whole_pass(home):
    catalog, store, folder = home
    rng = np.random.default_rng(5)
    add_files(catalog, store, [f"/lib/{n}.wav" for n in range(30)],
              [(None, unit(rng.standard_normal((2, DIM)))) for _ in range(30)])
    assert update(catalog, store, folder) == "whole"
    (folder / duplicates.GRAPH_FILE).unlink()
    add_files(catalog, store, ["/lib/new.wav"], [(None, unit(rng.standard_normal((2, DIM))))])

    assert update(catalog, store, folder) == "whole"
    assert kept(catalog).current


def test_a_threshold_below_what_is_kept_is_refused(home):
    catalog, _, _ = home
    with pytest.raises(ValueError, match="kept from a similarity of 0.9"):
        kept(catalog, 0.85)
