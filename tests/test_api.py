"""The search API through its Lambda handler, driven with real API Gateway HTTP API (v2) events."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fashion_search import versions
from fashion_search.api import LambdaHandler, create_handler
from fashion_search.config import Settings
from fashion_search.embedder import Embedder, l2_normalize
from fashion_search.local_server import LocalContext
from fashion_search.service import Query, SearchService
from fashion_search.store import open_store
from tests.conftest import FASHION_IMAGES

EVENT = json.loads((Path(__file__).parent / "events" / "http_api_v2.json").read_text())
ORIGIN = "https://shop.example.com"


def event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
          raw_body: str | None = None) -> dict[str, Any]:
    """The sample API Gateway event, re-aimed at `method path` with a JSON (or raw) body."""
    e = copy.deepcopy(EVENT)
    e["rawPath"] = e["requestContext"]["http"]["path"] = path
    e["requestContext"]["http"]["method"] = method
    e["pathParameters"] = {"proxy": path.removeprefix("/api/v1/")}
    if body is not None or raw_body is not None:
        e["body"] = raw_body if raw_body is not None else json.dumps(body)
        e["headers"]["content-type"] = "application/json"
        e["headers"]["content-length"] = str(len(e["body"]))
    e["headers"].update(headers or {})
    return e


def call(handler: LambdaHandler, e: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = handler(e, LocalContext())
    return response["statusCode"], json.loads(response["body"] or "null"), response.get("headers", {})


def photo(product_id: str) -> bytes:
    return (FASHION_IMAGES / f"{product_id}.jpg").read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def service(fashion_store: Path, tiny_bundle: Path) -> SearchService:
    return SearchService(Settings(store=str(fashion_store), model=tiny_bundle, allowed_origins=(ORIGIN,)))


@pytest.fixture(scope="module")
def handler(service: SearchService) -> LambdaHandler:
    return create_handler(service)


@pytest.fixture(scope="module")
def vectors(service: SearchService) -> np.ndarray:
    """The index's stored embeddings, in row order: the ground truth for scores."""
    live = service.live
    assert live is not None
    return np.load(io.BytesIO(versions.read_file(service.store, live.manifest, "embeddings.npy")))


def search(handler: LambdaHandler, **body: Any) -> dict[str, Any]:
    status, payload, _ = call(handler, event("POST", "/api/v1/search", body))
    assert status == 200, payload
    return payload


