"""Near duplicates among hundreds of files: synthetic window vectors in a real SQLite catalog
and a real store, planted re-encodes, trims, exact copies and near misses, against a
brute-force comparison of every pair."""

from __future__ import annotations

import numpy as np
import pytest

from search import duplicates
from search.catalog import Catalog, Embedded
from search.duplicates import near_duplicates
from search.qdrant_store import QdrantStore
from search.store import FaissStore

DIM = 1024
THRESHOLD = 0.98


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def noisy(windows: np.ndarray, rng, noise: float) -> np.ndarray:
    """``windows`` moved by noise of norm ``noise``: cosine about 1 / sqrt(1 + noise^2) to them."""
    return unit(windows + unit(rng.standard_normal(windows.shape)) * noise)


def planted_library(rng) -> list[tuple[str | None, np.ndarray]]:
    """(content hash, window vectors) of about 400 files: unrelated sounds, and sounds with
    re-encodes (every window slightly moved), trims (4 of 6 windows, whose mean lies near
    0.82 from the original's, far below the threshold), exact copies (same hash) and near
    misses (windows at cosine 0.94)."""
    sounds = [unit(rng.standard_normal((int(rng.integers(1, 9)), DIM))) for _ in range(340)]
    library: list[tuple[str | None, np.ndarray]] = [(None, windows) for windows in sounds]
    for windows in sounds[:20]:
        library.append((None, noisy(windows, rng, 0.05)))
    for number in range(20, 40):
        sounds[number] = unit(rng.standard_normal((6, DIM)))
        library[number] = (None, sounds[number])
        library.append((None, noisy(sounds[number][1:5], rng, 0.05)))
    for number in range(40, 50):
        library[number] = (f"hash{number}", sounds[number])
        library.append((f"hash{number}", sounds[number].copy()))
    for windows in sounds[50:60]:
        library.append((None, noisy(windows, rng, 0.35)))
    # Two more copies and a re-encode of one sound: the re-encode pairs with all three copies.
    library += [("hash40", sounds[40].copy()), (None, noisy(sounds[40], rng, 0.05))]
    return library


def brute_force(library) -> dict[tuple[int, int], tuple[float, float]]:
    """Every pair's two cosines, of means and of windows (containment), in float64, from one
    matrix of all windows' cosines; exact copies (same hash) left out."""
    vectors = np.concatenate([windows for _, windows in library]).astype(np.float64)
    lengths = np.array([len(windows) for _, windows in library])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cosines = vectors @ vectors.T
    # best[a, b]: the mean over a's windows of each one's best cosine among b's windows
    best = np.add.reduceat(np.maximum.reduceat(cosines, starts, axis=1), starts, axis=0) / lengths[:, None]
    means = unit(np.stack([windows.mean(axis=0) for _, windows in library]).astype(np.float64))
    scores = {}
    for a in range(len(library)):
        for b in range(a + 1, len(library)):
            if library[a][0] is not None and library[a][0] == library[b][0]:
                continue
            containment = best[a, b] if lengths[a] <= lengths[b] else best[b, a]
            scores[a, b] = float(means[a] @ means[b]), float(containment)
    return scores


@pytest.fixture(scope="module")
def library():
    """The files under shuffled paths, so that partners lie far apart in path order."""
    rng = np.random.default_rng(7)
    files = planted_library(rng)
    names = rng.permutation(len(files))
    paths = [f"/lib/{name:04d}.wav" for name in names]
    order = np.argsort(paths)
    return [paths[i] for i in order], [files[i] for i in order]


def add_files(catalog, store, paths, files) -> None:
    for path, (content_hash, windows) in zip(paths, files):
        record = catalog.set_file(None, path, root="/lib", size=100, mtime=1.0, content_hash=content_hash)
        spans = [(3.5 * n, 3.5 * n + 7.0) for n in range(len(windows))]
        _, (ids,) = catalog.replace_windows_of([Embedded(record, spans, 3.5 * len(windows) + 3.5, 44100, 1, "wav/pcm_16")])
        store.add(np.array(ids), windows.astype(np.float32))
    catalog.commit()
    store.save()


