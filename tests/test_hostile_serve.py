"""What a hostile client or a broken index version can do to the search service (issue 12, serving side).

Real parts only: images built here with PIL, versions published to real stores (a folder, moto's S3
server behind a TCP switch that can cut or stall the connection), the real API over HTTP.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from fashion_search.config import ServiceSettings
from fashion_search.http.api import create_handler
from fashion_search.http.local_server import LocalServer
from fashion_search.index import FaissHnswIndex
from fashion_search.model.embedder import l2_normalize
from fashion_search.model.images import ImageError, decode_image
from fashion_search.serve import service as service_module
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService
from fashion_search.store import open_store, versions
from tests.conftest import wait_for

pytestmark = pytest.mark.hostile


# -- helpers ---------------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


@contextmanager
def logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records `name`'s logger emits meanwhile (http/api.py stops fashion_search loggers propagating)."""
    records: list[logging.LogRecord] = []
    capture = logging.Handler(logging.DEBUG)
    capture.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(capture)
    try:
        yield records
    finally:
        logger.removeHandler(capture)


def text_of(records: list[logging.LogRecord]) -> str:
    """Everything the records say: message, extra fields and tracebacks."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.extend(str(v) for k, v in vars(record).items() if k not in logging.LogRecord.__dict__)
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


class Serving:
    """The API over HTTP in front of a service that refreshes only when told (deterministic)."""

    def __init__(self, store: str, bundle: Path, **settings: object) -> None:
        settings.setdefault("refresh_seconds", math.inf)
        self.service = SearchService(ServiceSettings(store=store, model=bundle, **settings))  # type: ignore[arg-type]
        self.server = LocalServer(create_handler(self.service), self.service.store, port=0).start()

    def health(self) -> dict:
        return httpx.get(f"{self.server.url}/api/v1/health").json()

    def search(self, **body: object) -> httpx.Response:
        return httpx.post(f"{self.server.url}/api/v1/search", json=body, timeout=30)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def serving(tmp_path: Path, fashion_store: Path, tiny_bundle: Path) -> Iterator[tuple[Serving, Path]]:
    """The API over a copy of the 400-product store."""
    store = tmp_path / "store"
    shutil.copytree(fashion_store, store)
    api = Serving(str(store), tiny_bundle)
    yield api, store
    api.stop()


def republish(store: Path | str, base: str, change: Callable[[dict[str, bytes]], None]) -> str:
    """A new version of version `base`'s files as `change` rewrites them, with checksums recomputed to
    match (so only the service's own checks can tell), published as live; returns its id."""
    s = open_store(store)
    manifest = versions.read_manifest(s, base)
    files = {name: versions.read_file(s, manifest, name) for name in manifest.files}
    change(files)
    version = versions.new_version_id()
    versions.publish(s, manifest.model_copy(update={"version": version,
                                                    "files": versions.write_files(s, version, files)}))
    return version


def point_at(store: Path | str, version: str) -> None:
    """Move the live pointer back to an existing version (an operator's rollback)."""
    s = open_store(store)
    body = s.get(versions.version_key(version, versions.MANIFEST))
    pointer = versions.Pointer(version=version, manifest_sha256=versions.sha256(body), updated_at=versions.utc_now())
    s.put(versions.POINTER_KEY, pointer.model_dump_json().encode())


# -- 1. decompression bombs ------------------------------------------------------------------------
def webp_bomb() -> bytes:
    """40 MP of one colour in ~2 KB: just under the old 40 MP cap, 0.4-2.6 s and 0.2-0.9 GB to serve."""
    return encode(Image.new("RGB", (16383, 2441), (200, 30, 30)), "WEBP", lossless=True)


def png_text_bomb(chunk: str) -> bytes:
    """A 16x16 PNG whose compressed text chunk inflates to 50 MB."""
    info = PngImagePlugin.PngInfo()
    text = "A" * (50 << 20)
    if chunk == "zTXt":
        info.add_text("Comment", text, zip=True)
    else:
        info.add_itxt("Comment", text, zip=True)
    return encode(Image.new("RGB", (16, 16)), "PNG", pnginfo=info)


def test_a_40_megapixel_webp_of_2_kb_is_refused_from_its_header(serving) -> None:
    api, _ = serving
    bomb = webp_bomb()
    assert len(bomb) < 4096
    started = time.perf_counter()
    with pytest.raises(ImageError) as info:
        decode_image(bomb)
    assert time.perf_counter() - started < 0.25  # decoding it took 0.4-2.6 s: it was never decoded
    assert info.value.reason == "too_large" and "16383x2441" in str(info.value)

    response = api.search(image=base64.b64encode(bomb).decode())
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "image_too_large" and "16383x2441" in error["message"]


@pytest.mark.parametrize("chunk", ["zTXt", "iTXt"])
def test_a_png_text_chunk_inflating_to_50_mb_is_a_clean_413(serving, chunk: str) -> None:
    api, _ = serving
    bomb = png_text_bomb(chunk)
    assert len(bomb) < 100_000
    response = api.search(image=base64.b64encode(bomb).decode())
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "image_too_large" and "metadata" in error["message"]


def test_normal_photos_still_decode_but_only_as_large_as_needed() -> None:
    """A 12 MP phone photo (JPEG, reduced while decoding) and a 2000x3000 PNG catalog image still work;
    both come back with their short side reduced to between 640 and 1280 px, the long side in proportion."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3024 // 8, 4032 // 8, 3), dtype=np.uint8)  # texture, so the JPEG is photo-sized
    photo = Image.fromarray(noise).resize((4032, 3024), Image.Resampling.BILINEAR)
    jpeg = encode(photo, "JPEG", quality=85)
    assert len(jpeg) < 4 << 20  # within the API's 4 MB
    started = time.perf_counter()
    decoded = decode_image(jpeg)
    assert decoded.size == (1008, 756) and decoded.mode == "RGB"  # draft mode: decoded at 1/4 scale
    assert time.perf_counter() - started < 0.5

    catalog = decode_image(encode(Image.new("RGB", (2000, 3000), (10, 200, 10)), "PNG"))
    assert catalog.size == (667, 1000) and catalog.getpixel((300, 500)) == (10, 200, 10)


# -- 2. broken versions ----------------------------------------------------------------------------
def _unit(rows: int, dim: int, seed: int = 3) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(rows, dim)))


def _narrow_index(files: dict[str, bytes]) -> None:
    """Same count, half the model's dimension (like a 128-d index for a 256-d model)."""
    old = FaissHnswIndex.from_bytes(files["index.faiss"])
    files["index.faiss"] = FaissHnswIndex.build(_unit(old.ntotal, old.dim // 2)).to_bytes()


def _random_index(files: dict[str, bytes]) -> None:
    files["index.faiss"] = np.random.default_rng(7).bytes(len(files["index.faiss"]))


def _long_vectors(files: dict[str, bytes]) -> None:
    old = FaissHnswIndex.from_bytes(files["index.faiss"])
    files["index.faiss"] = FaissHnswIndex.build(3 * _unit(old.ntotal, old.dim)).to_bytes()


def _rows(files: dict[str, bytes]) -> list[bytes]:
    return files["products.jsonl"].splitlines()


def _broken_line(files: dict[str, bytes]) -> None:
    lines = _rows(files)
    lines[56] = lines[56][:25]
    files["products.jsonl"] = b"\n".join(lines) + b"\n"


def _no_product_id(files: dict[str, bytes]) -> None:
    lines = _rows(files)
    row = json.loads(lines[3])
    del row["product_id"]
    lines[3] = json.dumps(row).encode()
    files["products.jsonl"] = b"\n".join(lines) + b"\n"


def _duplicate_id(files: dict[str, bytes]) -> None:
    lines = _rows(files)
    row = json.loads(lines[9])
    row["product_id"] = json.loads(lines[8])["product_id"]
    lines[9] = json.dumps(row).encode()
    files["products.jsonl"] = b"\n".join(lines) + b"\n"


BROKEN = {
    "narrow index": (_narrow_index, "holds 16-d vectors, but model 'tiny-random' makes 32-d vectors"),
    "random bytes index": (_random_index, "index.faiss is not a FAISS index"),
    "vectors not unit length": (_long_vectors, "index.faiss holds vectors that are not unit length"),
    "broken products line": (_broken_line, "products.jsonl row 57 is not a product record (row: Invalid JSON"),
    "row without product_id": (_no_product_id, "row 4 is not a product record (product_id: Field required)"),
    "duplicate product_id": (_duplicate_id, "products.jsonl row 10 repeats product_id"),
}


@pytest.mark.parametrize("damage", list(BROKEN))
def test_a_broken_version_with_matching_checksums_is_refused(serving, damage: str) -> None:
    api, store = serving
    change, expected = BROKEN[damage]
    good = api.service.live.version
    bad = republish(store, good, change)
    with logged("fashion_search.serve.service") as records:
        api.service.refresh()

    state = api.health()
    assert state["status"] == "ok" and state["index_version"] == good and state["product_count"] == 400
    assert expected in state["problem"] and bad in state["problem"]
    assert expected in text_of(records)  # and the operator reads it in the log
    for body in ({"text": "red dress"}, {"text": "red dress", "image": base64.b64encode(
            encode(Image.new("RGB", (64, 64), (200, 0, 0)), "JPEG")).decode()}):
        response = api.search(**body)
        assert response.status_code == 200 and response.json()["index_version"] == good


def test_a_refused_version_is_retried_with_capped_exponential_backoff(serving, monkeypatch) -> None:
    """Not downloaded again at every refresh; retried after 0.5 s, 1 s, then the cap (1 s here)."""
    monkeypatch.setattr(service_module, "RETRY_FIRST_SECONDS", 0.5)
    monkeypatch.setattr(service_module, "RETRY_MAX_SECONDS", 1.0)
    api, store = serving
    good = api.service.live.version
    republish(store, good, _random_index)
    with logged("fashion_search.serve.service") as records:
        def attempts() -> int:
            return sum("refused" in r.getMessage() for r in records)

        api.service.refresh()
        assert attempts() == 1
        problem = api.health()["problem"]
        api.service.refresh()
        assert attempts() == 1 and api.health()["problem"] == problem  # still the current state: not served
        time.sleep(0.6)
        api.service.refresh()
        assert attempts() == 2  # first retry after 0.5 s
        api.service.refresh()
        time.sleep(0.6)
        api.service.refresh()
        assert attempts() == 2  # the second waits 1 s
        time.sleep(0.5)
        api.service.refresh()
        assert attempts() == 3
        time.sleep(1.1)
        api.service.refresh()
        assert attempts() == 4  # 2 s capped to 1 s

    fixed = republish(store, good, lambda files: None)  # a new pointer is tried at once
    assert api.service.refresh()
    assert api.health()["index_version"] == fixed and api.health()["problem"] is None


def test_health_clears_a_problem_once_it_is_gone(serving) -> None:
    api, store = serving
    good = api.service.live.version
    republish(store, good, _broken_line)
    api.service.refresh()
    assert api.health()["problem"] is not None
    point_at(store, good)  # the operator rolls back to the version being served
    api.service.refresh()
    state = api.health()
    assert state["status"] == "ok" and state["index_version"] == good and state["problem"] is None


def test_an_unreadable_store_at_cold_start_is_503_without_the_store_location(tmp_path: Path,
                                                                              tiny_bundle: Path) -> None:
    (tmp_path / "store").write_text("a file where the store folder should be")  # every read fails: OSError
    with logged("fashion_search.serve.service") as records:
        api = Serving(str(tmp_path / "store"), tiny_bundle)
    try:
        state = api.health()
        assert state["status"] == "unavailable" and state["index_version"] is None
        assert state["problem"] == "the index store cannot be read"
        response = api.search(text="red dress")
        assert response.status_code == 503 and response.json()["error"]["message"] == "the index store cannot be read"
        assert str(tmp_path) not in response.text + json.dumps(state)
        assert str(tmp_path) in text_of(records)  # the details are the operator's, in the log
    finally:
        api.stop()


# -- the store behind a switch: S3 that goes down or hangs ------------------------------------------
class Switch:
    """A TCP proxy in front of moto's S3 server: passes traffic, cuts every connection (an outage) or
    accepts connections and never answers (a hanging store)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.mode = "pass"
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        """Switch mode and drop the connections open now, so pooled ones see the change too."""
        self.mode = mode
        self._drop()

    def close(self) -> None:
        self._listener.close()
        self._drop()

    def _drop(self) -> None:
        sockets, self._sockets = self._sockets, []
        for s in sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            self._sockets.append(client)
            if self.mode == "hang":
                continue
            upstream = socket.create_connection(self.target)
            self._sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def s3_serving(s3_uri: str, moto_endpoint: str, fashion_store: Path, tiny_bundle: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Serving, Switch, str]]:
    """The 400-product index in a moto bucket, served through a Switch."""
    source, target = open_store(fashion_store), open_store(s3_uri)
    for key in source.list():
        if not key.startswith(versions.THUMBNAILS_PREFIX):
            target.put(key, source.get(key))
    switch = Switch(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", switch.url)
    api = Serving(s3_uri, tiny_bundle, refresh_seconds=0.05)
    yield api, switch, s3_uri
    switch.set("pass")
    api.stop()
    switch.close()


def test_an_s3_outage_is_reported_while_the_loaded_version_serves(s3_serving) -> None:
    api, switch, uri = s3_serving
    version = api.service.live.version
    assert api.health()["problem"] is None
    switch.set("down")
    with logged("fashion_search.serve.service") as records:
        assert wait_for(lambda: api.health()["problem"] is not None)
    state = api.health()
    assert state["status"] == "ok" and state["index_version"] == version
    assert state["problem"] == "the index store cannot be read"
    assert uri in text_of(records)  # the operator's log says which store and why
    response = api.search(text="red dress")
    assert response.status_code == 200 and response.json()["index_version"] == version
    public = json.dumps(state) + response.text
    assert "s3://" not in public and urlsplit(uri).netloc not in public and switch.url not in public

    switch.set("pass")
    assert wait_for(lambda: api.health()["problem"] is None)
    assert api.health()["status"] == "ok"


def test_a_hanging_store_blocks_no_query_and_shows_in_health(s3_serving, monkeypatch) -> None:
    monkeypatch.setattr(service_module, "STALL_SECONDS", 0.5)
    api, switch, _ = s3_serving
    version = api.service.live.version
    switch.set("hang")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # queries keep coming while the refresh thread waits on S3
        started = time.perf_counter()
        assert api.service.search(Query(text="red dress")).version == version
        assert time.perf_counter() - started < 1.0
        time.sleep(0.02)
    refreshing = [t for t in threading.enumerate() if t.name == "index-refresh"]
    assert len(refreshing) == 1  # one refresh waits; the others did not pile up behind it
    state = api.health()
    assert state["status"] == "ok" and state["index_version"] == version
    assert state["problem"].startswith("the index store has not answered for ")

    switch.set("pass")
    assert wait_for(lambda: api.health()["problem"] is None)


# -- 3. what public responses say ------------------------------------------------------------------
def test_an_empty_store_is_explained_without_naming_it(tmp_path: Path, tiny_bundle: Path) -> None:
    api = Serving(str(tmp_path / "empty"), tiny_bundle)
    try:
        message = api.search(text="red dress").json()["error"]["message"]
        assert message == "no index has been published yet (run fashion-search build)"
        assert api.health()["problem"] == message
    finally:
        api.stop()


def test_a_garbage_pointer_is_reported_without_the_store_or_its_bytes(s3_uri: str, tiny_bundle: Path) -> None:
    secret = b'{"version": "x", "token": "AKIA-SECRET-in-the-pointer"'
    open_store(s3_uri).put(versions.POINTER_KEY, secret)
    with logged("fashion_search.serve.service") as service_log, logged("fashion_search.store.versions") as versions_log:
        api = Serving(s3_uri, tiny_bundle)
    try:
        response = api.search(text="red dress")
        state = api.health()
        assert response.status_code == 503 and state["status"] == "unavailable"
        assert "current.json is not a valid pointer" in state["problem"]
        public = response.text + json.dumps(state)
        assert "s3://" not in public and urlsplit(s3_uri).netloc not in public and "AKIA" not in public
        log = text_of(service_log + versions_log)
        assert s3_uri in log and "AKIA-SECRET-in-the-pointer" in log
    finally:
        api.stop()
