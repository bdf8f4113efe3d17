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
from .calibration import relevance
from .config import Settings
from .duplicates import first_of_each
from .embedder import Embedder
from .embedding_cache import EmbeddingCache, content_key
from .errors import FashionSearchError
from .fusion import candidate_vector, hybrid_order, seed_vector
from .images import decode_image
from .live_index import LiveIndex
from .store import open_store

logger = logging.getLogger(__name__)

SearchType = Literal["text", "image", "hybrid"]

# A hybrid query ranks this many neighbours of its candidate vector by the soft AND (fusion.py).
HYBRID_CANDIDATES = 256


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
    collapse_duplicates: bool = True  # one slot per image (duplicates.py)


@dataclass(frozen=True)
class Hit:
    product: dict[str, Any]
    score: float  # cosine similarity with the query vector (the seed's fused vector for hybrid queries)
    relevance: float | None  # calibrated, in [0, 1]; None when the bundle is not calibrated


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    good_match: bool | None  # the best hit reaches the bundle's threshold; None: bundle not calibrated
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
        text_vector = image_vector = None
        cached = 0
        if text:
            text_vector, hit = self.cache.get_or_compute(
                content_key("text", text.encode()), lambda: self.embedder.encode_texts([text])[0])
            cached += hit
        if query.image:
            image = query.image
            image_vector, hit = self.cache.get_or_compute(
                content_key("image", image), lambda: self.embedder.encode_images([decode_image(image)])[0])
            cached += hit
        search_type: SearchType = "hybrid" if text and query.image else "text" if text else "image"
        alpha = query.alpha if search_type == "hybrid" else float(search_type == "image")
        hits = self._rank(live, text_vector, image_vector, alpha, query)
        calibration = self.embedder.spec.calibration
        good_match = None if calibration is None else bool(hits and hits[0].relevance >= calibration.threshold(alpha))
        encoded = (text_vector is not None) + (image_vector is not None)
        return SearchResult(hits, good_match, search_type, alpha, (time.perf_counter() - started) * 1000.0,
                            cached, encoded - cached, live.version)

    def _rank(self, live: LiveIndex, text: np.ndarray | None, image: np.ndarray | None, alpha: float,
              query: Query) -> list[Hit]:
        """Neighbours in the index, the soft AND for hybrid queries, relevance, duplicates collapsed."""
        fetch = 2 * query.top_k + 10 if query.collapse_duplicates else query.top_k
        if text is not None and image is not None:
            probe = candidate_vector(image, text, alpha, live.stats)
            _, ids = vector_index.search(live.index, probe[None, :], max(fetch, HYBRID_CANDIDATES))
            rows = ids[0][ids[0] >= 0]
            vectors = live.vectors(rows)
            order = hybrid_order(image, text, alpha, live.stats, vectors)
            rows, vectors = rows[order], vectors[order]
            image_cos, text_cos = vectors @ image, vectors @ text
            scores = vectors @ seed_vector(image, text, alpha)
        else:
            vector = text if text is not None else image
            found, ids = vector_index.search(live.index, vector[None, :], fetch)
            rows, scores = ids[0][ids[0] >= 0], found[0][ids[0] >= 0]
            vectors = live.vectors(rows) if query.collapse_duplicates else None
            image_cos, text_cos = (scores, None) if text is None else (None, scores)
        products = [live.products[row] for row in rows]
        keep = (first_of_each([p.get("thumbnail") for p in products], vectors, query.top_k)
                if query.collapse_duplicates else list(range(min(query.top_k, len(rows)))))
        calibration = self.embedder.spec.calibration
        relevances = (relevance(calibration, image_cosine=image_cos, text_cosine=text_cos, alpha=alpha)
                      if calibration else None)
        return [Hit(products[i], float(scores[i]), None if relevances is None else float(relevances[i]))
                for i in keep]

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
