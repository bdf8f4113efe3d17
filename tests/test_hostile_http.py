"""What a hostile client can do over HTTP (issue 12): malformed, oversized and smuggling requests against
the local server on a real loopback socket, hostile bodies and ids through the Lambda handler with real
API Gateway events, the OpenAPI document fuzzed against the API, and the headers the search page runs under."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from fashion_search.config import ServiceSettings
from fashion_search.http.api import LambdaHandler, create_handler
from fashion_search.http.local_server import LocalContext, LocalServer, http_api_event
from fashion_search.serve.service import SearchService
from tests.conftest import FASHION_IMAGES, ORIGIN, build_store, write_feed
from tests.test_api import b64, call, event

pytestmark = pytest.mark.hostile

REPO = Path(__file__).resolve().parents[1]
LIMIT = 6 * 1024 * 1024  # the API's request limit (Lambda's synchronous payload limit)
# Ids a catalog may well hold: a '/' (an SKU path), symbols outside \w, a '%', a '?' and a '#'.
HOSTILE_IDS = ["sku/2024/blue-01", "robe-été-№7-€", "✓ 50% off?#1"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture(scope="module")
def server(handler: LambdaHandler, service: SearchService) -> Iterator[LocalServer]:
    """The local server `fashion-search serve` runs, on a free loopback port, serving the real frontend."""
    server = LocalServer(handler, service.store, frontend=REPO / "frontend", port=0).start()
    yield server
    server.stop()


def exchange(server: LocalServer, *pieces: bytes, timeout: float = 5.0) -> list[Reply]:
    """Writes `pieces` on one connection as they are (no client library fixes them up), then reads until the
    server closes it or stays quiet for `timeout` seconds; returns every response it sent."""
    host, port = server.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused before reading everything: its answer is still there to read
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return parse_replies(received)


def parse_replies(raw: bytes) -> list[Reply]:
    replies = []
    while raw.startswith(b"HTTP/"):
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", len(rest)))
        replies.append(Reply(int(status_line.split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return replies


def assert_error_shape(payload: Any, code: str) -> None:
    """The one error shape every refusal has, whoever refuses: the handler or the server in front of it."""
    assert set(payload) == {"error", "request_id"} and set(payload["error"]) == {"code", "message"}, payload
    assert payload["error"]["code"] == code, payload
    assert "Traceback" not in json.dumps(payload) and str(REPO) not in json.dumps(payload)


def search_request(body: bytes, *headers: str) -> bytes:
    lines = ["POST /api/v1/search HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# -- 1. the HTTP server: framing, limits, smuggling ---------------------------------------------------------
def test_a_chunked_body_is_the_request_body_and_the_next_request_follows_it(server: LocalServer) -> None:
    body = json.dumps({"text": "white skirt", "top_k": 3}).encode()
    replies = exchange(server, search_request(b"", "Transfer-Encoding: chunked"),
                       chunk(body[:10]), chunk(body[10:]), b"0\r\n\r\n",
                       b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert [r.status for r in replies] == [200, 200]
    assert replies[0].json()["total_results"] == 3 and replies[1].json()["status"] == "ok"


def test_a_request_smuggled_in_a_chunked_body_is_never_answered(server: LocalServer) -> None:
    """Content-Length frames 4 bytes, Transfer-Encoding the whole body: a server that believed the
    Content-Length would answer the product lookup hidden in the chunk as a request of its own."""
    smuggled = b"GET /api/v1/products/10000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    replies = exchange(server, search_request(chunk(smuggled) + b"0\r\n\r\n", "Content-Length: 4",
                                              "Transfer-Encoding: chunked"),
                       b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert [r.status for r in replies] == [400, 200] and replies[1].json()["status"] == "ok"
    assert_error_shape(replies[0].json(), "invalid_request")  # the chunk was the search's (non-JSON) body


@pytest.mark.parametrize(("name", "content_length"), [
    ("negative", ["-1"]), ("not a number", ["abc"]), ("two of them", ["17", "17"]), ("two values", ["17, 17"]),
])
def test_a_bad_content_length_is_a_400_in_our_error_shape(server: LocalServer, name: str,
                                                          content_length: list[str]) -> None:
    body = b'{"text": "shoes"}'  # 17 bytes: what each Content-Length would claim
    replies = exchange(server, search_request(body, *(f"Content-Length: {v}" for v in content_length)), timeout=3)
    assert [r.status for r in replies] == [400], replies
    assert_error_shape(replies[0].json(), "bad_request")
    assert replies[0].headers["connection"] == "close"


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: LocalServer) -> None:
    """The 413 comes back while the client has sent nothing but the headers of a 400 MB body."""
    replies = exchange(server, search_request(b"", f"Content-Length: {400 * 2**20}"))
    assert [r.status for r in replies] == [413]
    assert_error_shape(replies[0].json(), "request_entity_too_large")
    assert "6 MB" in replies[0].json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_refused_once_it_passes_the_limit(server: LocalServer) -> None:
    megabyte = chunk(b" " * 2**20)
    replies = exchange(server, search_request(b"", "Transfer-Encoding: chunked"), *[megabyte] * 12, b"0\r\n\r\n")
    assert [r.status for r in replies] == [413]
    assert_error_shape(replies[0].json(), "request_entity_too_large")


def test_a_body_just_under_the_limit_reaches_the_handler(server: LocalServer) -> None:
    body = json.dumps({"text": "shoes", "image": "A" * (LIMIT - 64)}).encode()
    assert len(body) <= LIMIT
    response = httpx.post(f"{server.url}/api/v1/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413  # the image's own limit: 4 MB decoded
    assert_error_shape(response.json(), "image_too_large")


MALFORMED = [
    # (name, raw request, status, error code)
    ("raw UTF-8 in the target", "GET /été HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, "bad_request"),
    ("bare CR in the request line", b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ("header without a colon", b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400, "bad_request"),
    ("space before the colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "bad_request"),
    ("TLS hello on the plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad_request"),
    ("bad chunk size", search_request(b"zz\r\n", "Transfer-Encoding: chunked"), 400, "bad_request"),
    ("unknown transfer coding", search_request(b"", "Transfer-Encoding: gzip"), 501, "not_implemented"),
    ("300 kB of headers", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 300_000 + b"\r\n\r\n", 431,
     "request_header_fields_too_large"),
]


@pytest.mark.parametrize(("name", "request_bytes", "status", "code"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_refused_in_our_error_shape(server: LocalServer, name: str, request_bytes: bytes,
                                                           status: int, code: str) -> None:
    replies = exchange(server, request_bytes, timeout=3)
    assert [r.status for r in replies] == [status], replies
    assert_error_shape(replies[0].json(), code)


@pytest.mark.parametrize("path", ["/%00", "/js/%00.js", "/" + "a" * 5000, "/a/" * 3000 + "x", "/%C3%A9t%C3%A9",
                                  "/%2e%2e/%2e%2e/etc/passwd", "/thumbnails/%00.webp", "/%C0%AE%C0%AE/"])
def test_hostile_static_paths_are_a_plain_404(server: LocalServer, path: str) -> None:
    target = path.encode("utf-8")
    replies = exchange(server, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert [r.status for r in replies] == [404]
    assert b"Traceback" not in replies[0].body and str(REPO).encode() not in replies[0].body


def test_the_server_still_answers_after_all_that(server: LocalServer) -> None:
    assert httpx.get(f"{server.url}/api/v1/health").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/").status_code == 200


# -- 2. hostile requests through the handler --------------------------------------------------------------
def search_event(raw: str, content_type: str = "application/json") -> dict[str, Any]:
    """A POST /api/v1/search event for `raw`, base64-encoded when its media type is not text, as API Gateway does."""
    return http_api_event("POST", "/api/v1/search", {"content-type": content_type}, raw.encode(), "198.51.100.7")


def test_json_nested_ten_thousand_deep_is_a_400(handler: LambdaHandler) -> None:
    status, payload, _ = call(handler, search_event('{"text": ' + "[" * 10_000 + "]" * 10_000 + "}"))
    assert status == 400 and "nested too deeply" in payload["error"]["message"]
    assert_error_shape(payload, "invalid_request")


def test_a_number_with_ten_thousand_digits_is_a_400(handler: LambdaHandler) -> None:
    status, payload, _ = call(handler, search_event('{"text": "x", "top_k": ' + "9" * 10_000 + "}"))
    assert status == 400 and "too many digits" in payload["error"]["message"]
    assert_error_shape(payload, "invalid_request")


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=xyz",
                                          "application/x-www-form-urlencoded", "text/plain", "image/jpeg"])
def test_bodies_that_are_not_json_are_a_415(handler: LambdaHandler, content_type: str) -> None:
    e = search_event("--xyz\r\nContent-Disposition: form-data; name=text\r\n\r\nred\r\n--xyz--\r\n", content_type)
    status, payload, _ = call(handler, e)
    assert status == 415, payload
    assert_error_shape(payload, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; charset=utf-8",
                                          "application/json;charset=UTF-8"])
def test_media_types_are_case_insensitive(handler: LambdaHandler, server: LocalServer, content_type: str) -> None:
    status, payload, _ = call(handler, search_event('{"text": "red dress", "top_k": 2}', content_type))
    assert status == 200 and payload["total_results"] == 2
    response = httpx.post(f"{server.url}/api/v1/search", content=b'{"text": "red dress", "top_k": 2}',
                          headers={"content-type": content_type})
    assert response.status_code == 200 and response.json()["total_results"] == 2


@pytest.mark.parametrize(("name", "image"), [
    ("4.2 MB decoded", b64(b"\xff" * 4_299_162)),  # 5,732,216 characters of base64
    ("4 MB + 1 byte", b64(b"\xff" * (4 * 2**20 + 1))),
    ("longer than any request", "A" * (LIMIT + 1)),
])
def test_an_image_over_4_mb_is_a_413_image_too_large(handler: LambdaHandler, name: str, image: str) -> None:
    status, payload, _ = call(handler, event("POST", "/api/v1/search", {"image": image}))
    assert status == 413, payload
    assert_error_shape(payload, "image_too_large")
    assert "at most 4 MB is accepted" in payload["error"]["message"]


def test_every_error_has_one_shape(handler: LambdaHandler) -> None:
    cases = [event("POST", "/api/v1/search", {"text": "x", "top_k": 0}),
             event("POST", "/api/v1/search", {"image": b64(b"\xff" * (4 * 2**20 + 1))}),
             search_event("text=red", "application/x-www-form-urlencoded"),
             event("GET", "/api/v1/products/nope"), event("GET", "/api/v1/nowhere"), event("DELETE", "/api/v1/search")]
    for e in cases:
        status, payload, headers = call(handler, e)
        assert status >= 400 and headers["Content-Type"] == "application/json"
        assert_error_shape(payload, payload["error"]["code"])
        assert payload["request_id"]


def test_a_method_a_route_does_not_take_is_a_405_naming_the_ones_it_does(handler: LambdaHandler) -> None:
    status, payload, headers = call(handler, event("GET", "/api/v1/search"))
    assert status == 405 and headers["Allow"] == "POST"
    assert_error_shape(payload, "method_not_allowed")
    status, _, headers = call(handler, event("PUT", "/api/v1/products/10000"))
    assert status == 405 and headers["Allow"] == "GET"


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Path:
    """A small index whose first products carry HOSTILE_IDS."""
    root = tmp_path_factory.mktemp("hostile-ids")
    feed = write_feed(root / "feed.jsonl", 20)
    lines = [json.loads(line) for line in feed.read_text().splitlines()]
    for line, product_id in zip(lines, HOSTILE_IDS, strict=False):
        line["id"] = product_id
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    build_store(feed, root / "store", tiny_bundle)
    return root / "store"


@pytest.fixture(scope="module")
def hostile_ids_server(hostile_store: Path, tiny_bundle: Path) -> Iterator[tuple[LambdaHandler, LocalServer]]:
    service = SearchService(ServiceSettings(store=str(hostile_store), model=tiny_bundle))
    handler = create_handler(service)
    server = LocalServer(handler, service.store, port=0).start()
    yield handler, server
    server.stop()


@pytest.mark.parametrize("product_id", HOSTILE_IDS)
def test_any_product_id_search_returns_can_be_looked_up(hostile_ids_server: tuple[LambdaHandler, LocalServer],
                                                        product_id: str) -> None:
    handler, server = hostile_ids_server
    photo = b64((FASHION_IMAGES / f"{10000 + HOSTILE_IDS.index(product_id)}.jpg").read_bytes())
    found = httpx.post(f"{server.url}/api/v1/search", json={"image": photo, "top_k": 1}).json()["results"][0]
    assert found["product_id"] == product_id
    # API Gateway hands the Lambda a decoded path: '/' and all.
    status, payload, _ = call(handler, event("GET", f"/api/v1/products/{product_id}"))
    assert status == 200 and payload["product_id"] == product_id, payload
    response = httpx.get(f"{server.url}/api/v1/products/{quote(product_id, safe='')}")
    assert response.status_code == 200 and response.json()["product_id"] == product_id
    assert response.json()["title"] == found["title"]


def test_an_unknown_id_with_a_slash_is_a_404_not_found(hostile_ids_server: tuple[LambdaHandler, LocalServer]) -> None:
    handler, _ = hostile_ids_server
    status, payload, _ = call(handler, event("GET", "/api/v1/products/sku/2024/none"))
    assert status == 404 and payload["error"]["message"] == "no product with id 'sku/2024/none'"


# -- 3. the OpenAPI document is the API's ------------------------------------------------------------------
@pytest.fixture(scope="module")
def openapi(handler: LambdaHandler) -> dict[str, Any]:
    status, doc, _ = call(handler, event("GET", "/api/v1/openapi.json"))
    assert status == 200
    return doc


def test_openapi_declares_what_each_operation_answers(openapi: dict[str, Any]) -> None:
    def schema_of(operation: dict, status: str) -> str:
        return operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    search = openapi["paths"]["/api/v1/search"]["post"]
    product = openapi["paths"]["/api/v1/products/{product_id}"]["get"]
    health = openapi["paths"]["/api/v1/health"]["get"]
    assert schema_of(search, "200") == "SearchResponse" and schema_of(product, "200") == "ProductDetail"
    assert schema_of(health, "200") == "Health"
    assert {"400", "413", "415", "503"} <= set(search["responses"]) and {"404"} <= set(product["responses"])
    for operation in (search, product, health):
        assert "422" not in operation["responses"]  # validation errors are answered 400
        for status in set(operation["responses"]) - {"200"}:
            assert schema_of(operation, status) == "ErrorResponse"
    assert "HTTPValidationError" not in json.dumps(openapi)


def test_openapi_request_examples_are_accepted(handler: LambdaHandler, openapi: dict[str, Any]) -> None:
    examples = openapi["components"]["schemas"]["SearchRequest"]["examples"]
    assert any("image" in example for example in examples)
    for example in examples:
        if "image" in example:
            Image.open(io.BytesIO(base64.b64decode(example["image"]))).verify()
        status, payload, _ = call(handler, event("POST", "/api/v1/search", example))
        assert status == 200, (example, payload)


# positive_data_acceptance expects 2xx for schema-valid requests, but a body can match the schema and still be
# refused by design: the image must decode as a JPEG, PNG or WebP of at most 4 MB and 40 MP, and the text or the
# image must be there and not blank, which JSON Schema cannot say (400, 413, 415); and a product id that
# matches the schema names no product unless it is in the index (404). Never a 5xx: not_a_server_error and
# every other check keep their defaults.
SCHEMATHESIS_CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "404", "413", "415"]
"""


