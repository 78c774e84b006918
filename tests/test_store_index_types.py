"""FaissStore's index kinds (exact, IVF, IVF-SQ8 and IVF-SQ4 with exact re-scoring): same answers, filters inside."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import search.store as store_module
from search.store import FaissStore

DIM = 32
KINDS = ("flat", "ivf", "ivf-sq8", "ivf-sq4")


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres, as embeddings of a sound library cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM))
    vectors = centres[rng.integers(0, 20, count)] + 0.5 * rng.standard_normal((count, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def exact_top(queries, vectors, ids, k):
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


def built(tmp_path, kind, count=3000):
    store = FaissStore(tmp_path / "windows.faiss", DIM, kind=kind, gpu=False)
    vectors = clustered(count)
    ids = np.arange(5000, 5000 + count)
    store.add(ids, vectors)
    store.save()
    return store, ids, vectors


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_saves_reopens_and_probing_every_list_is_exact(tmp_path, kind):
    _, ids, vectors = built(tmp_path, kind)
    store = FaissStore(tmp_path / "windows.faiss", DIM, kind=kind, gpu=False)
    assert store.built_kind == kind and len(store) == len(ids)
    assert sorted(store.ids()) == list(ids)
    assert np.allclose(store.reconstruct(ids[[7, 3]]), vectors[[7, 3]], atol=1e-6)
    if kind != "flat":
        store.nprobe = store.index.nlist
    queries = clustered(5, seed=1)
    scores, found = store.search(queries, 10)
    assert (found == exact_top(queries, vectors, ids, 10)).all()
    assert np.all(np.diff(scores, axis=1) <= 0)


@pytest.mark.parametrize("kind", KINDS)
def test_default_probing_keeps_recall(tmp_path, kind):
    store, ids, vectors = built(tmp_path, kind)
    queries = clustered(50, seed=2)
    _, found = store.search(queries, 10)
    truth = exact_top(queries, vectors, ids, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("share", [0.003, 0.3])
def test_filters_apply_inside_the_search_and_fill_the_page(tmp_path, kind, share):
    store, ids, vectors = built(tmp_path, kind)
    allowed = np.random.default_rng(3).choice(ids, round(share * len(ids)), replace=False)
    queries = clustered(3, seed=4)
    _, found = store.search(queries, 8, allowed_ids=allowed)
    assert found.shape == (3, 8) and set(found.ravel()) <= set(allowed)
    # A selective filter's windows are scored exactly; one of 30% here reaches a quarter of the
    # lists with its scaled probes, so every list is probed and each allowed window scored.
    assert (found == exact_top(queries, vectors[allowed - 5000], allowed, 8)).all()


@pytest.mark.parametrize("kind", ("ivf", "ivf-sq8", "ivf-sq4"))
def test_a_filter_of_few_lists_probes_only_its_scaled_share(tmp_path, kind, monkeypatch):
    store, ids, vectors = built(tmp_path, kind)
    probed = []
    original = store_module.faiss.SearchParametersIVF
    monkeypatch.setattr(store_module.faiss, "SearchParametersIVF",
                        lambda **given: probed.append(given["nprobe"]) or original(**given))
    allowed = ids[: len(ids) * 3 // 4]  # scaled probes: 8 / 0.75 = 11 of 64 lists, under a quarter
    store.search(clustered(1, seed=4), 8, allowed_ids=allowed)
    assert probed[-1] == 11 and store.index.nlist == 64
    store.search(clustered(1, seed=4), 8, allowed_ids=ids[::3])  # 8 / 0.33 = 24 lists, over a quarter: all
    assert probed[-1] == 64


@pytest.mark.parametrize("kind", KINDS)
def test_removed_windows_are_never_found_again(tmp_path, kind):
    store, ids, vectors = built(tmp_path, kind)
    gone = ids[:1500]
    assert store.remove(gone) == 1500
    store.save()
    reopened = FaissStore(tmp_path / "windows.faiss", DIM, kind=kind, gpu=False)
    for candidate in (store, reopened):
        _, found = candidate.search(vectors[:20], 10)
        assert not set(found.ravel()) & set(gone)
        assert found.shape == (20, 10)
    assert sorted(reopened.ids()) == list(ids[1500:])


def test_auto_is_exact_then_inverted_file_then_compressed(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "COMPRESS_FROM", 3000)
    store = FaissStore(tmp_path / "windows.faiss", DIM, exact_up_to=1000, gpu=False)
    store.add(np.arange(1000), clustered(1000))
    store.save()
    assert store.built_kind == "flat"
    store.add(np.arange(1000, 1001), clustered(1, seed=5))
    store.save()
    assert store.built_kind == "ivf"
    store.add(np.arange(1001, 3000), clustered(1999, seed=8))
    store.save()
    assert store.built_kind == "ivf-sq8" and sorted(store.ids()) == list(range(3000))
    store.remove(np.arange(2000))
    store.save()
    assert store.built_kind == "ivf-sq8"
    compressed = FaissStore(tmp_path / "other.faiss", DIM, exact_up_to=1000, compress=True, gpu=False)
    compressed.add(np.arange(2000), clustered(2000))
    compressed.save()
    assert compressed.built_kind == "ivf-sq8"


def test_an_inverted_file_is_retrained_when_it_outgrows_its_lists(tmp_path):
    store = FaissStore(tmp_path / "windows.faiss", DIM, kind="ivf", gpu=False)
    store.add(np.arange(300), clustered(300))
    store.save()
    lists = store.index.nlist
    store.add(np.arange(300, 40_000), clustered(39_700, seed=6))
    store.save()
    assert store.index.nlist >= 4 * lists and len(store) == 40_000


def test_compressed_rows_written_after_the_last_save_are_dropped_on_reopening(tmp_path):
    store, ids, vectors = built(tmp_path, "ivf-sq8")
    store.add(np.array([1]), clustered(1, seed=7))  # a run that dies before saving
    reopened = FaissStore(tmp_path / "windows.faiss", DIM, kind="ivf-sq8", gpu=False)
    assert len(reopened.exact_rows.row_ids) == len(ids)
    assert (tmp_path / "windows.faiss.f32").stat().st_size == len(ids) * DIM * 4


def test_compressed_candidates_without_exact_rows_are_skipped_not_fatal(tmp_path):
    store, ids, vectors = built(tmp_path, "ivf-sq8")
    store.exact_rows.remove(ids[:100])  # as after a crash between the two files' writes
    _, found = store.search(vectors[:3], 10)
    assert found.shape == (3, 10) and not set(found.ravel()) & set(ids[:100])


@pytest.mark.parametrize("kind", KINDS)
def test_a_bitmap_and_a_hash_set_allow_the_same_windows(tmp_path, kind, monkeypatch):
    store, ids, vectors = built(tmp_path, kind)
    if kind != "flat":
        store.nprobe = store.index.nlist  # every list: both selectors must give the exact answer
    allowed = np.random.default_rng(5).choice(ids, 900, replace=False)
    queries = clustered(3, seed=6)
    assert isinstance(store_module._Selector(allowed).faiss, store_module.faiss.IDSelectorBitmap)
    by_bitmap = store.search(queries, 20, allowed_ids=allowed)
    monkeypatch.setattr(store_module._Selector, "BITMAP_BYTES_PER_ID", 0)
    assert isinstance(store_module._Selector(allowed).faiss, store_module.faiss.IDSelectorBatch)
    by_hash = store.search(queries, 20, allowed_ids=allowed)
    assert (by_bitmap[1] == by_hash[1]).all()
    assert (by_bitmap[1] == exact_top(queries, vectors[allowed - 5000], allowed, 20)).all()


def test_compressed_search_chooses_its_best_hits_exactly_and_keeps_deeper_ones_best_first(tmp_path, monkeypatch):
    store, ids, vectors = built(tmp_path, "ivf-sq8")
    store.nprobe = store.index.nlist
    monkeypatch.setattr(store_module, "RERANKED_HITS", 5)
    queries = clustered(4, seed=8)
    scores, found = store.search(queries, 60)
    truth = exact_top(queries, vectors, ids, 60)
    assert found.shape == (4, 60) and (found[:, :5] == truth[:, :5]).all()
    assert np.allclose(scores[:, :5], np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :5], atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.mean([len(set(a) & set(b)) / 60 for a, b in zip(found, truth)]) >= 0.95  # 8-bit codes' order
    assert all(len(set(row)) == 60 for row in found)


def test_exact_rows_are_read_without_staying_in_memory(tmp_path, monkeypatch):
    """The float32 rows are read where needed and not left mapped: at 10^6 windows a map of them
    grew the page process's RSS by every row a search had touched (6 GB)."""
    store, ids, vectors = built(tmp_path, "ivf-sq8")
    rows_file = str(store.exact_rows.rows_path)

    def mapped() -> bool:
        return rows_file in open("/proc/self/maps").read()

    store.search(clustered(2, seed=9), 10)
    assert np.array_equal(store.reconstruct(ids[[40, 2, 7]]), vectors[[40, 2, 7]]) and not mapped()
    monkeypatch.setattr(store_module, "READ_ROW_BY_ROW_UP_TO", 10)  # many rows: through a map, dropped after
    assert np.array_equal(store.reconstruct(ids[::-3]), vectors[::-3]) and not mapped()


