"""Lambda entry point of the index builder (scheduled reindex, or invoked by hand).

Configuration comes from the environment (FASHION_SEARCH_STORE, _CATALOG, _MODEL, _KEEP_VERSIONS,
_LIMIT, and _IMAGE_HOSTS: comma-separated hosts image URLs must be on, default any); an invocation
event may override `catalog` and `limit`, e.g. {"catalog": "https://..."}.
"""

import asyncio
import dataclasses
import os
from typing import Any

from aws_lambda_powertools import Logger

from fashion_search.build.fetch import FetchOptions
from fashion_search.build.pipeline import BuildOptions, build_index
from fashion_search.build.progress import Progress
from fashion_search.config import ENV_PREFIX, Settings
from fashion_search.model.embedder import Embedder
from fashion_search.store import open_store

logger = Logger(service="fashion-search-builder")


@logger.inject_lambda_context
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    event = event if isinstance(event, dict) else {}
    settings = Settings.from_env()
    catalog = event.get("catalog") or os.environ.get(f"{ENV_PREFIX}CATALOG")
    if not catalog:
        raise ValueError(f"no catalog: set {ENV_PREFIX}CATALOG or invoke with {{\"catalog\": \"...\"}}")
    limit = event.get("limit") or os.environ.get(f"{ENV_PREFIX}LIMIT")
    keep = os.environ.get(f"{ENV_PREFIX}KEEP_VERSIONS", "5")
    hosts = tuple(h.strip() for h in os.environ.get(f"{ENV_PREFIX}IMAGE_HOSTS", "").split(",") if h.strip())
    options = BuildOptions(limit=int(limit) if limit else None, keep_versions=int(keep) if keep else None,
                           fetch=FetchOptions(image_hosts=hosts))
    summary = asyncio.run(build_index(catalog, open_store(settings.store), Embedder(settings.model), options,
                                      Progress()))
    result = dataclasses.asdict(summary)
    logger.info("index published", extra=result)
    return result
