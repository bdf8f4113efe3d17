"""Local replicas of the DummyJSON and FakeStore APIs, serving ../shared/data over real HTTP.

They answer like the live services (paging shape, default page size, image CDN paths, ETags) and
can inject faults per path: slow answers, errors before success, 404s, truncated files, HTML.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Fault:
    """What to do instead of answering normally. `times` limits it to the first N requests."""

    kind: str  # "status", "slow", "truncate", "html", "not_found"
    status: int = 500
    delay: float = 0.0
    times: int | None = None


@dataclass
class Replica:
    """A catalog API on 127.0.0.1. `products` are the raw JSON objects, with URLs pointing here."""

    kind: str  # "dummyjson" or "fakestore"
    products: list[dict[str, Any]]
    files: dict[str, Path]  # URL path -> file
    faults: dict[str, Fault] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    max_page: int | None = None  # cap page sizes below what clients ask for, as some servers do
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def products_url(self) -> str:
        return f"{self.url}/products"

    def image_path(self, product: dict[str, Any]) -> str:
        """The URL path of a product's main image, as the builder picks it."""
        ref = (product.get("images") or [product.get("thumbnail") or product.get("image")])[0]
        return urlsplit(ref).path

    def start(self) -> Replica:
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                replica.handle(self)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # a burst of concurrent clients must not be refused

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        base = self.url
        for product in self.products:
            for key in ("thumbnail", "image"):
                if isinstance(product.get(key), str):
                    product[key] = _rebase(product[key], base)
            if isinstance(product.get("images"), list):
                product["images"] = [_rebase(u, base) for u in product["images"]]
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- request handling -------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        path = unquote(parts.path)
        self.hits[path] += 1
        fault = self.faults.get(path)
        if fault and (fault.times is None or self.hits[path] <= fault.times):
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "status":
                return _send(req, fault.status, b'{"message": "injected failure"}', "application/json")
            elif fault.kind == "not_found":
                return _send(req, 404, b"Not Found", "text/plain")
            elif fault.kind == "html":
                page = b"<!doctype html><html><body><h1>Sorry, this image moved</h1></body></html>"
                return _send(req, 200, page, "image/jpeg")  # lying servers exist
            elif fault.kind == "truncate":
                data = self.files[path].read_bytes()
                return _send(req, 200, data[: len(data) // 2], "image/jpeg")
        if path in self.files:
            return self._send_file(req, self.files[path])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if self.kind == "dummyjson":
            return self._dummyjson(req, path, query)
        return self._fakestore(req, path, query)

    def _send_file(self, req: BaseHTTPRequestHandler, file: Path) -> None:
        data = file.read_bytes()
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        if req.headers.get("If-None-Match") == etag:
            return _send(req, 304, b"", None, {"ETag": etag})
        return _send(req, 200, data, "image/jpeg", {"ETag": etag})

    def _dummyjson(self, req: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        if path == "/products/categories":
            return _send_json(req, sorted({p["category"] for p in self.products}))
        items = self.products
        if path.startswith("/products/category/"):
            name = path.removeprefix("/products/category/")
            items = [p for p in items if p["category"] == name]
        elif path.startswith("/products/") and path.count("/") == 2:
            match = [p for p in items if str(p["id"]) == path.rsplit("/", 1)[1]]
            return _send_json(req, match[0]) if match else _send_json(req, {"message": "not found"}, 404)
        elif path != "/products":
            return _send_json(req, {"message": "not found"}, 404)
        limit, skip = int(query.get("limit", 30)), int(query.get("skip", 0))
        if self.max_page:
            limit = min(limit or self.max_page, self.max_page)
        page = items[skip:] if limit == 0 else items[skip : skip + limit]
        return _send_json(req, {"products": page, "total": len(items), "skip": skip, "limit": len(page)})

    def _fakestore(self, req: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        if path == "/products":
            limit = int(query["limit"]) if "limit" in query else None
            return _send_json(req, self.products[:limit])
        if path.startswith("/products/") and path.rsplit("/", 1)[1].isdigit():
            match = [p for p in self.products if str(p["id"]) == path.rsplit("/", 1)[1]]
            return _send_json(req, match[0] if match else None)
        return _send_json(req, {"message": "not found"}, 404)


def _rebase(url: str, base: str) -> str:
    parts = urlsplit(url)
    return f"{base}{parts.path}" if parts.scheme in ("http", "https") else url


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None,
          headers: dict[str, str] | None = None) -> None:
    try:
        req.send_response(status)
        if content_type:
            req.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if body:
            req.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (a timeout test): nothing to do


def _send_json(req: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
    _send(req, status, json.dumps(obj).encode(), "application/json")


def dummyjson_replica() -> Replica:
    """The legacy 100-product DummyJSON catalog with all its images."""
    root = DATA / "dummyjson" / "legacy_v1"
    products = json.loads((root / "products.json").read_text())
    files = {f"/product-images/{p.parent.name}/{p.name}": p for p in (root / "images").glob("*/*")}
    return Replica("dummyjson", products, files).start()


def fakestore_replica() -> Replica:
    """The 20-product FakeStore catalog with its images."""
    root = DATA / "fakestore"
    products = json.loads((root / "products.json").read_text())
    files = {f"/img/{p.name}": p for p in (root / "img").iterdir()}
    return Replica("fakestore", products, files).start()