def test_the_compressed_index_keeps_no_id_hash_and_still_removes(tmp_path):
    """Its vectors come from the exact rows: FAISS's hash from id to place (about 130 MB at
    3 * 10^6 windows) is dropped, also from an index saved with one."""
    store, ids, vectors = built(tmp_path, "ivf-sq8")
    assert store.index.direct_map.type == store_module.faiss.DirectMap.NoMap
    store.index.set_direct_map_type(store_module.faiss.DirectMap.Hashtable)  # as files written before
    store.save()
    reopened = FaissStore(tmp_path / "windows.faiss", DIM, kind="ivf-sq8", gpu=False)
    assert reopened.index.direct_map.type == store_module.faiss.DirectMap.NoMap
    assert reopened.remove(ids[:10]) == 10 and len(reopened) == len(ids) - 10
    _, found = reopened.search(vectors[:10], 5)
    assert not set(found.ravel()) & set(ids[:10])


def list_contents(store) -> list[list[int]]:
    lists = store.index.invlists
    return [sorted(store_module.faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).tolist())
            for number in range(store.index.nlist)]


def centroids_of(store) -> np.ndarray:
    return store.index.quantizer.reconstruct_n(0, store.index.nlist)


def test_auto_turns_8bit_codes_into_4bit_codes_once_they_would_pass_the_line(tmp_path, monkeypatch):
    """Past SMALL_CODES_FROM_BYTES of 8-bit codes the index keeps 4-bit ones, converted from its
    own codes: the same lists and centroids, half the bytes, and the best hits still exact."""
    monkeypatch.setattr(store_module, "COMPRESS_FROM", 2000)
    monkeypatch.setattr(store_module, "SMALL_CODES_FROM_BYTES", 3000 * DIM)
    store = FaissStore(tmp_path / "windows.faiss", DIM, exact_up_to=1000, gpu=False)
    vectors = clustered(3000)
    store.add(np.arange(2500), vectors[:2500])
    store.save()
    assert store.built_kind == "ivf-sq8" and store.index.code_size == DIM
    lists_before, centroids = list_contents(store), centroids_of(store)
    store.add(np.arange(2500, 3000), vectors[2500:])
    lists_after_add = list_contents(store)
    store.save()
    assert store.built_kind == "ivf-sq4" and store.index.code_size == DIM // 2
    assert list_contents(store) == lists_after_add
    assert all(set(a) <= set(b) for a, b in zip(lists_before, lists_after_add))
    assert np.array_equal(centroids_of(store), centroids)
    reopened = FaissStore(tmp_path / "windows.faiss", DIM, exact_up_to=1000, gpu=False)
    assert reopened.built_kind == "ivf-sq4" and len(reopened) == 3000
    reopened.nprobe = reopened.index.nlist
    queries = clustered(5, seed=11)
    _, found = reopened.search(queries, 10)
    assert (found == exact_top(queries, vectors, np.arange(3000), 10)).all()
    reopened.remove(np.arange(2000))  # a library shrinking below the line keeps its 4-bit codes
    reopened.save()
    assert reopened.built_kind == "ivf-sq4"


