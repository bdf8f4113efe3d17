"""The functions' entry points run as Lambda runs them: `python -m awslambdaric handler.handler`
against a Runtime API stand-in on 127.0.0.1 (what the container image's base runtime does)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashion_search.store import open_store, versions
from tests.conftest import write_feed
from tests.lambda_runtime import RuntimeApi
from tests.test_api import EVENT

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"


def start_runtime(function: str, env: dict[str, str]) -> tuple[RuntimeApi, subprocess.Popen[str]]:
    api = RuntimeApi().start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "handler.handler"],
        cwd=FUNCTIONS / function,
        env={**os.environ, **env, "AWS_LAMBDA_RUNTIME_API": api.address, "LAMBDA_TASK_ROOT": str(FUNCTIONS / function),
             "AWS_LAMBDA_FUNCTION_NAME": f"fashion-search-{function}", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
             "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "eu-west-1",
             "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "FashionSearchTest"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return api, proc


@pytest.fixture
def search_runtime(fashion_store: Path, tiny_bundle: Path) -> Iterator[RuntimeApi]:
    api, proc = start_runtime("search", {"FASHION_SEARCH_STORE": str(fashion_store),
                                        "FASHION_SEARCH_MODEL": str(tiny_bundle)})
    yield api
    proc.kill()
    proc.wait()
    api.stop()


def api_event(method: str, path: str, body: dict | None = None) -> dict:
    event = copy.deepcopy(EVENT)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    return event


def test_search_entry_point_answers_invocations(search_runtime: RuntimeApi) -> None:
    search = search_runtime.invoke(api_event("POST", "/api/v1/search", {"text": "white skirt", "top_k": 3}))
    kind, response = search_runtime.wait(search)
    assert kind == "response", response
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["search_type"] == "text" and len(body["results"]) == 3

    health = search_runtime.invoke(api_event("GET", "/api/v1/health"))
    kind, response = search_runtime.wait(health)
    assert json.loads(response["body"])["product_count"] == 400

    bad = search_runtime.invoke(api_event("POST", "/api/v1/search", {"text": "x", "alpha": 7}))
    kind, response = search_runtime.wait(bad)
    assert kind == "response" and response["statusCode"] == 400  # handled, not a function error


def test_builder_entry_point_publishes_a_version(tmp_path: Path, tiny_bundle: Path) -> None:
    feed = write_feed(tmp_path / "feed.jsonl", 50)
    api, proc = start_runtime("builder", {"FASHION_SEARCH_STORE": str(tmp_path / "store"),
                                          "FASHION_SEARCH_MODEL": str(tiny_bundle),
                                          "FASHION_SEARCH_CATALOG": str(feed), "FASHION_SEARCH_KEEP_VERSIONS": "2"})
    try:
        kind, summary = api.wait(api.invoke({}))
        assert kind == "response", summary
        assert summary["products_indexed"] == 50
        kind, summary = api.wait(api.invoke({"limit": 20}))  # the event may override the configuration
        assert summary["products_indexed"] == 20 and summary["encoded"] == 0
        pointer = versions.read_pointer(open_store(tmp_path / "store"))
        assert pointer is not None and pointer.version == summary["version"]
    finally:
        proc.kill()
        output = proc.communicate()[0]
        api.stop()
    assert '"message":"index published"' in output  # structured logs reach the function's log stream
