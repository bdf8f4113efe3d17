"""Deployment settings, read from CDK context (cdk.json "context" or `cdk deploy -c key=value`).

Values given with `-c` arrive as strings and values in cdk.json as JSON types, so every reader
accepts both. Invalid values fail the synth with a message naming the key, before anything reaches
CloudFormation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

# The API Gateway integration timeout of an HTTP API is 30 s; the Lambda must give up before it.
MAX_SEARCH_TIMEOUT_S = 29
# A Distributed Map runs at most 10,000 child executions at once.
MAX_MAP_CONCURRENCY = 10_000
# Products per build chunk: 100,000 take ~10 min of a 3 GB builder with the starter model (infra/README.md).
MAX_CHUNK_SIZE = 100_000
_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# Where a version's vectors live: FAISS in the version's files, loaded by each search function (the default),
# or an index of their own in an S3 Vectors vector bucket (infra/README.md, "Vector backends").
VECTOR_BACKENDS = ("faiss", "s3vectors")
_SCHEDULE = re.compile(r"^(rate|cron)\(.+\)$")


class ContextReader(Protocol):
    """The part of `constructs.Node` that settings need (lets tests pass a plain dict)."""

    def try_get_context(self, key: str) -> Any: ...


@dataclass(frozen=True)
class DeploySettings:
    """Everything that differs between deployments; defaults suit a small retailer's dev stage."""

    stage: str = "dev"
    # EventBridge schedule expression for the reindex: rate(...) or cron(...).
    reindex_schedule: str = "rate(1 day)"
    # 2,048 MB buys ~1.2 vCPU (Lambda allots 1 vCPU per 1,769 MB) for onnxruntime's text and image
    # towers; see infra/README.md for the reasoning and how to refine it from benchmarks.
    search_memory_mb: int = 2048
    search_timeout_s: int = 15
    # 3,008 MB (~1.7 vCPU) is the largest size new accounts get without a quota increase.
    builder_memory_mb: int = 3008
    builder_timeout_min: int = 15
    # Extra browser origins allowed to call the API cross-origin (the site itself is added for you).
    allowed_origins: tuple[str, ...] = ()
    catalog_url: str = "https://dummyjson.com/products"
    catalog_limit: int | None = None
    keep_versions: int = 5
    # The build state machine: chunks fetched and encoded at once (Distributed Map MaxConcurrency), and
    # products per chunk (about a minute of a 3 GB builder with the starter model; infra/README.md).
    build_concurrency: int = 10
    build_chunk_size: int = 10_000
    reserved_concurrency: int | None = None
    provisioned_concurrency: int = 0
    throttle_rate: float = 50.0
    throttle_burst: int = 100
    # True: CloudFront serves /api/* from the HTTP API, so the page calls its own origin (no CORS
    # preflights). False: the page calls the execute-api URL cross-origin, allowed by CORS.
    same_origin_api: bool = True
    # "faiss" (the default) or "s3vectors": a vector bucket for the versions' indexes (VECTOR_BACKENDS).
    vector_backend: str = "faiss"

    def __post_init__(self) -> None:
        if not _STAGE.match(self.stage):
            raise ValueError(f"stage {self.stage!r}: use 1-20 lowercase letters, digits or '-'")
        if not _SCHEDULE.match(self.reindex_schedule):
            raise ValueError(f"reindexSchedule {self.reindex_schedule!r}: expected rate(...) or cron(...)")
        for key, memory in (("searchMemoryMb", self.search_memory_mb),
                            ("builderMemoryMb", self.builder_memory_mb)):
            if not 128 <= memory <= 10240:
                raise ValueError(f"{key} {memory}: Lambda allows 128-10240 MB")
        if not 1 <= self.search_timeout_s <= MAX_SEARCH_TIMEOUT_S:
            raise ValueError(f"searchTimeoutSeconds {self.search_timeout_s}: must be 1-{MAX_SEARCH_TIMEOUT_S}")
        if not 1 <= self.builder_timeout_min <= 15:
            raise ValueError(f"builderTimeoutMinutes {self.builder_timeout_min}: Lambda allows 1-15")
        for origin in self.allowed_origins:
            _check_origin(origin)
        # The builder reads a deployed catalog as a products API over http(s), and its role may read only
        # the index prefix: an s3:// catalog would fail at the first scheduled build, so it fails here.
        if urlsplit(self.catalog_url).scheme not in ("http", "https"):
            raise ValueError(f"catalogUrl {self.catalog_url!r}: expected the http(s):// URL of a DummyJSON- or "
                             "FakeStore-style products API (the builder cannot read s3:// or other catalogs)")
        if self.catalog_limit is not None and self.catalog_limit < 1:
            raise ValueError(f"catalogLimit {self.catalog_limit}: must be positive")
        if self.keep_versions < 1:
            raise ValueError(f"keepVersions {self.keep_versions}: must keep at least the live version")
        if self.vector_backend not in VECTOR_BACKENDS:
            raise ValueError(f"vectorBackend {self.vector_backend!r}: expected one of {', '.join(VECTOR_BACKENDS)}")
        # Search functions query the previous version's S3 Vectors index until they load the new one.
        if self.vector_backend == "s3vectors" and self.keep_versions < 2:
            raise ValueError(f"keepVersions {self.keep_versions}: with vectorBackend s3vectors, keep at least 2 "
                             "(the search functions query the previous version until they load the new one)")
        if not 1 <= self.build_concurrency <= MAX_MAP_CONCURRENCY:
            raise ValueError(f"buildConcurrency {self.build_concurrency}: a Distributed Map runs 1-"
                             f"{MAX_MAP_CONCURRENCY:,} child executions at once")
        if not 1 <= self.build_chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"buildChunkSize {self.build_chunk_size}: must be 1-{MAX_CHUNK_SIZE:,} products "
                             "(a chunk must finish inside the builder's timeout)")
        if self.reserved_concurrency is not None and self.reserved_concurrency < 1:
            raise ValueError("reservedConcurrency: must be positive (0 or unset means unreserved)")
        if self.provisioned_concurrency < 0:
            raise ValueError("provisionedConcurrency: must not be negative")
        if (self.reserved_concurrency is not None
                and self.provisioned_concurrency > self.reserved_concurrency):
            raise ValueError("provisionedConcurrency cannot exceed reservedConcurrency")
        if self.throttle_rate <= 0 or self.throttle_burst < 1:
            raise ValueError("throttleRate and throttleBurst must be positive")

    @classmethod
    def from_context(cls, node: ContextReader) -> DeploySettings:
        """Read every setting from context, falling back to the defaults above."""

        def get(key: str) -> Any:
            value = node.try_get_context(key)
            return None if value in (None, "") else value

        defaults = cls()
        reserved = _as_int(get("reservedConcurrency"), 0, "reservedConcurrency")
        limit = get("catalogLimit")
        return cls(
            stage=str(get("stage") or defaults.stage),
            reindex_schedule=str(get("reindexSchedule") or defaults.reindex_schedule),
            search_memory_mb=_as_int(get("searchMemoryMb"), defaults.search_memory_mb, "searchMemoryMb"),
            search_timeout_s=_as_int(get("searchTimeoutSeconds"), defaults.search_timeout_s,
                                     "searchTimeoutSeconds"),
            builder_memory_mb=_as_int(get("builderMemoryMb"), defaults.builder_memory_mb, "builderMemoryMb"),
            builder_timeout_min=_as_int(get("builderTimeoutMinutes"), defaults.builder_timeout_min,
                                        "builderTimeoutMinutes"),
            allowed_origins=_as_list(get("allowedOrigins")),
            catalog_url=str(get("catalogUrl") or defaults.catalog_url),
            catalog_limit=None if limit is None else _as_int(limit, 0, "catalogLimit"),
            keep_versions=_as_int(get("keepVersions"), defaults.keep_versions, "keepVersions"),
            build_concurrency=_as_int(get("buildConcurrency"), defaults.build_concurrency, "buildConcurrency"),
            build_chunk_size=_as_int(get("buildChunkSize"), defaults.build_chunk_size, "buildChunkSize"),
            reserved_concurrency=reserved or None,
            provisioned_concurrency=_as_int(get("provisionedConcurrency"), 0, "provisionedConcurrency"),
            throttle_rate=_as_float(get("throttleRate"), defaults.throttle_rate, "throttleRate"),
            throttle_burst=_as_int(get("throttleBurst"), defaults.throttle_burst, "throttleBurst"),
            same_origin_api=_as_bool(get("sameOriginApi"), defaults.same_origin_api, "sameOriginApi"),
            vector_backend=str(get("vectorBackend") or defaults.vector_backend),
        )


def _check_origin(origin: str) -> None:
    """A browser origin is scheme://host[:port] and nothing else; CORS compares it verbatim."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ValueError(f"allowedOrigins: {origin!r} is not an origin like https://shop.example.com")


def _as_int(value: Any, default: int, key: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} {value!r}: expected an integer") from None


def _as_float(value: Any, default: float, key: str) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} {value!r}: expected a number") from None


def _as_bool(value: Any, default: bool, key: str) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{key} {value!r}: expected true or false")


def _as_list(value: Any) -> tuple[str, ...]:
    """A JSON list from cdk.json, or from `-c` a comma-separated string or a JSON list."""
    if value is None:
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"allowedOrigins {value!r}: not a JSON list") from None
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip().rstrip("/") for item in items if str(item).strip())