def rows_read(monkeypatch) -> list[int]:
    """How many exact rows each read of them asks for, from now on."""
    read = []
    original = store_module._ExactRows.vectors
    monkeypatch.setattr(store_module._ExactRows, "vectors", lambda rows, asked: read.append(len(asked)) or original(rows, asked))
    return read


def test_4bit_codes_rescore_their_wider_pool_exactly(tmp_path, monkeypatch):
    store, ids, vectors = built(tmp_path, "ivf-sq4")
    store.nprobe = store.index.nlist
    monkeypatch.setattr(store_module, "RERANKED_HITS_4BIT", 20)
    monkeypatch.setattr(store_module, "RERANK_FACTOR_4BIT", 3)
    monkeypatch.setattr(store_module, "RERANK_POOL_4BIT", 0)
    read = rows_read(monkeypatch)
    queries = clustered(4, seed=12)
    scores, found = store.search(queries, 100)
    truth = exact_top(queries, vectors, ids, 100)
    assert read == [60] * 4  # each query's best 60 candidates by code, re-scored from the rows
    assert found.shape == (4, 100) and (found[:, :20] == truth[:, :20]).all()
    assert np.allclose(scores[:, :20], np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :20], atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0) and all(len(set(row)) == 100 for row in found)
    read.clear()
    monkeypatch.setattr(store_module, "RERANK_POOL_4BIT", 50)
    scores, found = store.search(queries, 5)  # a few hits: chosen among at least RERANK_POOL_4BIT
    assert read == [50] * 4 and (found == truth[:, :5]).all()


