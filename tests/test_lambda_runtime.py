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


def test_builder_steps_run_as_the_state_machine_invokes_them(tmp_path: Path, tiny_bundle: Path) -> None:
    """plan -> one invocation per item of the plan's chunk list (the Distributed Map's events) -> merge, in
    one execution environment, as warm Lambdas run them; a merge before the chunks finish is refused, and
    a failed build's abort clears its staging folder."""
    feed = write_feed(tmp_path / "feed.jsonl", 60)
    store_dir = tmp_path / "store"
    api, proc = start_runtime("builder", {"FASHION_SEARCH_STORE": str(store_dir),
                                          "FASHION_SEARCH_MODEL": str(tiny_bundle), "FASHION_SEARCH_CATALOG": str(feed),
                                          "FASHION_SEARCH_CHUNK_SIZE": "25"})
    store = open_store(store_dir)
    try:
        kind, plan = api.wait(api.invoke({"action": "plan"}))
        assert kind == "response", plan
        assert plan["chunks"] == 3 and set(plan) == {"version", "chunks", "items_key"}
        items = json.loads((store_dir / plan["items_key"]).read_bytes())  # what the ItemReader reads
        assert items == [{"chunk": 0}, {"chunk": 1}, {"chunk": 2}]

        kind, error = api.wait(api.invoke({"action": "merge", "version": plan["version"]}))
        assert kind == "error" and error["errorType"] == "IncompleteBuild", error
        assert "3 of 3 chunks have no output" in error["errorMessage"]
        assert versions.read_pointer(store) is None

        for item in reversed(items):  # in any order, as the map's child executions run
            kind, done = api.wait(api.invoke({"action": "chunk", "version": plan["version"], **item}))
            assert kind == "response", done
            assert (done["chunk"], done["indexed"], done["encoded"]) == (item["chunk"], 20, 20)
        kind, again = api.wait(api.invoke({"action": "chunk", "version": plan["version"], "chunk": 1}))  # a retry
        assert kind == "response" and again["chunk"] == 1  # recognised as done

        kind, summary = api.wait(api.invoke({"action": "merge", "version": plan["version"]}))
        assert kind == "response", summary
        assert (summary["products_indexed"], summary["chunks"], summary["version"]) == (60, 3, plan["version"])
        pointer = versions.read_pointer(store)
        assert pointer is not None and pointer.version == plan["version"]
        assert list(store.list(versions.STAGING_PREFIX)) == []

        kind, failed = api.wait(api.invoke({"action": "plan", "limit": 10}))
        kind, aborted = api.wait(api.invoke({"action": "abort", "version": failed["version"]}))
        assert kind == "response" and aborted["files_discarded"] > 0
        assert list(store.list(versions.STAGING_PREFIX)) == []

        kind, error = api.wait(api.invoke({"action": "chunk", "version": "../../current", "chunk": 0}))
        assert kind == "error" and "not a build's version id" in error["errorMessage"]
        kind, error = api.wait(api.invoke({"action": "rebuild"}))
        assert kind == "error" and "unknown action 'rebuild'" in error["errorMessage"]
        assert versions.read_pointer(store) == pointer
    finally:
        proc.kill()
        output = proc.communicate()[0]
        api.stop()
    assert '"message":"build planned"' in output and '"message":"chunk done"' in output
