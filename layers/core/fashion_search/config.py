"""Run-time settings of the search service, from the environment (Lambda) or the CLI (local)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .model.bundle import default_bundle_dir

ENV_PREFIX = "FASHION_SEARCH_"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(ENV_PREFIX + name, default).strip()


@dataclass(frozen=True)
class Settings:
    store: str
    model: Path = field(default_factory=default_bundle_dir)
    allowed_origins: tuple[str, ...] = ()  # CORS: none unless configured
    thumbnail_base_url: str = "/thumbnails/"
    refresh_seconds: float = 5.0  # how often the live pointer may be checked
    cache_size: int = 2048  # embeddings kept, per text or image content
    threads: int | None = None  # onnxruntime intra-op threads (None: one per core)

    @classmethod
    def from_env(cls) -> Settings:
        """FASHION_SEARCH_STORE (required), _MODEL, _ALLOWED_ORIGINS (comma-separated),
        _THUMBNAIL_BASE_URL, _REFRESH_SECONDS, _CACHE_SIZE, _THREADS."""
        store = _env("STORE")
        if not store:
            raise ValueError(f"{ENV_PREFIX}STORE is not set: where is the index? (a folder or s3://bucket/prefix)")
        origins = tuple(o.strip().rstrip("/") for o in _env("ALLOWED_ORIGINS").split(",") if o.strip())
        threads = _env("THREADS")
        return cls(
            store=store,
            model=Path(_env("MODEL")) if _env("MODEL") else default_bundle_dir(),
            allowed_origins=origins,
            thumbnail_base_url=_env("THUMBNAIL_BASE_URL", "/thumbnails/"),
            refresh_seconds=float(_env("REFRESH_SECONDS", "5")),
            cache_size=int(_env("CACHE_SIZE", "2048")),
            threads=int(threads) if threads else None,
        )
