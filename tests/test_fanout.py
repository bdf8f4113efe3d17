"""A build fanned out in chunks (plan -> chunks -> merge): the same version as one process builds, chunks
killed midway and retried, chunks that keep failing, incremental reuse per chunk, and the staging folder.

Real parts only: tiny ONNX bundles, local folder stores and moto's S3 server, a DummyJSON replica over
loopback HTTP (whose slow image holds a chunk midway while its worker is killed), and the CLI run as a
subprocess, as a user runs it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fashion_search.build import staging
from fashion_search.build.fetch import FetchOptions
from fashion_search.build.pipeline import (
    BuildError,
    BuildOptions,
    BuildSummary,
    build_index,
    merge_build,
    plan_build,
    run_chunk,
)
from fashion_search.build.progress import Progress
from fashion_search.build.workers import ChunkFailed, WorkerPool, WorkerSettings
from fashion_search.index import open_index
from fashion_search.model.bundle import read_bundle
from fashion_search.model.embedder import Embedder
from fashion_search.store import ObjectStore, open_store, versions
from tests.conftest import FASHION_FEED, FASHION_IMAGES, write_feed
from tests.replica import Fault, Replica

CLI = str(Path(sys.executable).parent / "fashion-search")
PRODUCTS = 1_100  # four chunks of whole 256-product batches and a remainder: [0, 256, 512, 768, 1100)
SLOW_PRODUCT = 600  # in chunk 3 (index 2)
FAST = BuildOptions(fetch=FetchOptions(timeout=5.0, retries=1, backoff=0.01))


def build(catalog: str, store: ObjectStore, bundle: Path, **options: object) -> BuildSummary:
    return asyncio.run(build_index(catalog, store, Embedder(bundle), BuildOptions(**{**FAST.__dict__, **options})))


def live(store: ObjectStore) -> versions.Manifest:
    pointer = versions.read_pointer(store)
    assert pointer is not None
    return versions.read_manifest(store, pointer.version, pointer.manifest_sha256)


def contents(store: ObjectStore) -> dict[str, object]:
    """What a version holds for search: its rows, in order, and its vectors."""
    manifest = live(store)
    return {
        "embeddings": np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy"))),
        **{name: versions.read_file(store, manifest, name) for name in ("products.jsonl", "records.jsonl",
                                                                          "skipped.jsonl", "columns.npz")},
        "counts": manifest.counts,
        "model": manifest.model,
    }


def assert_same_index(a: ObjectStore, b: ObjectStore) -> None:
    """Same ids in the same order, the same rows, and equal embeddings (bit for bit)."""
    first, second = contents(a), contents(b)
    ids = [json.loads(line)["product_id"] for line in first["products.jsonl"].splitlines()]  # type: ignore[attr-defined]
    assert ids == [json.loads(line)["product_id"] for line in second["products.jsonl"].splitlines()]  # type: ignore[attr-defined]
    assert np.array_equal(first.pop("embeddings"), second.pop("embeddings"))  # type: ignore[arg-type]
    assert first == second
    manifest = live(b)
    index = open_index(manifest.index, lambda name: versions.read_file(b, manifest, name))
    assert index.ntotal == len(ids)


def fashion_replica(count: int) -> Replica:
    """A DummyJSON-style API of `count` fashion products, their photos served by the replica too."""
    with FASHION_FEED.open() as feed:
        rows = [json.loads(line) for _, line in zip(range(count), feed, strict=False)]
    products = [{"id": int(r["id"]), "title": r["title"], "category": r["category"], "price": 10.0 + i % 7,
                 "images": [f"https://cdn.example/img/{r['id']}.jpg"], **r["attributes"]}
                for i, r in enumerate(rows)]
    files = {f"/img/{r['id']}.jpg": FASHION_IMAGES / Path(r["image"]).name for r in rows}
    return Replica("dummyjson", products, files).start()


@pytest.fixture
def replica() -> Iterator[Replica]:
    server = fashion_replica(PRODUCTS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_feed(tmp_path_factory.mktemp("fanout-feed") / "feed.jsonl", PRODUCTS)


# ------------------------------------------------------------------ the same version, however it is run


def test_chunks_split_on_whole_batches(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    plan = asyncio.run(plan_build(str(feed), store, read_bundle(tiny_bundle), BuildOptions(chunks=4)))
    assert [c.products for c in plan.chunks] == [256, 256, 256, 332]
    assert json.loads(store.get(staging.key(plan.version, staging.ITEMS))) == [{"chunk": k} for k in range(4)]
    assert versions.read_pointer(store) is None  # a plan publishes nothing
    plan = asyncio.run(plan_build(str(feed), store, read_bundle(tiny_bundle), BuildOptions(chunk_size=300)))
    assert len(plan.chunks) == 4 and sum(c.products for c in plan.chunks) == PRODUCTS


@pytest.mark.slow
def test_a_build_in_chunks_equals_the_single_build(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    single, chunked = open_store(tmp_path / "single"), open_store(tmp_path / "chunked")
    one = build(str(feed), single, tiny_bundle)
    four = build(str(feed), chunked, tiny_bundle, chunks=4)
    assert (one.chunks, four.chunks) == (1, 4)
    assert (four.products_indexed, four.encoded, four.skipped) == (PRODUCTS, PRODUCTS, 0)
    assert_same_index(single, chunked)
    assert list(chunked.list(versions.STAGING_PREFIX)) == []  # the staging folder went with the publish


@pytest.mark.slow
def test_cli_workers_build_equals_the_single_build(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    """`build --workers 2 --chunks 4`: plan here, the chunks in two worker processes, merge here."""
    build(str(feed), open_store(tmp_path / "single"), tiny_bundle)
    result = subprocess.run([CLI, "build", "--catalog", feed, "--store", tmp_path / "workers", "--model", tiny_bundle,
                             "--workers", "2", "--chunks", "4"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["chunks"], summary["chunk_retries"], summary["products_indexed"]) == (4, 0, PRODUCTS)
    pids = set(re.findall(r"chunk \d/4: attempt 1 in worker pid (\d+)", result.stderr))
    assert len(pids) == 2 and "chunks: done in" in result.stderr  # two workers shared four chunks, with progress
    assert_same_index(open_store(tmp_path / "single"), open_store(tmp_path / "workers"))


# ------------------------------------------------------------------ chunks that fail


class Watcher:
    """Reads a build's stderr in a thread and SIGKILLs the worker running `chunk` (numbered from 1) once
    the replica has seen its slow image requested: the chunk is then midway, blocked on that image."""

    def __init__(self, proc: subprocess.Popen[str], replica: Replica, chunk: int, slow: str, kills: int) -> None:
        self.proc, self.replica, self.chunk, self.slow, self.kills = proc, replica, chunk, slow, kills
        self.killed: list[int] = []
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = re.match(rf"chunk {self.chunk}/4: attempt (\d+) in worker pid (\d+)", line)
            if match and len(self.killed) < self.kills:
                attempt, pid = int(match[1]), int(match[2])
                deadline = time.monotonic() + 60
                while self.replica.hits[self.slow] < attempt and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert self.replica.hits[self.slow] >= attempt, "the chunk never reached its slow image"
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)


def run_killing(replica: Replica, store: Path, bundle: Path, kills: int,
                retries: int = 2) -> tuple[int, str, str, Watcher]:
    slow = replica.image_path(replica.products[SLOW_PRODUCT])
    proc = subprocess.Popen([CLI, "build", "--catalog", replica.products_url, "--store", str(store), "--model",
                             str(bundle), "--workers", "2", "--chunks", "4", "--timeout", "120",
                             "--chunk-retries", str(retries)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watcher = Watcher(proc, replica, chunk=3, slow=slow, kills=kills)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    proc.wait(timeout=300)
    watcher.thread.join(timeout=30)
    return proc.returncode, stdout, "".join(watcher.lines), watcher


@pytest.mark.slow
def test_a_chunk_killed_midway_is_run_again(replica: Replica, tmp_path: Path, tiny_bundle: Path) -> None:
    slow = replica.image_path(replica.products[SLOW_PRODUCT])
    replica.faults[slow] = Fault("slow", delay=60, times=1)  # holds chunk 3's first attempt midway
    code, stdout, stderr, watcher = run_killing(replica, tmp_path / "store", tiny_bundle, kills=1)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["chunk_retries"], summary["products_indexed"], summary["skipped"]) == (1, PRODUCTS, 0)
    assert f"chunk 3/4: attempt 1 failed (worker pid {watcher.killed[0]} died (exit -9))" in stderr
    assert "chunk 3/4: attempt 2 in worker pid" in stderr
    replica.faults.clear()
    build(replica.products_url, open_store(tmp_path / "single"), tiny_bundle)
    assert_same_index(open_store(tmp_path / "single"), open_store(tmp_path / "store"))


@pytest.mark.slow
def test_a_chunk_that_keeps_dying_publishes_nothing(replica: Replica, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    good = build(replica.products_url, store, tiny_bundle)
    slow = replica.image_path(replica.products[SLOW_PRODUCT])
    replica.faults[slow] = Fault("slow", delay=60)  # every attempt of chunk 3 hangs there, and is killed
    code, stdout, stderr, watcher = run_killing(replica, tmp_path / "store", tiny_bundle, kills=2, retries=1)
    assert code == 2 and stdout == "", stderr
    assert len(watcher.killed) == 2
    assert stderr.strip().splitlines()[-1].startswith("fashion-search build: chunk 3/4 of build ")
    assert "failed 2 times, last: worker pid" in stderr and "Traceback" not in stderr
    assert live(store).version == good.version  # the live version stays
    assert [v for v, done in versions.list_versions(store).items()] == [good.version]
    assert list(store.list(versions.STAGING_PREFIX)) == []  # the failed build's staging folder is gone


@pytest.mark.slow
def test_a_chunk_that_keeps_failing_fails_the_pool_and_the_merge_refuses(feed: Path, tmp_path: Path,
                                                                          tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    good = build(str(feed), store, tiny_bundle, limit=300)
    plan = asyncio.run(plan_build(str(feed), store, read_bundle(tiny_bundle), BuildOptions(chunks=4, limit=300)))
    broken = staging.chunk_key(plan.version, 1, "input.jsonl")
    store.put(broken, store.get(broken).replace(b'"title"', b'"titel"', 1))  # a torn or tampered input
    pool = WorkerPool(WorkerSettings(str(store.root), str(tiny_bundle), progress=False), workers=2,  # type: ignore[attr-defined]
                      retries=1)
    with pytest.raises(ChunkFailed, match=r"chunk 2/4 of build .* failed 2 times, last: StagingError: chunk 2/4's "
                                          r"input is corrupt"):
        pool.run(plan)
    embedder = Embedder(tiny_bundle)
    for chunk in (0, 2, 3):  # whatever the pool had not finished when it gave up
        asyncio.run(run_chunk(store, plan.version, chunk, embedder))
    with pytest.raises(staging.IncompleteBuild, match=r"1 of 4 chunks have no output \(chunk 2\): not publishing"):
        asyncio.run(merge_build(store, plan.version))
    assert live(store).version == good.version


def test_a_chunk_run_again_after_it_finished_keeps_its_output(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    embedder = Embedder(tiny_bundle)
    plan = asyncio.run(plan_build(str(feed), store, embedder.spec, BuildOptions(chunks=2, limit=100)))
    first = asyncio.run(run_chunk(store, plan.version, 0, embedder))
    assert asyncio.run(run_chunk(store, plan.version, 0, embedder)) == first  # recognised, not redone
    # An attempt that died after writing its files but before done.json leaves files nobody names.
    store.put(staging.chunk_key(plan.version, 1, "0123456789ab.npy"), b"half an attempt")
    asyncio.run(run_chunk(store, plan.version, 1, embedder))
    summary = asyncio.run(merge_build(store, plan.version))
    assert summary.products_indexed == 100 and summary.chunks == 2
    other = open_store(tmp_path / "other")
    with pytest.raises(BuildError, match="planned for model 'tiny-random'"):  # never mixes two models' vectors
        plan = asyncio.run(plan_build(str(feed), other, embedder.spec, BuildOptions(limit=10)))
        asyncio.run(run_chunk(other, plan.version, 0, Embedder(_other_bundle(tmp_path))))


def _other_bundle(tmp_path: Path) -> Path:
    from model_export.tiny_bundle import make_tiny_bundle

    make_tiny_bundle(tmp_path / "other-bundle", seed=1, name="tiny-other")
    return tmp_path / "other-bundle"


# ------------------------------------------------------------------ incremental, per chunk; S3


@pytest.mark.slow
def test_rebuild_in_chunks_reuses_each_chunks_vectors_from_s3(s3_uri: str, tmp_path: Path, tiny_bundle: Path) -> None:
    """On S3 (moto): a chunk reads only its products' rows of the live embeddings.npy, by ranged GETs."""
    feed = write_feed(tmp_path / "feed" / "feed.jsonl", 600)
    store = open_store(s3_uri)
    first = build(str(feed), store, tiny_bundle, chunks=3)
    assert (first.encoded, first.reused_embeddings) == (600, 0)
    lines = feed.read_text().splitlines()
    changed = json.loads(lines[450])  # a new photo for one product of the last chunk
    (feed.parent / "images" / "new.jpg").write_bytes((FASHION_IMAGES / "10112.jpg").read_bytes())
    changed["image"] = "images/new.jpg"
    lines[450] = json.dumps(changed)
    feed.write_text("\n".join(lines[1:]) + "\n")  # and the first product leaves the catalog
    second = build(str(feed), store, tiny_bundle, chunks=3)
    assert (second.encoded, second.reused_embeddings, second.products_indexed) == (1, 598, 599)
    vectors = contents(store)["embeddings"]
    ids = [json.loads(line)["product_id"] for line in contents(store)["products.jsonl"].splitlines()]  # type: ignore[attr-defined]
    from PIL import Image

    fresh = Embedder(tiny_bundle).encode_images([Image.open(FASHION_IMAGES / "10112.jpg").convert("RGB")])
    np.testing.assert_allclose(vectors[ids.index(changed["id"])], fresh[0], atol=1e-5)  # type: ignore[index]
    single = open_store(tmp_path / "single")
    build(str(feed), single, tiny_bundle)
    np.testing.assert_allclose(contents(single)["embeddings"], vectors, atol=1e-6)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the staging folder and prune


