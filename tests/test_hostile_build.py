"""What a hostile or broken catalog, a killed build or a vanished store can do to the build side.

Catalogs are served over real loopback HTTP (tests/replica.py's DummyJSON / FakeStore replicas, or the
scriptable `Hostile` server below), stores are real folders or moto's S3 server, and the CLI runs as a
subprocess, as a user runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from PIL import Image

from fashion_search.build.catalog import CatalogOptions, CatalogTooLarge
from fashion_search.build.fetch import FetchError, FetchOptions
from fashion_search.build.pipeline import BuildOptions, BuildSummary, build_index
from fashion_search.config import ServiceSettings
from fashion_search.http.schemas import search_response
from fashion_search.model.embedder import Embedder
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService
from fashion_search.store import ObjectStore, open_store, versions
from fashion_search.store.local import LocalStore
from infra.settings import DeploySettings
from tests.conftest import FASHION_FEED, FASHION_IMAGES, write_feed
from tests.replica import Replica

pytestmark = pytest.mark.hostile

CLI = str(Path(sys.executable).parent / "fashion-search")
REPO = Path(__file__).resolve().parents[1]
FAST = BuildOptions(fetch=FetchOptions(timeout=2.0, retries=1, backoff=0.01))
HOUR = 3600.0
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000  # valid JSON, nested deeper than any parser recurses

Answer = tuple[int, dict[str, str], bytes]


class Hostile:
    """A catalog server on 127.0.0.1 whose answers each test scripts: `routes` maps a path to a function
    of the query string; paths under /img/ serve fashion photos by id, after `image_delay` seconds."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[dict[str, str]], Answer]] = {}
        self.hits: Counter[str] = Counter()
        self.image_delay = 0.0
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                hostile.hits[parts.path] += 1
                status, headers, body = hostile.answer(parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})
                try:
                    self.send_response(status)
                    for key, value in {"Content-Length": str(len(body)), **headers}.items():
                        if value:  # a route omits Content-Length with ""
                            self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, path: str, query: dict[str, str]) -> Answer:
        if path in self.routes:
            return self.routes[path](query)
        if path.startswith("/img/"):
            time.sleep(self.image_delay)
            photo = FASHION_IMAGES / path.removeprefix("/img/")
            if photo.is_file():
                return 200, {"Content-Type": "image/jpeg"}, photo.read_bytes()
        return 404, {}, b"not found"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_answer(obj: Any) -> Answer:
    return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def fashion_products(count: int, server: Hostile, start: int = 0) -> list[dict[str, Any]]:
    """`count` fashion products, DummyJSON-shaped, their photos served by `server`."""
    with FASHION_FEED.open() as feed:
        rows = [json.loads(line) for _, line in zip(range(start + count), feed, strict=False)][start:]
    return [{"id": int(r["id"]), "title": r["title"], "category": r["category"], "price": 10.0,
             "thumbnail": f"{server.url}/img/{r['id']}.jpg", "images": [f"{server.url}/img/{r['id']}.jpg"]}
            for r in rows]


def paged(products: list[dict[str, Any]], total: object) -> Callable[[dict[str, str]], Answer]:
    """A DummyJSON /products that pages `products` honestly but claims `total`."""

    def answer(query: dict[str, str]) -> Answer:
        skip, limit = int(query.get("skip", 0)), int(query.get("limit", 30))
        return json_answer({"products": products[skip : skip + limit], "total": total, "skip": skip, "limit": limit})

    return answer


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.stop()


def build(catalog: str, store: ObjectStore, bundle: Path, options: BuildOptions = FAST) -> BuildSummary:
    return asyncio.run(build_index(catalog, store, Embedder(bundle), options))


def live_rows(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    pointer = versions.read_pointer(store)
    assert pointer is not None
    manifest = versions.read_manifest(store, pointer.version, pointer.manifest_sha256)
    return [json.loads(line) for line in versions.read_file(store, manifest, name).decode().splitlines()]


def cli(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], command: str, *words: str) -> str:
    """Exit status 2 and exactly one line on stderr, `fashion-search <command>: ...`, naming `words`."""
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, result.stderr[-3000:]
    assert line.startswith(f"fashion-search {command}: ")
    for word in words:
        assert word in line, line
    return line


