"""Lambda entry point of the index builder (scheduled reindex, or invoked by hand).

Configuration comes from the environment (config.BuilderSettings); an invocation event may override
`catalog` and `limit`, e.g. {"catalog": "https://..."}.
"""

import asyncio
import dataclasses
from typing import Any

from aws_lambda_powertools import Logger

from fashion_search.build.fetch import FetchOptions
from fashion_search.build.pipeline import BuildOptions, build_index
from fashion_search.build.progress import Progress
from fashion_search.config import BuilderSettings
from fashion_search.model.embedder import Embedder
from fashion_search.store import open_store

logger = Logger(service="fashion-search-builder")


@logger.inject_lambda_context
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    settings = BuilderSettings.from_env(event if isinstance(event, dict) else None)
    options = BuildOptions(limit=settings.limit, keep_versions=settings.keep_versions,
                           fetch=FetchOptions(image_hosts=settings.image_hosts))
    summary = asyncio.run(build_index(settings.catalog, open_store(settings.store), Embedder(settings.model),
                                      options, Progress()))
    result = dataclasses.asdict(summary)
    logger.info("index published", extra=result)
    return result