def test_prune_spares_a_live_staged_build_and_clears_dead_ones(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    build(str(feed), store, tiny_bundle, limit=50)
    spec = read_bundle(tiny_bundle)
    busy = asyncio.run(plan_build(str(feed), store, spec, BuildOptions(limit=20)))
    store.put(versions.thumbnail_key("f" * 64), b"maybe the busy build's")
    report = versions.prune(store, keep=1)
    assert report["versions_deleted"] == 0 and report["thumbnails_deleted"] == 0
    assert versions.list_staged(store) == [busy.version]
    for k in store.list(versions.staging_key(busy.version, "")):  # an hour and more untouched: a dead build
        os.utime(store.path(k), (time.time() - 7200, time.time() - 7200))  # type: ignore[attr-defined]
    report = versions.prune(store, keep=1)
    assert report["versions_deleted"] == 1 and report["thumbnails_deleted"] == 1
    assert versions.list_staged(store) == []


def test_staged_ids_and_chunks_are_checked(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    with pytest.raises(staging.StagingError, match="not a build's version id"):
        staging.read_plan(store, "../../current")
    with pytest.raises(staging.StagingError, match="has no plan"):
        asyncio.run(merge_build(store, versions.new_version_id()))
    plan = asyncio.run(plan_build(str(feed), store, read_bundle(tiny_bundle), BuildOptions(limit=10)))
    with pytest.raises(staging.StagingError, match="has no chunk 3"):
        asyncio.run(run_chunk(store, plan.version, 3, Embedder(tiny_bundle)))


def test_progress_names_each_chunk(feed: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    stream = io.StringIO()
    asyncio.run(build_index(str(feed), open_store(tmp_path / "s"), Embedder(tiny_bundle),
                            BuildOptions(chunks=2, limit=40), Progress(stream, log_every=0)))
    out = stream.getvalue()
    assert "plan: done in" in out and "2 chunks of 20 products" in out
    assert "chunk 1/2 images: done in" in out and "chunk 2/2 images: done in" in out
    assert "merge: done in" in out and "published " in out


def test_a_staged_input_cannot_make_a_chunk_read_local_files(tmp_path: Path, tiny_bundle: Path) -> None:
    """The plan lets no local path of a remote catalog through; a chunk checks again what it is handed,
    checksums and all, so that a tampered staging folder cannot have the builder read its own disk."""
    server = fashion_replica(20)
    try:
        store = open_store(tmp_path / "store")
        plan = asyncio.run(plan_build(server.products_url, store, read_bundle(tiny_bundle)))
        k = staging.chunk_key(plan.version, 0, "input.jsonl")
        forged = store.get(k).replace(f"{server.url}/img/10000.jpg".encode(), b"/etc/passwd")
        spec = plan.chunks[0].model_copy(update={"input": versions.FileInfo(sha256=versions.sha256(forged),
                                                                             bytes=len(forged))})
        store.put(k, forged)
        store.put(staging.key(plan.version, staging.PLAN),
                  plan.model_copy(update={"chunks": [spec]}).model_dump_json().encode())
        with pytest.raises(staging.StagingError, match="names local files, which a dummyjson catalog may not"):
            asyncio.run(run_chunk(store, plan.version, 0, Embedder(tiny_bundle)))
    finally:
        server.stop()
