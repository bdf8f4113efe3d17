"""The search service: one model, the live index, fused queries, and hot swaps of new versions.

It loads the model bundle and the live version once (the cold start), then checks the pointer at
most every `refresh_seconds`; a newer version is loaded in a background thread and swapped in with
one reference assignment, so in-flight queries finish on the version they started with. A version
that cannot be served (corrupt, incomplete, another model) is refused and the old one stays.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import vector_index, versions
from .config import Settings
from .embedder import Embedder, l2_normalize
from .embedding_cache import EmbeddingCache, content_key
from .errors import FashionSearchError
from .images import decode_image
from .live_index import LiveIndex
from .store import open_store

logger = logging.getLogger(__name__)

SearchType = Literal["text", "image", "hybrid"]


class NotReady(FashionSearchError):
    """No index can be served yet (none published, or the live one was refused)."""


class EmptyQuery(FashionSearchError, ValueError):
    """Neither text nor image was given."""


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: bytes | None = None  # JPEG, PNG or WebP bytes
    alpha: float = 0.5  # weight of the image in a hybrid query
    top_k: int = 10


@dataclass(frozen=True)
class Hit:
    product: dict[str, Any]
    score: float  # cosine similarity with the query vector


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    search_type: SearchType
    alpha_used: float
    query_ms: float
    cached: int  # how many of the query's embeddings came from the cache
    encoded: int  # how many had to be computed
    version: str


class SearchService:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.model, threads=settings.threads)
        self.store = open_store(settings.store)
        self.cache = EmbeddingCache(settings.cache_size)
        self._live: LiveIndex | None = None
        self._problem: str | None = None  # why the pointer's version is not (yet) served
        self._refused: versions.Pointer | None = None  # don't download a refused version again
        self._checked_at = -math.inf
        self._refresh_lock = threading.Lock()
        self.refresh()

    # -- the live version ------------------------------------------------------------------
    @property
    def live(self) -> LiveIndex | None:
        return self._live

    def refresh(self) -> bool:
        """Check the pointer now; load and swap in a newer version. True when a swap happened."""
        with self._refresh_lock:
            self._checked_at = time.monotonic()
            pointer: versions.Pointer | None = None
            try:
                pointer = versions.read_pointer(self.store)
                if pointer is None:
                    self._problem = f"no index has been published to {self.store.uri} yet (run fashion-search build)"
                    return False
                current = self._live.pointer if self._live else None
                if pointer in (current, self._refused):
                    return False
                live = LiveIndex.load(self.store, pointer, self.embedder.name, self.embedder.model_hash)
            except FashionSearchError as exc:
                self._refused = pointer
                self._problem = str(exc)
                logger.error("index version refused, %s", "keeping the old one" if self._live else "nothing to serve",
                             extra={"problem": str(exc)})
                return False
            except Exception:  # a store outage must not take the service down: keep serving, retry later
                logger.exception("could not check for a new index version")
                return False
            self._live, self._problem, self._refused = live, None, None
            logger.info("serving index version", extra={"version": live.version, "products": len(live.products)})
            return True

    def maybe_refresh(self) -> None:
        """Start a background refresh if the pointer was not checked for `refresh_seconds`."""
        if time.monotonic() - self._checked_at < self.settings.refresh_seconds:
            return
        self._checked_at = time.monotonic()
        threading.Thread(target=self.refresh, name="index-refresh", daemon=True).start()

    # -- queries ---------------------------------------------------------------------------
    def search(self, query: Query) -> SearchResult:
        self.maybe_refresh()
        live = self._live  # this query uses this version to the end, whatever happens meanwhile
        if live is None:
            raise NotReady(self._problem or "the index is not loaded")
        started = time.perf_counter()
        text = query.text.strip() if query.text else ""
        if not text and not query.image:
            raise EmptyQuery("give a text, an image, or both")
        parts: list[tuple[np.ndarray, bool]] = []
        if text:
            parts.append(self.cache.get_or_compute(
                content_key("text", text.encode()), lambda: self.embedder.encode_texts([text])[0]))
        if query.image:
            image = query.image
            parts.append(self.cache.get_or_compute(
                content_key("image", image), lambda: self.embedder.encode_images([decode_image(image)])[0]))
        if text and query.image:
            search_type: SearchType = "hybrid"
            alpha = query.alpha
            vector = alpha * parts[1][0] + (1.0 - alpha) * parts[0][0]
        else:
            search_type = "text" if text else "image"
            alpha = 0.0 if text else 1.0
            vector = parts[0][0]
        scores, rows = vector_index.search(live.index, l2_normalize(vector[None, :]), query.top_k)
        hits = [Hit(live.products[row], float(score)) for score, row in zip(scores[0], rows[0], strict=True)
                if row >= 0]
        cached = sum(was_cached for _, was_cached in parts)
        return SearchResult(hits, search_type, alpha, (time.perf_counter() - started) * 1000.0,
                            cached, len(parts) - cached, live.version)

    def product(self, product_id: str) -> dict[str, Any] | None:
        self.maybe_refresh()
        live = self._live
        if live is None:
            raise NotReady(self._problem or "the index is not loaded")
        row = live.rows.get(product_id)
        return None if row is None else live.products[row]

    def health(self) -> dict[str, Any]:
        self.maybe_refresh()
        live = self._live
        return {
            "status": "ok" if live else "unavailable",
            "index_version": live.version if live else None,
            "product_count": len(live.products) if live else 0,
            "built_at": live.manifest.created_at if live else None,
            "model": self.embedder.name,
            "model_hash": self.embedder.model_hash,
            "problem": self._problem,
        }
