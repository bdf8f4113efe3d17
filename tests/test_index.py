"""The VectorIndex interface over its implementations (FAISS HNSW over float and over 8-bit vectors, S3 Vectors
on moto with QueryVectors answered by tests/s3vectors.py's stand-in), and open_index's choice by manifest."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest

from fashion_search.index import (
    KINDS,
    HnswParams,
    HnswSq8Params,
    IndexParams,
    IndexUnusable,
    S3VectorsParams,
    faiss_hnsw,
    open_index,
)
from tests.s3vectors import BUCKET, moto_vectors

VERSION = "20261130T101010000000Z-abc123"


def _unit(rows: int, dim: int = 16) -> np.ndarray:
    vectors = np.random.default_rng(5).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=[HnswParams(), HnswSq8Params(), "S3Vectors"],
                ids=lambda p: p if isinstance(p, str) else p.describe()["type"])
def params(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[IndexParams]:
    if request.param != "S3Vectors":
        yield request.param
        return
    with moto_vectors(monkeypatch):
        yield S3VectorsParams(BUCKET)


def faiss_only(params: IndexParams, why: str) -> None:
    if isinstance(params, S3VectorsParams):
        pytest.skip(why)


def tolerance(params: IndexParams) -> float:
    """How far a stored vector (and so a score) may be from the float one: 8-bit codes of 16-d random unit
    vectors are off by up to ~half a step of a dimension's range (~1/500) per dimension."""
    return 2e-2 if isinstance(params, HnswSq8Params) else 1e-5


def test_saved_and_opened_by_its_manifest_entry_it_answers_alike(params: IndexParams) -> None:
    vectors = _unit(300)
    built = params.build(vectors, VERSION)
    files = built.save()
    opened = open_index(params.describe(VERSION), files.__getitem__)
    assert params.describe(VERSION)["type"] in KINDS and type(opened).kind == params.describe(VERSION)["type"]
    assert (opened.dim, opened.ntotal) == (16, 300)
    np.testing.assert_allclose(opened.vectors(np.array([4, 7])), vectors[[4, 7]], atol=tolerance(params))
    scores, rows = opened.search(vectors[:20], 5)
    assert rows.shape == (20, 5) and (rows[:, 0] == np.arange(20)).mean() > 0.9
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    np.testing.assert_array_equal(rows, built.search(vectors[:20], 5)[1])