def secret_png(folder: Path) -> Path:
    """A real image the builder must never read: were it read, it would be indexed and published."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    return path


# -- 1. a catalog must not make the builder read (and publish) local files, or fetch from anywhere ---------------


@pytest.mark.parametrize("kind", ["dummyjson", "fakestore"])
def test_a_remote_catalog_cannot_name_local_files(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                                                  tiny_bundle: Path) -> None:
    replica: Replica = request.getfixturevalue(kind)
    secret = secret_png(tmp_path / "private")
    refs = {"1": str(secret), "2": f"file://{secret}", "3": os.path.relpath(secret), "4": "/etc/passwd",
            "5": "/no/such/file.png"}
    for product in replica.products:
        ref = refs.get(str(product["id"]))
        if ref is None:
            continue
        if kind == "fakestore":
            product["image"] = ref
        elif product["id"] == 2:  # DummyJSON falls back to the thumbnail when there are no images
            product["images"], product["thumbnail"] = [], ref
        else:
            product["images"] = [ref]
    store = open_store(tmp_path / "store")
    summary = build(replica.products_url, store, tiny_bundle)

    assert summary.skipped_by_reason.get("image_not_allowed") == 5, summary.skipped_by_reason
    skipped = {r["product_id"]: r for r in live_rows(store, "skipped.jsonl")}
    assert {pid: skipped[pid]["reason"] for pid in refs} == dict.fromkeys(refs, "image_not_allowed")
    # Whether a path exists must not show: /etc/passwd and a missing file get the same words.
    same = {re.sub(r"#\d+", "#", skipped[pid]["detail"]).replace(refs[pid], "REF") for pid in ("4", "5")}
    assert len(same) == 1, same
    assert not store.exists(versions.thumbnail_key(versions.sha256(secret.read_bytes())))
    assert all(r["image"].startswith(replica.url) for r in live_rows(store, "records.jsonl"))


def test_feed_images_stay_in_the_feeds_folder(tmp_path: Path, tiny_bundle: Path) -> None:
    shop = tmp_path / "shop"
    (shop / "images").mkdir(parents=True)
    shutil.copyfile(FASHION_IMAGES / "10000.jpg", shop / "images" / "a.jpg")
    secret = secret_png(tmp_path / "private")
    (shop / "images" / "link.png").symlink_to(secret)
    refs = {"a": "images/a.jpg", "b": "../private/secret.png", "c": str(secret), "d": "images/link.png",
            "e": "images/../../private/secret.png", "f": f"file://{secret}"}
    feed = shop / "feed.jsonl"
    feed.write_text("".join(json.dumps({"id": pid, "title": f"Product {pid}", "image": ref}) + "\n"
                            for pid, ref in refs.items()))
    store = open_store(tmp_path / "store")
    summary = build(str(feed), store, tiny_bundle)

    assert summary.products_indexed == 1 and summary.skipped_by_reason == {"image_not_allowed": 5}
    assert [r["product_id"] for r in live_rows(store, "products.jsonl")] == ["a"]
    assert not store.exists(versions.thumbnail_key(versions.sha256(secret.read_bytes())))

    # The operator may allow a folder explicitly; a file:// reference stays refused.
    allowed = cli("build", "--catalog", feed, "--store", tmp_path / "store", "--model", tiny_bundle, "--quiet",
                  "--allow-images-under", tmp_path / "private")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["skipped_by_reason"] == {"image_not_allowed": 1}
    assert sorted(r["product_id"] for r in live_rows(store, "products.jsonl")) == ["a", "b", "c", "d", "e"]


def test_unreadable_feed_lines_are_skipped_not_fatal(tmp_path: Path, tiny_bundle: Path) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", 1)
    with feed.open("ab") as lines:
        lines.write(DEEP_JSON + b"\n" + b'{"id": "n", "title": "x", "image": "a.jpg", "price": ' + b"9" * 5000 + b"}\n")
    summary = build(str(feed), open_store(tmp_path / "store"), tiny_bundle)
    assert summary.products_indexed == 1 and summary.skipped_by_reason == {"invalid_product": 2}


def test_image_hosts_hold_across_redirects(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    port = hostile.url.rsplit(":", 1)[1]
    products = fashion_products(4, hostile)
    products[1]["images"] = [f"http://localhost:{port}/img/{products[1]['id']}.jpg"]  # same server, another host
    products[2]["images"] = [f"{hostile.url}/moved/{products[2]['id']}.jpg"]
    products[3]["images"] = [f"{hostile.url}/moved/{products[3]['id']}.jpg"]
    hostile.routes[f"/moved/{products[2]['id']}.jpg"] = lambda q: (
        302, {"Location": f"http://localhost:{port}/img/{products[2]['id']}.jpg"}, b"")
    hostile.routes[f"/moved/{products[3]['id']}.jpg"] = lambda q: (
        302, {"Location": f"/img/{products[3]['id']}.jpg"}, b"")  # a redirect within the allowed host is fine
    hostile.routes["/products"] = paged(products, total=4)
    options = BuildOptions(fetch=FetchOptions(timeout=2.0, retries=1, backoff=0.01, image_hosts=("127.0.0.1",)))
    summary = build(f"{hostile.url}/products", open_store(tmp_path / "store"), tiny_bundle, options)

    assert summary.products_indexed == 2 and summary.skipped_by_reason == {"image_host_not_allowed": 2}
    assert hostile.hits[f"/img/{products[1]['id']}.jpg"] == hostile.hits[f"/img/{products[2]['id']}.jpg"] == 0


# -- 2. a catalog's size is a claim, not a fact ------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_lying_total_is_not_trusted(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    products = fashion_products(100, hostile)
    hostile.routes["/products"] = paged(products, total=100_000_000)
    summary = build(f"{hostile.url}/products", open_store(tmp_path / "store"), tiny_bundle)
    assert summary.products_indexed == 100
    assert hostile.hits["/products"] <= 10  # pages until one comes back empty, not 1,000,000 of them


def endless(server: Hostile) -> Callable[[dict[str, str]], Answer]:
    """A DummyJSON /products that never runs out: every page is full of new products."""
    photo = f"{server.url}/img/10000.jpg"

    def answer(query: dict[str, str]) -> Answer:
        skip, limit = int(query.get("skip", 0)), int(query.get("limit", 30))
        page = [{"id": i, "title": f"Product {i}", "images": [photo]} for i in range(skip, skip + limit)]
        return json_answer({"products": page, "total": 100_000_000, "skip": skip, "limit": limit})

    return answer


def test_catalogs_bigger_than_allowed_are_refused(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    hostile.routes["/products"] = endless(hostile)
    with pytest.raises(CatalogTooLarge, match="more than 250 products"):
        build(f"{hostile.url}/products", open_store(tmp_path / "s"), tiny_bundle,
              BuildOptions(fetch=FAST.fetch, catalog=CatalogOptions(max_products=250)))
    assert hostile.hits["/products"] <= 5
    hostile.hits.clear()
    with pytest.raises(CatalogTooLarge, match="more than 3 page requests"):
        build(f"{hostile.url}/products", open_store(tmp_path / "s"), tiny_bundle,
              BuildOptions(fetch=FAST.fetch, catalog=CatalogOptions(max_pages=3)))
    assert hostile.hits["/products"] == 1  # the next window of pages would pass the bound: not asked for

    hostile.routes["/fakestore"] = lambda q: json_answer([{"id": i, "title": "x", "image": "http://x.test/i.jpg"}
                                                          for i in range(300)])
    result = cli("build", "--catalog", f"{hostile.url}/fakestore", "--store", tmp_path / "s", "--model", tiny_bundle,
                 "--max-products", "250", "--quiet")
    assert_one_line_error(result, "build", "more than 250 products", "--max-products")
    assert not (tmp_path / "s" / versions.POINTER_KEY).exists()


def test_limit_stops_reading_the_catalog(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    hostile.routes["/products"] = endless(hostile)
    summary = build(f"{hostile.url}/products", open_store(tmp_path / "store"), tiny_bundle,
                    BuildOptions(fetch=FAST.fetch, limit=20))
    assert summary.products_indexed == 20 and hostile.hits["/products"] == 1


def test_catalog_responses_are_read_within_a_bound(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    # No Content-Length to refuse it by: the body is abandoned once past the bound, while streaming.
    page = json.dumps({"products": [{"id": 1, "title": "x" * (2 << 20), "images": []}], "total": 1}).encode()
    hostile.routes["/products"] = lambda q: (200, {"Content-Type": "application/json", "Content-Length": ""}, page)
    options = BuildOptions(fetch=FetchOptions(timeout=2.0, retries=0, max_page_bytes=1 << 20))
    with pytest.raises(FetchError, match="larger than 1,048,576 bytes"):
        build(f"{hostile.url}/products", open_store(tmp_path / "store"), tiny_bundle, options)


def test_product_fields_are_bounded(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    big, normal = fashion_products(2, hostile)
    mib = 1 << 20
    big.update(title="T" * (5 * mib), description="D" * (5 * mib), category="C" * mib, brand="B" * mib,
               tags=["tag"] * 100_000, **{f"facet{i}": "v" * 1024 for i in range(5_000)}, **{"k" * 5000: "long key"})
    long_id = {**normal, "id": "9" * 10_000}
    infinite = {**normal, "id": 77, "price": float("inf")}
    hostile.routes["/products"] = paged([big, normal, long_id, infinite, 42, "text", None], total=7)
    store = open_store(tmp_path / "store")
    summary = build(f"{hostile.url}/products", store, tiny_bundle)

    assert summary.products_indexed == 2 and summary.skipped_by_reason == {"invalid_product": 5}
    rows = {r["product_id"]: r for r in live_rows(store, "products.jsonl")}
    clipped = rows[str(big["id"])]
    assert len(clipped["title"]) == 300 and clipped["title"].endswith("…")
    assert len(clipped["description"]) == 5_000 and len(clipped["category"]) == len(clipped["brand"]) == 100
    assert len(clipped["attributes"]) == 50 and all(len(k) <= 64 for k in clipped["attributes"])
    assert all(len(str(v)) <= 500 for v in clipped["attributes"].values())
    assert len(json.dumps(clipped)) < 64 << 10

    service = SearchService(ServiceSettings(store=str(tmp_path / "store"), model=tiny_bundle))
    result = service.search(Query(text="t" * 500, top_k=100))
    assert len(search_response(result, "thumbnails/").model_dump_json()) < 8 << 10


# -- 3. what killed builds leave behind --------------------------------------------------------------------------


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_prune_removes_dead_builds_and_stale_temp_files(fakestore: Replica, tmp_path: Path, tiny_bundle: Path) -> None:
    store = LocalStore(tmp_path / "store")
    built = [build(fakestore.products_url, store, tiny_bundle).version for _ in range(2)]
    # A build killed during its upload (newer than the live version: the usual case), one killed in
    # its first write, and a thumbnail write cut short; all an hour and more ago.
    dead, dead_early, busy = (versions.new_version_id() for _ in range(3))
    for name in ("index.faiss", "embeddings.npy"):
        store.put(versions.version_key(dead, name), b"half a build")
        backdate(store.path(versions.version_key(dead, name)), 2 * HOUR)
    leftovers = [store.path(f"versions/{dead_early}/.index.faiss.k1ll3d.tmp"),
                 store.path("thumbnails/.0badc0de.webp.k1ll3d.tmp")]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        backdate(path, 2 * HOUR)
    # Another process's build, uploading right now, and its thumbnail being written.
    store.put(versions.version_key(busy, "index.faiss"), b"in progress")
    writing = store.path("thumbnails/.feedbeef.webp.wr1t3s.tmp")
    writing.write_bytes(b"half")

    report = versions.prune(store, keep=2)
    assert report["versions_deleted"] == 1 and report["temp_files_deleted"] == 2, report
    assert list(versions.list_versions(store)) == [*built, busy]
    assert not any(p.exists() for p in leftovers) and writing.exists()
    assert sorted(p.name for p in store.path("versions").iterdir()) == sorted([*built, busy])
    assert versions.read_pointer(store).version == built[-1]

    # An operator who knows no build is running need not wait out the grace period.
    result = cli("prune", "--store", store.root, "--keep", "1", "--grace-minutes", "0")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"versions_deleted": 2, "versions_kept": 1, "thumbnails_deleted": 0,
                                         "temp_files_deleted": 1}
    assert list(versions.list_versions(store)) == [built[-1]] and not writing.exists()


def test_make_demo_keeps_a_bounded_number_of_versions() -> None:
    plan = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    build_line = next(line for line in plan.splitlines() if "fashion-search build" in line)
    assert re.search(r"--keep \d+", build_line), build_line


# -- 4. catalogs the deployment cannot read ---------------------------------------------------------------------


def test_s3_catalogs_are_refused_with_a_clear_message(tmp_path: Path, tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match=r"catalogUrl 's3://shop/feed.jsonl'.*http"):
        DeploySettings(catalog_url="s3://shop/feed.jsonl")
    result = cli("build", "--catalog", "s3://shop/feed.jsonl", "--store", tmp_path / "store", "--model", tiny_bundle,
                 "--quiet")
    assert_one_line_error(result, "build", "s3://shop/feed.jsonl", "http(s) URL")


# -- 5. failures outside the catalog are one clear line, not a traceback --------------------------------------------


def no_aws_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials", **extra}


def test_s3_without_credentials_is_one_line(tmp_path: Path, tiny_bundle: Path, moto_endpoint: str) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", 5)
    result = cli("build", "--catalog", feed, "--store", "s3://bucket/index", "--model", tiny_bundle, "--quiet",
                 env=no_aws_env(AWS_ENDPOINT_URL=moto_endpoint))
    assert_one_line_error(result, "build", "s3://bucket/index", "credentials")


@pytest.mark.slow
def test_s3_going_away_mid_build_is_one_line(hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    env = no_aws_env(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="testing",
                     AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    bucket = f"gone-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    hostile.routes["/products"] = paged(fashion_products(64, hostile), total=64)
    hostile.image_delay = 0.5
    proc = subprocess.Popen([CLI, "build", "--catalog", f"{hostile.url}/products", "--store", f"s3://{bucket}/index",
                             "--model", str(tiny_bundle), "--quiet"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not any(path.startswith("/img/") for path in hostile.hits):
            assert time.monotonic() < deadline and proc.poll() is None, "the build never reached its images"
            time.sleep(0.05)
    finally:
        moto.stop()  # the store goes away while thumbnails are being written
    _, stderr = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert_one_line_error(result, "build", f"s3://{bucket}/index", "Could not connect")


@pytest.mark.parametrize(
    ("route", "words"),
    [
        (lambda q: (302, {"Location": "/products"}, b""), ["redirect"]),
        (lambda q: (200, {"Content-Type": "application/json"}, DEEP_JSON), ["did not return JSON"]),
    ],
    ids=["redirect-loop", "deeply-nested-json"],
)
def test_a_broken_catalog_api_is_one_line(route: Callable[[dict[str, str]], Answer], words: list[str],
                                         hostile: Hostile, tmp_path: Path, tiny_bundle: Path) -> None:
    hostile.routes["/products"] = route
    result = cli("build", "--catalog", f"{hostile.url}/products", "--store", tmp_path / "store",
                 "--model", tiny_bundle, "--retries", "0", "--quiet")
    assert_one_line_error(result, "build", *words)
