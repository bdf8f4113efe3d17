"""The search API through its Lambda handler, driven with real API Gateway HTTP API (v2) events."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fashion_search.config import ServiceSettings
from fashion_search.http.api import LambdaHandler, create_handler
from fashion_search.http.local_server import LocalContext
from fashion_search.model.embedder import Embedder, l2_normalize
from fashion_search.serve.live_index import ProductTable
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService
from tests.conftest import FASHION_IMAGES, ORIGIN

EVENT = json.loads((Path(__file__).parent / "events" / "http_api_v2.json").read_text())


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


def search(handler: LambdaHandler, **body: Any) -> dict[str, Any]:
    status, payload, _ = call(handler, event("POST", "/api/v1/search", body))
    assert status == 200, payload
    return payload


def test_text_search(handler: LambdaHandler, service: SearchService, vectors: np.ndarray) -> None:
    payload = search(handler, text="white skirt for women", top_k=7, collapse_duplicates=False, keywords=False)
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
    assert set(first) == {"product_id", "title", "image_url", "price", "category", "brand", "similarity_score",
                          "relevance"}
    assert first["image_url"].startswith("/thumbnails/") and first["image_url"].endswith(".webp")


def test_relevance_is_the_bundles_calibration_of_each_cosine(handler: LambdaHandler, service: SearchService,
                                                             vectors: np.ndarray) -> None:
    calibration = service.embedder.spec.calibration
    assert calibration is not None  # conftest calibrates the tiny bundle
    text, image = "white skirt for women", photo("10017")
    t = service.embedder.encode_texts([text])[0]
    i = service.embedder.encode_images([Image.open(io.BytesIO(image)).convert("RGB")])[0]
    for body, expected in [
        ({"text": text}, lambda rows: calibration.text(vectors[rows] @ t)),
        ({"image": b64(image)}, lambda rows: calibration.image(vectors[rows] @ i)),
        ({"text": text, "image": b64(image), "alpha": 0.3},
         lambda rows: calibration.image(vectors[rows] @ i) ** 0.3 * calibration.text(vectors[rows] @ t) ** 0.7),
    ]:
        payload = search(handler, top_k=10, **body)
        rows = [service.live.rows[r["product_id"]] for r in payload["results"]]
        relevance = [r["relevance"] for r in payload["results"]]
        np.testing.assert_allclose(relevance, expected(rows), atol=1e-4)
        assert all(0.0 <= r <= 1.0 for r in relevance)
        threshold = calibration.threshold(payload["alpha_used"])
        assert payload["good_match"] == (expected(rows)[0] >= threshold)


def test_an_uncalibrated_bundle_says_so(tmp_path: Path, fashion_store: Path, tiny_bundle: Path) -> None:
    """relevance and good_match are null, not invented, when the bundle has no calibration."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    spec = json.loads((bundle / "bundle.json").read_text())
    del spec["calibration"]
    (bundle / "bundle.json").write_text(json.dumps(spec))
    service = SearchService(ServiceSettings(store=str(fashion_store), model=bundle))
    payload = search(create_handler(service), text="shoes")
    assert payload["good_match"] is None and {r["relevance"] for r in payload["results"]} == {None}


def test_duplicates_take_one_slot_unless_asked(handler: LambdaHandler, service: SearchService,
                                               vectors: np.ndarray) -> None:
    """Products with one photo (one thumbnail key) under several ids: the feed has such twins."""
    thumbnails = [service.live.products[row].thumbnail for row in range(len(service.live.products))]
    twins = [key for key in set(thumbnails) if thumbnails.count(key) > 1]
    assert twins, "the test feed should hold products sharing a photo"
    row = thumbnails.index(twins[0])
    query = {"image": b64(photo(service.live.products[row].product_id)), "top_k": 10}
    raw = search(handler, collapse_duplicates=False, **query)["results"]
    collapsed = search(handler, **query)["results"]
    keys = [thumbnails[service.live.rows[r["product_id"]]] for r in collapsed]
    assert len(keys) == len(set(keys)) == 10
    raw_keys = [thumbnails[service.live.rows[r["product_id"]]] for r in raw]
    assert len(set(raw_keys)) < len(raw_keys)  # uncollapsed, the twins take two slots
    kept = [service.live.rows[r["product_id"]] for r in collapsed]
    similarity = vectors[kept] @ vectors[kept].T
    assert (similarity[~np.eye(len(kept), dtype=bool)] < 0.99).all()  # nor do near-identical vectors
    # Collapsing only drops results: what stays keeps the uncollapsed order.
    order = [r["product_id"] for r in raw if r["product_id"] in {c["product_id"] for c in collapsed}]
    assert order == [r["product_id"] for r in collapsed][: len(order)]


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