# The three strategies of a filtered search (faiss_hnsw.filtered_strategy), each forced by its constants.
STRATEGIES = {"exact": {}, "scan": {"EXACT_MAX_ROWS": 10},
              "hnsw": {"EXACT_MAX_ROWS": 10, "SCAN_ROW_COST": 1e9}}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_allow_keeps_results_to_those_rows(params: IndexParams, strategy: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """On S3 Vectors a mask alone filters the service's 100 nearest (asked for whenever there is a mask)."""
    if strategy != "exact":
        faiss_only(params, "FAISS's strategies")
    for name, value in STRATEGIES[strategy].items():
        monkeypatch.setattr(faiss_hnsw, name, value)
    vectors = _unit(300)
    index = params.build(vectors, VERSION)
    allow = np.arange(300) % 3 == 0
    scores, rows = index.search(vectors[:10], 8, allow=allow)
    assert rows.shape == (10, 8) and allow[rows].all() and (rows[::3, 0] == np.arange(0, 10, 3)).all()
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    exact = np.sort(vectors[:10] @ vectors[allow].T, axis=1)[:, ::-1][:, :8]
    np.testing.assert_allclose(scores, exact, atol=tolerance(params))  # the true filtered top 8
    _, none = index.search(vectors[:2], 4, allow=np.zeros(300, dtype=bool))
    assert none.shape == (2, 0)  # nothing passes: no results


def test_a_filter_far_from_the_query_is_still_exact(params: IndexParams, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two clusters; the filter keeps only the one the query is not in. The graph search alone stays in the
    query's cluster and finds nothing; the probe sees that and scans."""
    faiss_only(params, "S3 Vectors filters inside the service, given the filters (test_s3_vectors), not a mask")
    monkeypatch.setattr(faiss_hnsw, "EXACT_MAX_ROWS", 10)
    monkeypatch.setattr(faiss_hnsw, "SCAN_ROW_COST", 1e9)  # the graph, unless the probe says otherwise
    rng = np.random.default_rng(5)
    centres = np.eye(16, dtype=np.float32)[:2]
    vectors = centres[np.arange(600) % 2] + 0.2 * rng.standard_normal((600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = params.build(vectors, VERSION)
    far = np.arange(600) % 2 == 1
    query = vectors[0:1]  # in cluster 0
    scores, rows = index.search(query, 10, allow=far)
    exact = np.sort(vectors[far] @ query[0])[::-1][:10]
    assert far[rows[0]].all()
    np.testing.assert_allclose(scores[0], exact, atol=5e-3)  # 8-bit codes: scores within their rounding


def test_k_beyond_the_count_and_an_empty_index(params: IndexParams) -> None:
    index = params.build(_unit(3), VERSION)
    _, rows = index.search(_unit(1), 10)
    assert rows.shape == (1, 3) and sorted(rows[0]) == [0, 1, 2]
    assert index.vectors(np.array([], dtype=np.int64)).shape == (0, 16)
    empty = params.build(np.zeros((0, 16), dtype=np.float32), VERSION + "-empty")
    assert empty.search(_unit(1), 5)[1].shape == (1, 0)


def test_unknown_kinds_and_bad_data_are_refused_in_words() -> None:
    with pytest.raises(IndexUnusable, match="unknown type 'IVF-PQ'"):
        open_index({"type": "IVF-PQ"}, lambda name: b"")
    with pytest.raises(IndexUnusable, match=r"index\.faiss is not a FAISS index") as caught:
        open_index(HnswParams().describe(), lambda name: b"not an index at all")
    assert caught.value.__cause__ is not None  # FAISS's own words, for the log only


def test_an_opened_index_lives_in_the_bytes_it_was_read_from(params: IndexParams) -> None:
    """open() reads in place (zero-copy): the index keeps its buffer alive, whoever dropped the bytes."""
    faiss_only(params, "FAISS's file")
    vectors = _unit(200)
    held = [bytes(bytearray(params.build(vectors).save()["index.faiss"]))]
    opened = open_index(params.describe(), lambda name: held.pop())  # then only the index holds the bytes
    assert not held
    gc.collect()
    _, rows = opened.search(vectors[:20], 1)
    assert (rows[:, 0] == np.arange(20)).mean() > 0.9
    np.testing.assert_allclose(opened.vectors(np.arange(200)), vectors, atol=tolerance(params))


def test_8bit_codes_store_a_quarter_of_the_float_bytes_and_keep_the_neighbours() -> None:
    vectors = _unit(2000, dim=64)
    flat, sq8 = HnswParams().build(vectors), HnswSq8Params().build(vectors)
    flat_bytes, sq8_bytes = len(flat.save()["index.faiss"]), len(sq8.save()["index.faiss"])
    # Same graph layout; each vector 64 bytes instead of 256 (plus the quantiser's two ranges per dimension).
    assert flat_bytes - sq8_bytes == pytest.approx(2000 * 64 * 3, abs=64 * 8 + 256)
    queries = _unit(50, dim=64)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, rows = sq8.search(queries, 10)
    assert np.mean([len(set(r) & set(e)) / 10 for r, e in zip(rows, exact, strict=True)]) > 0.9
    assert np.abs(np.linalg.norm(sq8.vectors(np.arange(2000)), axis=1) - 1).max() < 1e-2
    assert HnswSq8Params().describe() == {"type": "IndexHNSWSQ", "metric": "inner_product", "quantizer": "QT_8bit",
                                          "m": 32, "ef_construction": 200, "ef_search": 256}


def test_an_index_file_of_another_kind_is_refused_in_words() -> None:
    flat = HnswParams().build(_unit(50)).save()
    with pytest.raises(IndexUnusable, match=r"index\.faiss is not a FAISS HNSW index over scalar-quantised vectors "
                                            r"\(it is a IndexHNSWFlat\)"):
        open_index(HnswSq8Params().describe(), flat.__getitem__)
    with pytest.raises(IndexUnusable, match=r"index\.faiss is not a FAISS index"):
        open_index(HnswSq8Params().describe(), lambda name: b"not an index at all")