def test_text_search(handler: LambdaHandler, service: SearchService, vectors: np.ndarray) -> None:
    payload = search(handler, text="white skirt for women", top_k=7)
    assert payload["search_type"] == "text" and payload["alpha_used"] == 0.0
    assert payload["total_results"] == len(payload["results"]) == 7 and payload["query_time"] > 0
    assert payload["index_version"] == service.live.version
    scores = [r["similarity_score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)
    query = service.embedder.encode_texts(["white skirt for women"])[0]
    rows = [service.live.rows[r["product_id"]] for r in payload["results"]]
    np.testing.assert_allclose(scores, vectors[rows] @ query, atol=1e-5)  # each score is that product's cosine
    np.testing.assert_allclose(scores, np.sort(vectors @ query)[::-1][:7], atol=1e-5)  # and they are the top 7
    first = payload["results"][0]
    assert set(first) == {"product_id", "title", "image_url", "price", "category", "similarity_score"}
    assert first["image_url"].startswith("/thumbnails/") and first["image_url"].endswith(".webp")


def test_image_search_finds_the_product_itself(handler: LambdaHandler) -> None:
    payload = search(handler, image=b64(photo("10017")), top_k=5)
    assert payload["search_type"] == "image" and payload["alpha_used"] == 1.0
    assert payload["results"][0]["product_id"] == "10017"
    assert payload["results"][0]["similarity_score"] == pytest.approx(1.0, abs=1e-4)


def test_png_and_data_url_images_are_accepted(handler: LambdaHandler) -> None:
    out = io.BytesIO()
    Image.open(FASHION_IMAGES / "10017.jpg").save(out, format="PNG")
    payload = search(handler, image="data:image/png;base64," + b64(out.getvalue()), top_k=1)
    assert payload["results"][0]["product_id"] == "10017"


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_hybrid_fusion_maths(handler: LambdaHandler, service: SearchService, vectors: np.ndarray,
                             alpha: float) -> None:
    text, image = "blue jeans", photo("10017")
    payload = search(handler, text=text, image=b64(image), alpha=alpha, top_k=10)
    assert payload["search_type"] == "hybrid" and payload["alpha_used"] == alpha
    embedder: Embedder = service.embedder
    t = embedder.encode_texts([text])[0]
    i = embedder.encode_images([Image.open(io.BytesIO(image)).convert("RGB")])[0]
    fused = l2_normalize(alpha * i + (1 - alpha) * t)
    ids = [r["product_id"] for r in payload["results"]]
    rows = [service.live.rows[pid] for pid in ids]
    np.testing.assert_allclose([r["similarity_score"] for r in payload["results"]], vectors[rows] @ fused, atol=1e-5)
    np.testing.assert_allclose(vectors[rows] @ fused, np.sort(vectors @ fused)[::-1][:10], atol=1e-5)  # the top 10
    if alpha == 0.0:
        assert ids == [r["product_id"] for r in search(handler, text=text, top_k=10)["results"]]
    if alpha == 1.0:
        assert ids == [r["product_id"] for r in search(handler, image=b64(image), top_k=10)["results"]]


def test_moving_alpha_re_encodes_nothing(service: SearchService) -> None:
    image = photo("10031")  # inputs no other test sends
    first = service.search(Query(text="red kurta for the cache test", image=image, alpha=0.2))
    assert (first.cached, first.encoded) == (0, 2)
    for alpha in (0.4, 0.6, 0.9):
        moved = service.search(Query(text="red kurta for the cache test", image=image, alpha=alpha))
        assert (moved.cached, moved.encoded) == (2, 0)
        assert moved.hits != first.hits


def test_top_k_bounds_and_small_indexes(handler: LambdaHandler) -> None:
    assert len(search(handler, text="shoes", top_k=1)["results"]) == 1
    assert len(search(handler, text="shoes", top_k=100)["results"]) == 100


def test_health(handler: LambdaHandler, service: SearchService) -> None:
    status, payload, _ = call(handler, event("GET", "/api/v1/health"))
    assert status == 200
    assert payload["status"] == "ok" and payload["product_count"] == 400
    assert payload["index_version"] == service.live.version and payload["model"] == "tiny-random"
    assert payload["problem"] is None


def test_product_lookup(handler: LambdaHandler) -> None:
    status, payload, _ = call(handler, event("GET", "/api/v1/products/10000"))
    assert status == 200
    assert payload["title"] == "Palm Tree Girls Sp Jace Sko White Skirts" and payload["category"] == "Skirts"
    assert payload["attributes"]["baseColour"] == "White" and payload["image_url"].startswith("/thumbnails/")
    status, payload, _ = call(handler, event("GET", "/api/v1/products/nope"))
    assert status == 404 and payload["error"]["message"] == "no product with id 'nope'"


def test_openapi_document(handler: LambdaHandler) -> None:
    status, doc, _ = call(handler, event("GET", "/api/v1/openapi.json"))
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/api/v1/search", "/api/v1/health", "/api/v1/products/{product_id}"} <= set(doc["paths"])
    request = doc["components"]["schemas"]["SearchRequest"]["properties"]
    assert request["top_k"]["maximum"] == 100 and request["alpha"]["maximum"] == 1.0
    assert {"type": "string", "maxLength": 500} in request["text"]["anyOf"]
    swagger = handler(event("GET", "/api/v1/docs"), LocalContext())
    assert swagger["statusCode"] == 200 and "swagger" in swagger["body"].lower()


def test_cors_allows_only_configured_origins(handler: LambdaHandler) -> None:
    _, _, headers = call(handler, event("GET", "/api/v1/health", headers={"origin": ORIGIN}))
    assert headers.get("Access-Control-Allow-Origin") == ORIGIN
    _, _, headers = call(handler, event("GET", "/api/v1/health", headers={"origin": "https://evil.example"}))
    assert "Access-Control-Allow-Origin" not in headers
    preflight = handler(event("OPTIONS", "/api/v1/search", headers={
        "origin": ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"}), LocalContext())
    assert preflight["statusCode"] == 204
    assert preflight["headers"]["Access-Control-Allow-Origin"] == ORIGIN
    assert "content-type" in preflight["headers"]["Access-Control-Allow-Headers"].lower()


def _big_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG")
    return out.getvalue()


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    return out.getvalue()


BAD_INPUTS = [
    # (name, body or raw JSON text, status, message fragment)
    ("empty object", {}, 400, "give a text, an image, or both"),
    ("blank text", {"text": "   "}, 400, "give a text, an image, or both"),
    ("text too long", {"text": "x" * 501}, 400, "text is 501 characters long; at most 500 are accepted"),
    ("text not a string", {"text": 42}, 400, "text must be a string (got 42)"),
    ("alpha above 1", {"text": "x", "alpha": 1.5}, 400, "alpha must be at most 1.0 (got 1.5)"),
    ("alpha below 0", {"text": "x", "alpha": -0.1}, 400, "alpha must be at least 0.0 (got -0.1)"),
    ("alpha not a number", {"text": "x", "alpha": "high"}, 400, 'alpha must be a finite number (got "high")'),
    ("alpha NaN", '{"text": "x", "alpha": NaN}', 400, "alpha must be a finite number (got NaN)"),
    ("top_k zero", {"text": "x", "top_k": 0}, 400, "top_k must be at least 1 (got 0)"),
    ("top_k too big", {"text": "x", "top_k": 101}, 400, "top_k must be at most 100 (got 101)"),
    ("top_k fractional", {"text": "x", "top_k": 2.5}, 400, "top_k must be a whole number (got 2.5)"),
    ("top_k as text", {"text": "x", "top_k": "10"}, 400, 'top_k must be a whole number (got "10")'),
    ("unknown field", {"txt": "red dress"}, 400, "unknown field 'txt'"),
    ("not JSON", '{"text": "red', 400, "the request body is not valid JSON"),
    ("JSON array", "[1, 2]", 400, "the request body must be a JSON object"),
    ("image not base64", {"image": "%%%not base64%%%"}, 400, "image is not valid base64"),
    ("image empty", {"image": ""}, 400, "give a text, an image, or both"),
    ("image is text", {"image": b64(b"hello, I am not a picture")}, 400, "image: the data is not an image"),
    ("image truncated", {"image": b64(photo("10000")[:600])}, 400, "image: the image is damaged"),
    ("image GIF", {"image": b64(_gif())}, 415, "GIF images are not accepted (use JPEG/PNG/WEBP)"),
    ("image over 4 MB", {"image": b64(b"\xff" * (4 * 1024 * 1024 + 1))}, 413, "at most 4 MB is accepted"),
    ("image too many pixels", {"image": b64(_big_png(8000, 6000))}, 413, "at most 40,000,000 pixels"),
    ("image string too long", {"image": "A" * 6_000_000}, 400, "image is 6000000 characters long; at most"),
]


@pytest.mark.parametrize(("name", "body", "status", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_table(handler: LambdaHandler, name: str, body: Any, status: int, message: str) -> None:
    raw = body if isinstance(body, str) else None
    code, payload, _ = call(handler, event("POST", "/api/v1/search", None if raw else body, raw_body=raw))
    assert code == status, payload
    assert message in payload["error"]["message"]
    assert payload["request_id"] and "Traceback" not in json.dumps(payload)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "message"),
    [
        ("GET", "/api/v1/nowhere", {}, None, 404, "no endpoint GET /api/v1/nowhere"),
        ("GET", "/api/v1/search", {}, None, 404, "no endpoint GET /api/v1/search"),
        ("POST", "/api/v1/search", {"content-type": "application/x-www-form-urlencoded"}, "text=red", 415,
         "send the request body as JSON"),
        ("POST", "/api/v1/search", {"content-type": "text/plain"}, '{"text": "red"}', 415,
         "send the request body as JSON"),
    ],
)
def test_bad_requests_beyond_the_body(handler: LambdaHandler, method: str, path: str, headers: dict[str, str],
                                      body: str | None, status: int, message: str) -> None:
    e = event(method, path)
    if body is not None:
        e["body"] = body
    e["headers"].update(headers)
    code, payload, _ = call(handler, e)
    assert code == status and message in payload["error"]["message"]


def test_an_empty_store_answers_503_with_the_reason(tmp_path: Path, tiny_bundle: Path) -> None:
    handler = create_handler(SearchService(Settings(store=str(tmp_path / "empty"), model=tiny_bundle)))
    status, payload, _ = call(handler, event("POST", "/api/v1/search", {"text": "red dress"}))
    assert status == 503 and "no index has been published" in payload["error"]["message"]
    status, payload, _ = call(handler, event("GET", "/api/v1/health"))
    assert status == 200 and payload["status"] == "unavailable" and "no index" in payload["problem"]


def test_an_index_of_another_model_is_refused(fashion_store: Path, other_bundle: tuple[Path, Any]) -> None:
    handler = create_handler(SearchService(Settings(store=str(fashion_store), model=other_bundle[0])))
    status, payload, _ = call(handler, event("POST", "/api/v1/search", {"text": "red dress"}))
    assert status == 503
    message = payload["error"]["message"]
    assert "was built with model 'tiny-random'" in message and "this service runs 'tiny-other'" in message


def test_unexpected_errors_are_500_with_a_request_id_and_no_trace(tmp_path: Path, fashion_store: Path,
                                                                  tiny_bundle: Path) -> None:
    """A version whose metadata lost a field (checksums fine): a bug of ours, not of the caller."""
    source, target = open_store(fashion_store), open_store(tmp_path / "store")
    pointer = versions.read_pointer(source)
    manifest = versions.read_manifest(source, pointer.version)
    files = {name: versions.read_file(source, manifest, name) for name in manifest.files}
    rows = [json.loads(line) for line in files["products.jsonl"].decode().splitlines()]
    files["products.jsonl"] = "".join(json.dumps({k: v for k, v in r.items() if k != "title"}) + "\n"
                                      for r in rows).encode()
    versions.publish(target, manifest.model_copy(update={"files": versions.write_files(target, manifest.version,
                                                                                         files)}))
    handler = create_handler(SearchService(Settings(store=str(tmp_path / "store"), model=tiny_bundle)))
    context = LocalContext()
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append  # type: ignore[method-assign]
    api_logger = logging.getLogger("fashion-search")
    api_logger.addHandler(capture)
    try:
        response = handler(event("POST", "/api/v1/search", {"text": "red dress"}), context)
    finally:
        api_logger.removeHandler(capture)
    payload = json.loads(response["body"])
    assert response["statusCode"] == 500
    assert payload["error"]["message"] == f"something went wrong on our side (request id {context.aws_request_id})"
    assert "Traceback" not in response["body"] and "KeyError" not in response["body"]
    errors = [r for r in records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # the traceback is logged, with the request id:
    logged = api_logger.handlers[0].format(errors[0])
    assert "Traceback" in logged and "KeyError" in logged and context.aws_request_id in logged