def test_4bit_codes_rescore_as_deep_as_the_caller_needs(tmp_path, monkeypatch):
    """A first page asks few hits exactly and reads few rows; a deep page asks every hit exactly,
    among more candidates than it shows, and gets the exact ranking all the way down. 8-bit
    codes keep their own depth."""
    store, ids, vectors = built(tmp_path, "ivf-sq4")
    store.nprobe = store.index.nlist
    monkeypatch.setattr(store_module, "RERANK_FACTOR_4BIT", 3)
    monkeypatch.setattr(store_module, "RERANK_POOL_4BIT", 0)
    read = rows_read(monkeypatch)
    queries = clustered(4, seed=14)
    truth = exact_top(queries, vectors, ids, 100)
    _, found = store.search(queries, 100, exact=10)
    assert read == [30] * 4 and (found[:, :10] == truth[:, :10]).all()
    read.clear()
    scores, found = store.search(queries, 100, exact=100)
    assert read == [300] * 4 and (found == truth).all()
    assert np.allclose(scores, np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :100], atol=1e-6)
    eight_bit, _, _ = built(tmp_path / "8", "ivf-sq8")
    read.clear()
    eight_bit.search(queries, 100, exact=100)
    assert read == [store_module.RERANKED_HITS * store_module.RERANK_FACTOR] * 4


def test_exact_rows_read_after_the_page_cache_lost_them(tmp_path):
    """Rows are asked of the disk all at once before they are read: the answer is the same rows."""
    store, ids, vectors = built(tmp_path, "ivf-sq8")
    descriptor = os.open(store.exact_rows.rows_path, os.O_RDONLY)
    os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)  # this file's pages out of the cache
    os.close(descriptor)
    picked = np.random.default_rng(13).choice(len(ids), 500, replace=False)
    assert np.array_equal(store.reconstruct(ids[picked]), vectors[picked])


def test_huge_page_tunables_join_the_ones_a_process_is_given():
    assert store_module.with_huge_pages({"PATH": "/bin"}) == {
        "PATH": "/bin", "GLIBC_TUNABLES": ":".join(store_module.HUGE_PAGE_TUNABLES)}
    mine = store_module.with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2"})
    assert mine["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2:" \
                                     f"glibc.malloc.mmap_threshold={32 * 2**20}"  # a setting given wins


def test_a_process_started_with_the_tunables_keeps_its_codes_in_huge_pages(tmp_path):
    """Lists of 0.5 MB of codes (as at 10^6 files), read in a thread of their own (as the page's
    script thread opens the library), land in malloc's heap, and the heap in transparent huge
    pages, wherever the system offers them (``madvise`` or ``always``)."""
    child = (
        "import threading, faiss, numpy as np\n"
        "d, nlist = 512, 256\n"
        "index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, nlist, faiss.ScalarQuantizer.QT_8bit)\n"
        "index.train(np.random.default_rng(0).standard_normal((nlist * 40, d), dtype=np.float32))\n"
        "def fill():\n"
        "    for number in range(nlist):\n"
        "        ids = np.arange(number * 1000, number * 1000 + 1000, dtype=np.int64)\n"
        "        codes = np.full((1000, d), number % 256, dtype=np.uint8)\n"
        "        index.invlists.add_entries(number, 1000, faiss.swig_ptr(ids), faiss.swig_ptr(codes))\n"
        "reader = threading.Thread(target=fill)\n"
        "reader.start()\n"
        "reader.join()\n"
        "rollup = open('/proc/self/smaps_rollup').read().split('AnonHugePages:')[1]\n"
        "print(int(rollup.split()[0]) // 1024)\n"
    )
    huge_mb = {}
    plain = {name: value for name, value in os.environ.items() if name != "GLIBC_TUNABLES"}
    for name, environment in (("default", plain), ("tuned", store_module.with_huge_pages(plain))):
        done = subprocess.run([sys.executable, "-c", child], env=environment, capture_output=True, text=True, check=True)
        huge_mb[name] = int(done.stdout.split()[-1])
    system = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    if "[never]" in system:
        assert huge_mb["tuned"] == 0
    else:  # 128 MB of codes: nearly all of it in huge pages, where glibc's defaults give none to speak of
        assert huge_mb["tuned"] >= 100 and huge_mb["default"] < 20, huge_mb
