"""Lambda entry point of the index builder: one function for every step of a build.

The state machine (infra/stack.py) invokes it once per step, naming the step in the event:

- {"action": "plan"} (plus the execution's input: "catalog", "limit" may override the configuration)
  reads the catalog and stages its chunks; answers {"version", "chunks", "items_key"}, where
  items_key is the S3 key of the chunk list the Distributed Map reads;
- {"action": "chunk", "version", "chunk"} fetches and encodes one chunk (run again on failure);
- {"action": "merge", "version"} builds the index and publishes the version, or refuses to when a
  chunk has no output;
- {"action": "abort", "version"} deletes a failed build's staging folder, and the S3 Vectors index its merge
  may have made (unless the version was published).

An event without "action" runs a whole build in this one invocation, as the function did before the
state machine (a small catalog, invoked by hand): {} or {"catalog": "https://...", "limit": 100}.
Configuration comes from the environment (config.BuilderSettings).
"""

import asyncio
import dataclasses
import functools
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from fashion_search.build import staging
from fashion_search.build.fetch import FetchOptions
from fashion_search.build.pipeline import (
    BuildOptions,
    abort_build,
    build_index,
    merge_build,
    plan_build,
    run_chunk,
)
from fashion_search.build.progress import Progress
from fashion_search.config import BuilderSettings
from fashion_search.index import HnswParams, IndexParams, S3VectorsParams
from fashion_search.model.bundle import read_bundle
from fashion_search.model.embedder import Embedder
from fashion_search.store import open_store

logger = Logger(service="fashion-search-builder")


@functools.lru_cache(maxsize=1)
def _embedder(model: Path) -> Embedder:
    """Loaded once per execution environment: a warm function runs chunk after chunk with it."""
    return Embedder(model)


def _bucket_key(store_uri: str, key: str) -> str:
    """Where the store's `key` lies in its bucket (an S3 store's prefix in front; a folder: the key)."""
    if not store_uri.startswith("s3://"):
        return key
    prefix = store_uri.removeprefix("s3://").partition("/")[2].strip("/")
    return f"{prefix}/{key}" if prefix else key


def _index(settings: BuilderSettings) -> IndexParams:
    """FAISS HNSW in the version's files, or an S3 Vectors index when the deployment names a vector bucket."""
    if settings.vector_bucket is None:
        return HnswParams()
    return S3VectorsParams(settings.vector_bucket, settings.vector_index_prefix or S3VectorsParams.prefix)


@logger.inject_lambda_context
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    settings = BuilderSettings.from_env(event if isinstance(event, dict) else None)
    store = open_store(settings.store)
    options = BuildOptions(limit=settings.limit, index=_index(settings), keep_versions=settings.keep_versions,
                           fetch=FetchOptions(image_hosts=settings.image_hosts), chunk_size=settings.chunk_size)
    result: dict[str, Any]
    if settings.action == "plan":
        plan = asyncio.run(plan_build(settings.catalog, store, read_bundle(settings.model), options, Progress()))
        result = {"version": plan.version, "chunks": len(plan.chunks),
                  "items_key": _bucket_key(settings.store, staging.key(plan.version, staging.ITEMS))}
        logger.info("build planned", extra=result)
    elif settings.action == "chunk":
        assert settings.version is not None and settings.chunk is not None  # BuilderSettings checked them
        done = asyncio.run(run_chunk(store, settings.version, settings.chunk, _embedder(settings.model),
                                     options.fetch, Progress()))
        result = {"version": settings.version, "chunk": done.chunk, **done.counts, "seconds": done.seconds}
        logger.info("chunk done", extra=result)
    elif settings.action == "merge":
        assert settings.version is not None
        result = dataclasses.asdict(asyncio.run(merge_build(store, settings.version, options, Progress())))
        logger.info("index published", extra=result)
    elif settings.action == "abort":
        assert settings.version is not None
        result = {"version": settings.version, "files_discarded": abort_build(store, settings.version, options.index)}
        logger.info("build discarded", extra=result)
    else:
        summary = asyncio.run(build_index(settings.catalog, store, _embedder(settings.model), options, Progress()))
        result = dataclasses.asdict(summary)
        logger.info("index published", extra=result)
    return result