def soft_and_reference(image: np.ndarray, text: np.ndarray, alpha: float, vectors: np.ndarray) -> np.ndarray:
    """fusion.soft_and over the whole gallery, from the definition: standardised scores, weighted soft min."""
    z_image, z_text = [(s - s.mean()) / s.std(ddof=1) for s in (vectors @ image, vectors @ text)]
    return -1.5 * np.log(np.exp(-alpha * z_image / 1.5) + np.exp(-(1 - alpha) * z_text / 1.5))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_hybrid_fusion_maths(handler: LambdaHandler, service: SearchService, vectors: np.ndarray,
                             alpha: float) -> None:
    """Ranked by the soft AND of standardised scores (the true top 10 of the whole index, although only the
    candidate vector's neighbours are scored); similarity_score stays the seed's fused cosine. The ends of the
    slider are the single searches, with the keyword signal as well (it weighs 1 - alpha)."""
    text, image = "blue jeans", photo("10017")
    payload = search(handler, text=text, image=b64(image), alpha=alpha, top_k=10, collapse_duplicates=False,
                     keywords=False)
    assert payload["search_type"] == "hybrid" and payload["alpha_used"] == alpha
    embedder: Embedder = service.embedder
    t = embedder.encode_texts([text])[0]
    i = embedder.encode_images([Image.open(io.BytesIO(image)).convert("RGB")])[0]
    fused = l2_normalize(alpha * i + (1 - alpha) * t)
    ids = [r["product_id"] for r in payload["results"]]
    rows = [service.live.rows[pid] for pid in ids]
    np.testing.assert_allclose([r["similarity_score"] for r in payload["results"]], vectors[rows] @ fused, atol=1e-5)
    reference = soft_and_reference(i, t, alpha, vectors)
    np.testing.assert_allclose(reference[rows], np.sort(reference)[::-1][:10], atol=1e-6)
    alone = {0.0: {"text": text}, 1.0: {"image": b64(image)}}.get(alpha)
    if alone:  # the ends of the slider are the single-modality searches
        single = search(handler, top_k=10, collapse_duplicates=False, keywords=False, **alone)["results"]
        assert ids == [r["product_id"] for r in single]
        keyworded = search(handler, text=text, image=b64(image), alpha=alpha, top_k=10)["results"]
        assert [r["product_id"] for r in keyworded] == [r["product_id"] for r in search(handler, top_k=10, **alone)[
            "results"]]


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
    ("image too many pixels", {"image": b64(_big_png(8000, 6000))}, 413, "at most 12,500,000 pixels"),
    ("image string too long", {"image": "A" * 6_000_000}, 413, "image is 4.3 MB; at most 4 MB is accepted"),
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
        ("GET", "/api/v1/search", {}, None, 405, "/api/v1/search takes POST, not GET"),
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
    handler = create_handler(SearchService(ServiceSettings(store=str(tmp_path / "empty"), model=tiny_bundle)))
    status, payload, _ = call(handler, event("POST", "/api/v1/search", {"text": "red dress"}))
    assert status == 503 and "no index has been published" in payload["error"]["message"]
    status, payload, _ = call(handler, event("GET", "/api/v1/health"))
    assert status == 200 and payload["status"] == "unavailable" and "no index" in payload["problem"]


def test_an_index_of_another_model_is_refused(fashion_store: Path, other_bundle: tuple[Path, Any]) -> None:
    handler = create_handler(SearchService(ServiceSettings(store=str(fashion_store), model=other_bundle[0])))
    status, payload, _ = call(handler, event("POST", "/api/v1/search", {"text": "red dress"}))
    assert status == 503
    message = payload["error"]["message"]
    assert "was built with model 'tiny-random'" in message and "this service runs 'tiny-other'" in message


def test_unexpected_errors_are_500_with_a_request_id_and_no_trace(fashion_store: Path, tiny_bundle: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug of ours at query time (injected: reading a product row raises KeyError) is a 500 with a request id."""
    handler = create_handler(SearchService(ServiceSettings(store=str(fashion_store), model=tiny_bundle)))

    def broken_row(table: ProductTable, row: int) -> None:
        raise KeyError("title")

    monkeypatch.setattr(ProductTable, "__getitem__", broken_row)
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
