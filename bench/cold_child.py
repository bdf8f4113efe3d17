"""One cold start, in the fresh process the cold-start section spawns: from process start to the
first answered query, the way the search Lambda's init and first invocation run.

Phases: import (interpreter start + the modules functions/search/handler.py imports), model load
(`Embedder`), index download (opening the store — for S3, importing boto3 and making its client —
and every `store.get` the service makes: pointer, manifest, products, index), verify + deserialise
(the rest of `SearchService`'s first load: checksums, JSON, FAISS), handler (`create_handler`:
powertools' resolver and OpenAPI models), first query (a text search through the Lambda handler
with an API Gateway event). This module imports only the standard library before the service's
modules, so the import phase is theirs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any


class TimedStore:
    """Opens the service's store and times it (for S3: importing boto3, making the client) and
    every get, counting the bytes."""

    def __init__(self, open_store: Any, uri: str) -> None:
        started = time.perf_counter()
        self.inner = open_store(uri)
        self.seconds, self.bytes = time.perf_counter() - started, 0

    def get(self, key: str) -> bytes:
        started = time.perf_counter()
        data = self.inner.get(key)
        self.seconds += time.perf_counter() - started
        self.bytes += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--spawned", type=float, required=True, help="time.time() when the parent spawned us")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    from fashion_search.config import ServiceSettings
    from fashion_search.http.api import create_handler
    from fashion_search.model.embedder import Embedder
    from fashion_search.serve import service as service_module

    imported = time.time()
    embedder = Embedder(args.model)
    model_loaded = time.time()
    stores: list[TimedStore] = []
    open_store = service_module.open_store
    service_module.open_store = lambda uri: stores.append(TimedStore(open_store, uri)) or stores[-1]
    service = service_module.SearchService(ServiceSettings(store=args.store, model=Path(args.model),
                                                    refresh_seconds=math.inf), embedder=embedder)
    index_loaded = time.time()
    if service.live is None:
        raise SystemExit(f"no index served: {service.health()['problem']}")
    handler = create_handler(service)
    handler_ready = time.time()

    from fashion_search.http.local_server import LocalContext, http_api_event  # the bench's own: not counted

    body = json.dumps({"text": "navy blue shirt for men", "top_k": 24}).encode()
    event = http_api_event("POST", "/api/v1/search", {"content-type": "application/json"}, body, "127.0.0.1")
    started = time.time()
    response = handler(event, LocalContext())
    answered = time.time()
    if response["statusCode"] != 200:
        raise SystemExit(f"first query failed: {response}")
    from bench.common import rss_mb  # after the clock: numpy, its one import, is loaded by now

    download = stores[0].seconds
    args.result.write_text(json.dumps({
        "import": imported - args.spawned, "model": model_loaded - imported, "download": download,
        "deserialise": index_loaded - model_loaded - download, "handler": handler_ready - index_loaded,
        "first_query": answered - started, "total": handler_ready - args.spawned + answered - started,
        "bytes": stores[0].bytes, "products": len(service.live.products), **rss_mb(),
    }))


if __name__ == "__main__":
    main()
