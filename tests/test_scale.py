"""The in-Lambda tier at scale: a version built over 8-bit codes (`build --index hnsw-sq8`) is served like any
other, and the benchmark's recall ground truth (bench/scale.py) matches the vectors it stands for."""

from __future__ import annotations

import asyncio
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import scale, search
from fashion_search.build.pipeline import BuildOptions, build_index
from fashion_search.config import ServiceSettings
from fashion_search.index import FaissHnswSqIndex, HnswSq8Params
from fashion_search.model.embedder import Embedder
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService
from fashion_search.store import open_store, versions
from tests.conftest import write_feed

CLI = str(Path(sys.executable).parent / "fashion-search")


@pytest.fixture(scope="module")
def sq8_store(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Path:
    root = tmp_path_factory.mktemp("sq8-store")
    feed = write_feed(root / "feed.jsonl", 150)
    asyncio.run(build_index(str(feed), open_store(root / "store"), Embedder(tiny_bundle),
                            BuildOptions(index=HnswSq8Params())))
    return root / "store"


def test_a_version_over_8bit_codes_is_served_like_any_other(sq8_store: Path, tiny_bundle: Path) -> None:
    service = SearchService(ServiceSettings(store=str(sq8_store), model=tiny_bundle, refresh_seconds=math.inf))
    live = service.live
    assert live is not None, service.health()
    assert live.manifest.index["type"] == "IndexHNSWSQ" and isinstance(live.index, FaissHnswSqIndex)
    stored = np.load(io.BytesIO(versions.read_file(service.store, live.manifest, "embeddings.npy")))
    np.testing.assert_allclose(live.vectors(np.arange(len(stored))), stored, atol=2e-2)  # dequantised codes
    result = service.search(Query(text="red dress for women", top_k=5))
    assert len(result.hits) == 5 and all(-1.0 <= h.score <= 1.0 for h in result.hits)
    first = live.products[0]
    assert live.rows[first.product_id] == 0 and service.product(first.product_id) == first
    like = service.search(Query(product_id=first.product_id, top_k=5))
    assert like.hits and first.product_id not in {h.product.product_id for h in like.hits}
    filtered = service.search(Query(text="shirt", top_k=5, filters={"category": live.products[3].category}))
    assert filtered.hits and {h.product.category for h in filtered.hits} == {live.products[3].category}


@pytest.mark.slow
def test_build_index_flag_chooses_the_8bit_index(tmp_path: Path, tiny_bundle: Path) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", 40)
    for flag, kind in ((["--index", "hnsw-sq8"], "IndexHNSWSQ"), ([], "IndexHNSWFlat")):
        store = tmp_path / f"store-{kind}"
        done = subprocess.run([CLI, "build", "--catalog", str(feed), "--store", str(store), "--model", str(tiny_bundle),
                               "--quiet", "--hnsw-m", "16", *flag], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        manifest = versions.read_manifest(open_store(store), json.loads(done.stdout)["version"])
        assert manifest.index["type"] == kind and manifest.index["m"] == 16
    wrong = subprocess.run([CLI, "build", "--catalog", str(feed), "--store", str(tmp_path / "x"), "--index", "pq"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "invalid choice: 'pq'" in wrong.stderr


def test_true_scores_are_the_synthetic_vectors_cosines() -> None:
    """The benchmark scores returned rows by regenerating the synthetic rows chunk by chunk: the same rows
    bench.search.synthetic makes, without holding them all."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((300, 16)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    queries = real[:7] + 0.1
    vectors = search.synthetic(real, 1000, 0.05, chunk=scale.CHUNK)
    rows = rng.integers(0, 1000, size=(7, 12))
    rows[0, 3] = -1  # no result in that slot
    (scores,) = scale.scored(real, 0.05, 1000, queries, [rows])
    expected = np.where(rows >= 0, np.einsum("qkd,qd->qk", vectors[rows], queries), -np.inf)
    np.testing.assert_allclose(scores, -np.sort(-expected, axis=1), rtol=1e-5)
    assert scale.recall_of(scores, scores).tolist() == [1.0] * 7
