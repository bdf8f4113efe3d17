"""`fashion-search serve` and `fashion-search query` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import FASHION_IMAGES, build_store, write_feed

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "fashion-search")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(store: Path, bundle: Path, *args: str) -> Iterator[str]:
    """`fashion-search serve` in a child process, until its health endpoint answers."""
    port = free_port()
    proc = subprocess.Popen([CLI, "serve", "--store", str(store), "--model", str(bundle), "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/api/v1/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.communicate()[1]}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(fashion_store: Path, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    frontend = tmp_path_factory.mktemp("frontend")
    (frontend / "index.html").write_text("<!doctype html><title>search</title>")
    with serve(fashion_store, tiny_bundle, "--frontend", str(frontend)) as url:
        yield url


def test_serve_before_any_build_answers_503_then_picks_the_index_up(tmp_path: Path, tiny_bundle: Path) -> None:
    with serve(tmp_path / "store", tiny_bundle) as url:
        response = httpx.post(f"{url}/api/v1/search", json={"text": "red dress"})
        assert response.status_code == 503 and "no index has been published" in response.json()["error"]["message"]
        summary = build_store(write_feed(tmp_path / "feed.jsonl", 30), tmp_path / "store", tiny_bundle)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/api/v1/health").json()["index_version"] != summary.version:
            assert time.monotonic() < deadline, "the new index was not picked up"
            time.sleep(0.25)
        assert httpx.post(f"{url}/api/v1/search", json={"text": "red dress"}).json()["total_results"] == 10


def photo_b64(product_id: str) -> str:
    return base64.b64encode((FASHION_IMAGES / f"{product_id}.jpg").read_bytes()).decode()


def test_text_image_and_hybrid_over_http(server: str) -> None:
    # Without the keyword signal the order is the cosine's (with it, a title's words move products up).
    text = httpx.post(f"{server}/api/v1/search", json={"text": "white skirt", "top_k": 5, "keywords": False}).json()
    image = httpx.post(f"{server}/api/v1/search", json={"image": photo_b64("10017"), "top_k": 5}).json()
    hybrid = httpx.post(f"{server}/api/v1/search",
                        json={"text": "white skirt", "image": photo_b64("10017"), "alpha": 0.5, "top_k": 5,
                              "keywords": False}).json()
    assert [r["search_type"] for r in (text, image, hybrid)] == ["text", "image", "hybrid"]
    assert image["results"][0]["product_id"] == "10017"
    for result in (text, image, hybrid):
        scores = [r["similarity_score"] for r in result["results"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)


def test_thumbnails_are_served_like_cloudfront_would(server: str) -> None:
    hit = httpx.post(f"{server}/api/v1/search", json={"text": "shoes", "top_k": 1}).json()["results"][0]
    response = httpx.get(server + hit["image_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert "immutable" in response.headers["cache-control"]
    assert Image.open(io.BytesIO(response.content)).size == (60, 80)
    assert httpx.get(f"{server}/thumbnails/{'0' * 64}.webp").status_code == 404
    assert httpx.get(f"{server}/thumbnails/../current.json").status_code == 404


def test_frontend_and_its_config_are_served(server: str) -> None:
    page = httpx.get(server + "/")
    assert page.status_code == 200 and "<title>search</title>" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{server}/config.json").json() == {"apiBaseUrl": ""}
    assert httpx.get(f"{server}/../../etc/passwd").status_code == 404
    assert httpx.post(f"{server}/index.html").status_code == 405


def test_payloads_over_lambdas_limit_are_refused_like_api_gateway(server: str) -> None:
    response = httpx.post(f"{server}/api/v1/search", content=b"{" + b" " * (6 * 1024 * 1024) + b"}",
                          headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_errors_over_http_are_json_with_a_message(server: str) -> None:
    response = httpx.post(f"{server}/api/v1/search", json={"text": "x", "top_k": 1000})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "top_k must be at most 100 (got 1000)"


def test_cli_query_single_and_batch(fashion_store: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    single = subprocess.run([CLI, "query", "--store", str(fashion_store), "--model", str(tiny_bundle),
                             "--image", str(FASHION_IMAGES / "10017.jpg"), "--top-k", "3"],
                            capture_output=True, text=True, check=True)
    result = json.loads(single.stdout)
    assert result["search_type"] == "image" and result["results"][0]["product_id"] == "10017"
    assert len(result["results"]) == 3 and isinstance(result["good_match"], bool)
    assert all(0 <= r["relevance"] <= 1 for r in result["results"])

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "q.jpg").write_bytes((FASHION_IMAGES / "10017.jpg").read_bytes())
    queries = [{"id": "a", "text": "white skirt", "top_k": 2}, {"id": "b", "image": "photos/q.jpg"},
               {"id": "c", "text": "skirt", "image": "photos/q.jpg", "alpha": 0.9, "top_k": 4},
               {"id": "d"}, {"id": "e", "image": "photos/missing.jpg"}]
    file = tmp_path / "queries.jsonl"
    file.write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    batch = subprocess.run([CLI, "query", "--store", str(fashion_store), "--model", str(tiny_bundle),
                            "--queries", str(file)], capture_output=True, text=True)
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert batch.returncode == 1  # some queries failed, and said so
    assert [line["id"] for line in lines] == ["a", "b", "c", "d", "e"]
    assert len(lines[0]["results"]) == 2 and isinstance(lines[0]["good_match"], bool)
    assert set(lines[0]["results"][0]) == {"product_id", "similarity_score", "relevance"}
    assert lines[1]["results"][0]["product_id"] == "10017" and len(lines[1]["results"]) == 10
    assert len(lines[2]["results"]) == 4
    assert "give a text, an image, or both" in lines[3]["error"]
    assert "missing.jpg" in lines[4]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "x", "--alpha", "2"], "must be between 0 and 1"),
        (["--text", "x", "--top-k", "0"], "invalid choice"),
        ([], "give --text, --image, --like PRODUCT_ID (or a mix), or --queries FILE"),
        (["--image", "/no/such.jpg"], "/no/such.jpg"),
        (["--image", __file__], "the data is not an image"),
    ],
)
def test_cli_query_errors_are_one_line(fashion_store: Path, tiny_bundle: Path, args: list[str], message: str) -> None:
    result = subprocess.run([CLI, "query", "--store", str(fashion_store), "--model", str(tiny_bundle), *args],
                            capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