def test_the_api_keeps_to_its_openapi_document(server: LocalServer, tmp_path: Path) -> None:
    """schemathesis, every phase and every check, over the served OpenAPI document against the local server."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    run = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "--no-color", "run",
         f"{server.url}/api/v1/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "12",
         "--generation-database", "none", "--request-timeout", "30", "--workers", "1",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)  # cwd: its .schemathesis folder stays out
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]


# -- 4. the headers pages and answers go out with --------------------------------------------------------------
def test_local_responses_carry_security_headers(server: LocalServer) -> None:
    for url in ("/", "/js/app.js", "/config.json", "/nowhere.html", "/api/v1/health", "/api/v1/nowhere"):
        headers = httpx.get(server.url + url).headers
        assert headers["x-content-type-options"] == "nosniff", url
        assert headers["x-frame-options"] == "DENY", url
        assert headers["referrer-policy"] == "no-referrer", url
    policy = httpx.get(server.url + "/").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["img-src"] == "'self' data: blob:" and directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'" and "unsafe" not in policy
    refused = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")[0]
    assert refused.status == 400 and refused.headers["x-content-type-options"] == "nosniff"


def test_cors_answers_vary_by_origin(handler: LambdaHandler, fashion_store: Path, tiny_bundle: Path) -> None:
    for headers in ({"origin": ORIGIN}, {"origin": "https://evil.example"}, {}):
        for e in (event("GET", "/api/v1/health", headers=headers), event("GET", "/api/v1/nowhere", headers=headers),
                  event("POST", "/api/v1/search", {"text": "red"}, headers=headers)):
            assert "Origin" in call(handler, e)[2].get("Vary", ""), (e["rawPath"], headers)
    preflight = handler(event("OPTIONS", "/api/v1/search", headers={
        "origin": ORIGIN, "access-control-request-method": "POST"}), LocalContext())
    assert preflight["statusCode"] == 204 and preflight["headers"]["Vary"] == "Origin"
    no_cors = create_handler(SearchService(ServiceSettings(store=str(fashion_store), model=tiny_bundle)))
    assert "Vary" not in call(no_cors, event("GET", "/api/v1/health", headers={"origin": ORIGIN}))[2]


@pytest.mark.browser
def test_the_search_page_runs_under_its_content_security_policy(server: LocalServer) -> None:
    """A text search, a photo (a blob: preview, a data: URL sent), a product's details and a search with its
    image (its thumbnail fetched): no directive of the policy is violated, nothing throws.
    Locators and evaluate() only: wait_for_function needs 'unsafe-eval', which the policy forbids."""
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed: run `make test` (or apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.add_init_script("""window.violations = [];
                document.addEventListener('securitypolicyviolation',
                    (e) => window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));""")
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            assert "script-src 'self'" in page.goto(f"{server.url}/").headers["content-security-policy"]
            expect(page.locator("#status")).to_contain_text(" products · model ")
            with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as response:
                page.fill("#text", "white skirt")
                page.press("#text", "Enter")
            assert response.value.status == 200
            expect(page.locator("#grid > li")).to_have_count(24)
            with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as response:
                page.set_input_files("#photo", str(FASHION_IMAGES / "10017.jpg"))
            assert response.value.status == 200 and response.value.request.post_data_json["image"].startswith("data:")
            expect(page.locator("#preview-img")).to_have_attribute("src", re.compile("^blob:"))
            expect(page.locator(".bar > span").first).to_have_attribute("style", re.compile(r"width: \d+%"))
            page.locator("#grid > li").first.get_by_role("button").click()
            dialog = page.get_by_role("dialog")
            with page.expect_response(lambda r: r.url.endswith("/api/v1/search")) as response:
                dialog.get_by_role("button", name="Search with this product’s image").click()
            assert response.value.status == 200
            expect(dialog).to_be_hidden()
            assert page.locator("#grid img").first.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
            assert page.evaluate("window.violations") == [] and errors == []
        finally:
            browser.close()
