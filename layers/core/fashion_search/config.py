"""Every run-time setting, in one place: the search service's and the index builder's, from the environment
(the Lambdas) or from the CLI's flags (local runs).

Paths that are not given default to the working directory's `models/fashion-starter` and `frontend`, the
repository's layout where `make demo` runs; the Lambda image sets FASHION_SEARCH_MODEL. The installed
package never guesses where a checkout lies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "FASHION_SEARCH_"
DEFAULT_KEEP_VERSIONS = 5
# Products per chunk when the state machine fans a build out: about a minute of a 3 GB builder Lambda's
# time with the starter model (infra/README.md), far inside its 15 minutes.
DEFAULT_CHUNK_SIZE = 10_000
# The builder Lambda's steps under the state machine (an event without "action" runs a whole build).
BUILDER_ACTIONS = ("plan", "chunk", "merge", "abort")


def env(name: str, default: str = "") -> str:
    """FASHION_SEARCH_<name>, stripped."""
    return os.environ.get(ENV_PREFIX + name, default).strip()


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env(name).split(",") if item.strip())


def _env_int(name: str) -> int | None:
    value = env(name)
    try:
        return int(value) if value else None
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name}={value!r} is not a whole number") from None


def default_model_dir() -> Path:
    """The model bundle used when none is given: $FASHION_SEARCH_MODEL, else ./models/fashion-starter."""
    return Path(env("MODEL") or "models/fashion-starter")


def models_dir() -> Path:
    """Where the CLI looks for the bundle an index was built with: $FASHION_SEARCH_MODELS, else ./models."""
    return Path(env("MODELS") or "models")


def default_frontend_dir() -> Path | None:
    """The search page served locally: $FASHION_SEARCH_FRONTEND, else ./frontend when there is one."""
    folder = Path(env("FRONTEND") or "frontend")
    return folder if folder.is_dir() else None


def _required_store() -> str:
    store = env("STORE")
    if not store:
        raise ValueError(f"{ENV_PREFIX}STORE is not set: where is the index? (a folder or s3://bucket/prefix)")
    return store


@dataclass(frozen=True)
class ServiceSettings:
    """The search service's (serve/service.py): the Lambda, `fashion-search serve` and `query`."""

    store: str
    model: Path = field(default_factory=default_model_dir)
    allowed_origins: tuple[str, ...] = ()  # CORS: none unless configured
    thumbnail_base_url: str = "/thumbnails/"
    refresh_seconds: float = 5.0  # how often the live pointer may be checked
    cache_size: int = 2048  # embeddings kept, per text or image content
    threads: int | None = None  # onnxruntime intra-op threads (None: one per core)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """FASHION_SEARCH_STORE (required), _MODEL, _ALLOWED_ORIGINS (comma-separated),
        _THUMBNAIL_BASE_URL, _REFRESH_SECONDS, _CACHE_SIZE, _THREADS."""
        return cls(
            store=_required_store(),
            model=default_model_dir(),
            allowed_origins=tuple(o.rstrip("/") for o in _env_list("ALLOWED_ORIGINS")),
            thumbnail_base_url=env("THUMBNAIL_BASE_URL", "/thumbnails/"),
            refresh_seconds=float(env("REFRESH_SECONDS", "5")),
            cache_size=_env_int("CACHE_SIZE") or 2048,
            threads=_env_int("THREADS"),
        )


@dataclass(frozen=True)
class BuilderSettings:
    """The index builder Lambda's (functions/builder); the CLI's `build` takes the same as flags."""

    store: str
    catalog: str  # "" for the steps that do not read it (chunk, merge, abort)
    model: Path = field(default_factory=default_model_dir)
    limit: int | None = None  # index only the first N products
    keep_versions: int | None = DEFAULT_KEEP_VERSIONS
    image_hosts: tuple[str, ...] = ()  # hosts image URLs must be on (empty: any)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # products per chunk when the plan step splits a catalog
    # An S3 Vectors vector bucket: each version's vectors go into an index of their own there (None: FAISS in
    # the version's files), named <vector_index_prefix>-<version> (None: the index's default prefix).
    vector_bucket: str | None = None
    vector_index_prefix: str | None = None
    # The step this invocation runs for the state machine: "plan", "chunk" (`chunk` of build `version`),
    # "merge" or "abort" (of build `version`); None runs a whole build.
    action: str | None = None
    version: str | None = None
    chunk: int | None = None

    @classmethod
    def from_env(cls, event: dict[str, Any] | None = None) -> BuilderSettings:
        """FASHION_SEARCH_STORE, _CATALOG (required to plan or build, or the event's "catalog"), _MODEL, _LIMIT
        (or the event's "limit"), _KEEP_VERSIONS (default 5; 0 keeps all), _IMAGE_HOSTS (comma-separated),
        _CHUNK_SIZE (default 10,000), _VECTOR_BUCKET and _VECTOR_INDEX_PREFIX (S3 Vectors). The event's
        "action" names a step of the state machine: "plan"; "chunk" with "version" and "chunk"; "merge" or
        "abort" with "version"."""
        event = event or {}
        action = event.get("action")
        if action is not None and action not in BUILDER_ACTIONS:
            raise ValueError(f"unknown action {action!r}: expected one of {', '.join(BUILDER_ACTIONS)} (or none, "
                             "for a whole build)")
        catalog = event.get("catalog") or env("CATALOG")
        if action in (None, "plan") and (not catalog or not isinstance(catalog, str)):
            raise ValueError(f"no catalog: set {ENV_PREFIX}CATALOG or invoke with {{\"catalog\": \"...\"}}")
        version = event.get("version")
        if action in ("chunk", "merge", "abort") and (not version or not isinstance(version, str)):
            raise ValueError(f"action {action!r} needs the build's \"version\" (the plan step's answer)")
        chunk = event.get("chunk")
        if action == "chunk" and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0):
            raise ValueError(f"action 'chunk' needs \"chunk\", a chunk number (0 or more), got {chunk!r}")
        limit = event.get("limit") or _env_int("LIMIT")
        keep = _env_int("KEEP_VERSIONS")
        chunk_size = _env_int("CHUNK_SIZE")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"{ENV_PREFIX}CHUNK_SIZE={chunk_size}: a chunk holds at least 1 product")
        return cls(store=_required_store(), catalog=catalog if isinstance(catalog, str) else "",
                   model=default_model_dir(), limit=int(limit) if limit else None,
                   keep_versions=DEFAULT_KEEP_VERSIONS if keep is None else keep or None,
                   image_hosts=_env_list("IMAGE_HOSTS"), chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                   vector_bucket=env("VECTOR_BUCKET") or None, vector_index_prefix=env("VECTOR_INDEX_PREFIX") or None,
                   action=action, version=version if action in ("chunk", "merge", "abort") else None,
                   chunk=chunk if action == "chunk" else None)