@pytest.fixture(scope="module", params=["faiss", "qdrant"])
def indexed(request, tmp_path_factory, library):
    paths, files = library
    tmp_path = tmp_path_factory.mktemp(request.param)
    store = FaissStore(tmp_path / "windows.faiss", DIM) if request.param == "faiss" else QdrantStore(
        f"qdrant+local://{tmp_path / 'qdrant'}", DIM)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    add_files(catalog, store, paths, files)
    yield catalog, store
    store.close()
    catalog.close()


def test_fewer_than_two_files_have_no_pairs(tmp_path):
    store = FaissStore(tmp_path / "windows.faiss", DIM)
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        assert near_duplicates(catalog, store) == []
        add_files(catalog, store, ["/lib/one.wav"], [(None, unit(np.ones((2, DIM))))])
        assert near_duplicates(catalog, store) == []


def test_brute_force_finds_what_was_planted_and_trims_only_by_their_windows(library):
    paths, files = library
    cosines = brute_force(files)
    found = [pair for pair, (mean, containment) in cosines.items() if max(mean, containment) >= THRESHOLD]

    assert len(found) == 20 + 20 + 3
    # No score so near the threshold that float32 rounding could put it on the other side.
    assert min(abs(max(pair_cosines) - THRESHOLD) for pair_cosines in cosines.values()) > 1e-3
    # A search for files within the threshold by their means alone would miss the trims.
    assert sum(cosines[pair][0] < 0.85 for pair in found) == 20


@pytest.mark.parametrize("batch_windows", [duplicates.BATCH_WINDOWS, 40], ids=["one batch", "batches of 40 windows"])
# An inverted file over so few files probes all its lists: it too must find every pair.
@pytest.mark.parametrize("exact_up_to", [duplicates.EXACT_UP_TO, 0], ids=["exact", "inverted file"])
def test_near_duplicates_are_the_brute_force_pairs(indexed, library, monkeypatch, batch_windows, exact_up_to):
    catalog, store = indexed
    paths, files = library
    # Small batches put partners in other batches, as in a large library.
    monkeypatch.setattr(duplicates, "BATCH_WINDOWS", batch_windows)

    pairs = near_duplicates(catalog, store, THRESHOLD, exact_up_to=exact_up_to)

    expected = {(paths[a], paths[b]): max(cosines) for (a, b), cosines in brute_force(files).items()
                if max(cosines) >= THRESHOLD}
    assert sorted((pair.first, pair.second) for pair in pairs) == sorted(expected)
    assert all(pair.score == pytest.approx(expected[pair.first, pair.second], abs=2e-6) for pair in pairs)
    assert [pair.score for pair in pairs] == sorted((pair.score for pair in pairs), reverse=True)


@pytest.mark.parametrize("crowded", [False, True], ids=["both propose", "second proposes"])
@pytest.mark.parametrize("subset_first", [True, False], ids=["subset first", "subset second"])
def test_files_of_equal_length_are_compared_in_path_order(tmp_path, subset_first, crowded):
    """Of two files of three windows, one whose windows all match two of the other's scores
    1 against it one way and 0.67 the other: the first in path order counts as the shorter,
    whichever of the two proposed the pair. Ten near misses of the first, closer to it than
    the second, leave the second the only one to propose it."""
    rng = np.random.default_rng(3)
    sound = unit(rng.standard_normal((3, DIM)))
    subset = noisy(sound[[0, 0, 1]], rng, 0.05)
    first, second = (subset, sound) if subset_first else (sound, subset)
    sounds = [first, second, *(noisy(first, rng, 0.35) for _ in range(10 if crowded else 0))]
    files = [(None, windows) for windows in sounds + [unit(rng.standard_normal((3, DIM))) for _ in range(50)]]
    paths = [f"/lib/{number:02d}.wav" for number in range(len(files))]
    store = FaissStore(tmp_path / "windows.faiss", DIM)
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        add_files(catalog, store, paths, files)

        pairs = near_duplicates(catalog, store, THRESHOLD)

    expected = [(paths[a], paths[b]) for (a, b), cosines in brute_force(files).items() if max(cosines) >= THRESHOLD]
    assert expected == ([(paths[0], paths[1])] if subset_first else [])
    assert [(pair.first, pair.second) for pair in pairs] == expected
