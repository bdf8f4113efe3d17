"""A running service picks up new index versions without a restart, and refuses bad ones."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from fashion_search.config import ServiceSettings
from fashion_search.http.api import create_handler
from fashion_search.http.local_server import LocalServer
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService
from fashion_search.store import open_store, versions
from tests.conftest import build_store, wait_for, write_feed

pytestmark = pytest.mark.slow


@pytest.fixture
def running(tmp_path: Path, fashion_store: Path, tiny_bundle: Path):
    """A local server over a copy of the 400-product store, checking the pointer every 0.2 s."""
    store = tmp_path / "store"
    shutil.copytree(fashion_store, store)
    service = SearchService(ServiceSettings(store=str(store), model=tiny_bundle, refresh_seconds=0.2))
    server = LocalServer(create_handler(service), service.store, port=0).start()
    yield server, service, store
    server.stop()


def health(server: LocalServer) -> dict:
    return httpx.get(f"{server.url}/api/v1/health").json()


def test_a_reindex_is_picked_up_while_serving(running, tmp_path: Path, tiny_bundle: Path) -> None:
    server, service, store = running
    old = health(server)
    assert old["product_count"] == 400
    summary = build_store(write_feed(tmp_path / "more.jsonl", 600), store, tiny_bundle)

    assert wait_for(lambda: health(server)["index_version"] == summary.version)
    assert health(server)["product_count"] == 600 and health(server)["problem"] is None
    found = httpx.get(f"{server.url}/api/v1/products/{service.live.products[599].product_id}")
    assert found.status_code == 200


def test_queries_during_a_swap_all_succeed_on_one_version_or_the_other(running, tmp_path: Path,
                                                                       tiny_bundle: Path) -> None:
    _, service, store = running
    old_version = service.live.version
    seen: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                seen.append(service.search(Query(text="blue shirt", top_k=50)).version)
            except BaseException as exc:  # any failure fails the test
                failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    summary = build_store(write_feed(tmp_path / "more.jsonl", 500), store, tiny_bundle)
    assert wait_for(lambda: service.live.version == summary.version)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not failures
    assert set(seen) == {old_version, summary.version}


def _publish_pointer_to(store: Path, version: str) -> None:
    s = open_store(store)
    body = s.get(versions.version_key(version, versions.MANIFEST))
    pointer = versions.Pointer(version=version, manifest_sha256=versions.sha256(body), updated_at=versions.utc_now())
    s.put(versions.POINTER_KEY, pointer.model_dump_json().encode())


@pytest.mark.parametrize("damage", ["corrupt index", "missing file", "missing version", "other model"])
def test_a_bad_new_version_leaves_the_old_one_serving(running, tmp_path: Path, tiny_bundle: Path,
                                                      other_bundle: tuple[Path, object], damage: str) -> None:
    server, service, store = running
    old_version = service.live.version
    feed = write_feed(tmp_path / "more.jsonl", 450)
    bundle = other_bundle[0] if damage == "other model" else tiny_bundle
    summary = build_store(feed, store, bundle) if damage != "missing version" else None
    if damage == "corrupt index":
        index = store / "versions" / summary.version / "index.faiss"
        index.write_bytes(index.read_bytes()[:-100] + b"\0" * 100)
    elif damage == "missing file":
        (store / "versions" / summary.version / "products.jsonl").unlink()
    elif damage == "missing version":
        shutil.copytree(store / "versions" / old_version, store / "versions" / "29990101T000000000000Z-gone00")
        _publish_pointer_to(store, "29990101T000000000000Z-gone00")
        shutil.rmtree(store / "versions" / "29990101T000000000000Z-gone00")

    assert wait_for(lambda: health(server)["problem"] is not None)
    state = health(server)
    assert state["status"] == "ok" and state["index_version"] == old_version and state["product_count"] == 400
    expected = {"corrupt index": "index.faiss is corrupt", "missing file": "products.jsonl is missing",
                "missing version": "incomplete or missing", "other model": "was built with model 'tiny-other'"}
    assert expected[damage] in state["problem"]
    response = httpx.post(f"{server.url}/api/v1/search", json={"text": "red dress"})
    assert response.status_code == 200 and response.json()["index_version"] == old_version

    good = build_store(feed, store, tiny_bundle)  # a good version after a bad one is served again
    assert wait_for(lambda: health(server)["index_version"] == good.version)
    assert health(server)["problem"] is None
