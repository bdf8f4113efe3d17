"""The search service: one model, the live index, fused queries, and hot swaps of new versions.

It loads the model bundle and the live version once (the cold start), then checks the pointer at
most every `refresh_seconds`; a newer version is loaded and fully checked in a background thread
(one at a time) and swapped in with one reference assignment, so in-flight queries finish on the
version they started with. A version that cannot be served (corrupt, incomplete, another model or
dimension) is refused and the old one stays; it is tried again with a growing delay, not at every check.

`health()` reports the current state only. `status` is "ok" while a version is served, "unavailable"
while none is; `problem` is None when the version the pointer names is served and the store answers,
otherwise it says what is wrong now (nothing published, the store unreadable or not answering, the
pointer's version refused), in words fit for the public: no store location, no file contents, the
details go to the log.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ServiceSettings
from ..errors import FashionSearchError
from ..model.calibration import relevance
from ..model.embedder import Embedder
from ..model.images import decode_image
from ..records import ProductRecord
from ..store import open_store, versions
from .duplicates import first_of_each
from .embedding_cache import EmbeddingCache, content_key
from .live_index import LiveIndex
from .query import Hit, Query, SearchResult
from .ranking import Ranked, candidates, probe_vector, rank

logger = logging.getLogger(__name__)

# Whether the keyword signal is on unless a query says (BENCHMARKS.md, keyword signal).
KEYWORDS_BY_DEFAULT = True
# A version that failed to load is tried again after 10 s, 20 s, 40 s... at most every 10 minutes (and at
# once when the pointer moves): a transient read error heals, a broken version is not downloaded at
# every check.
RETRY_FIRST_SECONDS = 10.0
RETRY_MAX_SECONDS = 600.0
# A refresh still running after this long means the store hangs: /health says so (queries go on).
STALL_SECONDS = 30.0
STORE_UNREADABLE = "the index store cannot be read"
NOTHING_PUBLISHED = "no index has been published yet (run fashion-search build)"


class UnknownProduct(FashionSearchError):
    """A product id the live index does not hold."""

    status, code = 404, "not_found"


class NoFilterColumns(FashionSearchError):
    """The live version predates filter columns."""

    status, code = 409, "rebuild_needed"


class NotReady(FashionSearchError):
    """No index can be served yet (none published, or the live one was refused)."""

    status, code = 503, "index_unavailable"


def _where(filters: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """A query's filters as an index's `where` (an index that filters in its own engine reads them)."""
    return (filters,) if filters else ()


@dataclass(frozen=True)
class _Refusal:
    """A pointer whose version failed to load: why (in public words), how often, and when to try again."""

    pointer: versions.Pointer
    problem: str
    failures: int
    retry_at: float


class SearchService:
    def __init__(self, settings: ServiceSettings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.model, threads=settings.threads)
        self.store = open_store(settings.store)
        self.cache = EmbeddingCache(settings.cache_size)
        self._live: LiveIndex | None = None
        self._problem: str | None = None  # what is wrong now, in public words (see health)
        self._refusal: _Refusal | None = None  # the pointer's version failed to load: not again until retry_at
        self._checked_at = -math.inf
        self._refreshing_since: float | None = None  # when the refresh running now started
        self._refresh_lock = threading.Lock()
        self.refresh()

    # -- the live version ------------------------------------------------------------------
    @property
    def live(self) -> LiveIndex | None:
        return self._live

    @property
    def problem(self) -> str | None:
        """What is wrong now (None: the pointer's version is served), including a refresh stuck on the store."""
        since = self._refreshing_since
        if since is not None and (waited := time.monotonic() - since) > STALL_SECONDS:
            return f"the index store has not answered for {waited:.0f} s"
        return self._problem

    def refresh(self) -> bool:
        """Check the pointer now; load and swap in a newer version. True when a swap happened."""
        with self._refresh_lock:
            return self._refresh()

    def maybe_refresh(self) -> None:
        """Start a background refresh if the pointer was not checked for `refresh_seconds` and none is
        running: one stuck on a hanging store must not pile threads up behind it."""
        if time.monotonic() - self._checked_at < self.settings.refresh_seconds:
            return
        if not self._refresh_lock.acquire(blocking=False):
            return
        self._checked_at = time.monotonic()
        try:
            threading.Thread(target=self._refresh_and_release, name="index-refresh", daemon=True).start()
        except BaseException:
            self._refresh_lock.release()
            raise

    def _refresh_and_release(self) -> None:
        try:
            self._refresh()
        finally:
            self._refresh_lock.release()

    def _refresh(self) -> bool:
        """refresh() under the lock: every outcome sets the current problem, clearing a past one."""
        self._checked_at = self._refreshing_since = time.monotonic()
        try:
            try:
                pointer = versions.read_pointer(self.store)
            except versions.VersionError as exc:  # read_pointer logged the details
                self._problem = str(exc)
                return False
            except Exception:  # an outage must not take the service down: keep serving, say so, retry later
                logger.exception("cannot read the index pointer of %s", self.store.uri)
                self._problem = STORE_UNREADABLE
                return False
            if pointer is None:
                logger.warning("no index has been published to %s yet", self.store.uri)
                self._problem = NOTHING_PUBLISHED
                return False
            if self._live and pointer == self._live.pointer:
                self._problem = self._refusal = None
                return False
            return self._load(pointer)
        finally:
            self._refreshing_since = None

    def _load(self, pointer: versions.Pointer) -> bool:
        """Load, check and swap in the version `pointer` names, unless it failed lately (backing off)."""
        refusal = self._refusal if self._refusal and self._refusal.pointer == pointer else None
        if refusal and time.monotonic() < refusal.retry_at:
            self._problem = refusal.problem
            return False
        try:
            live = LiveIndex.load(self.store, pointer, self.embedder)
        except Exception as exc:  # whatever failed, the version is refused and the old one stays
            failures = refusal.failures + 1 if refusal else 1
            delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
            readable = isinstance(exc, FashionSearchError)  # its message is written for the public
            problem = str(exc) if readable else f"index version {pointer.version} could not be read from the store"
            self._refusal = _Refusal(pointer, problem, failures, time.monotonic() + delay)
            self._problem = problem
            logger.error("index version %s of %s refused (%s), %s; next try in %.0f s", pointer.version,
                         self.store.uri, exc, "keeping the old one" if self._live else "nothing to serve", delay,
                         exc_info=not readable)
            return False
        self._live, self._problem, self._refusal = live, None, None
        logger.info("serving index version", extra={"version": live.version, "products": len(live.products)})
        return True

    # -- queries ---------------------------------------------------------------------------
    def search(self, query: Query) -> SearchResult:
        self.maybe_refresh()
        live = self._live  # this query uses this version to the end, whatever happens meanwhile
        if live is None:
            raise NotReady(self.problem or "the index is not loaded")
        started = time.perf_counter()
        text, search_type, alpha = query.plan()
        allow = self._allowed(live, query.filters)
        counts = {"cached": 0, "encoded": 0}
        text_vector = self._text(text, counts) if text else None
        image_vector = None
        if query.image:
            image = query.image
            image_vector = self._encode(("image", image),
                                        lambda: self.embedder.encode_images([decode_image(image)])[0], counts)
        elif query.product_id is not None:
            row = self._row(live, query.product_id)
            image_vector = live.vectors(np.array([row]))[0]
            allow = np.ones(len(live.products), dtype=bool) if allow is None else allow.copy()
            allow[row] = False  # more like this: not the product itself
        negative_text = tuple(t.strip() for t in query.negative_text if t.strip())
        negatives = tuple(self._text(t, counts) for t in negative_text)
        keyword_text = text if text and (KEYWORDS_BY_DEFAULT if query.keywords is None else query.keywords) else None
        ranked = rank(live, text_vector, image_vector, alpha, allow, keyword_text=keyword_text, negatives=negatives,
                      negative_text=negative_text, where=_where(query.filters))
        hits, has_more = self._page(live, ranked, alpha, query)
        calibration = self.embedder.spec.calibration
        good_match = None
        if calibration is not None:
            top = hits[0].relevance if hits else None  # set on every hit when there is a calibration
            good_match = bool(top is not None and top >= calibration.threshold(alpha))
            if not good_match and keyword_text and hits and live.keywords is not None:
                # The best result holds every word asked for ("iPhone 9", a brand and model): a match, whatever
                # its cosine says.
                first = np.array([live.rows[hits[0].product.product_id]])
                good_match = bool(live.keywords.hold_every_word(keyword_text, first)[0])
        facets = self._facets(live, query, text_vector, image_vector, alpha, keyword_text, negative_text, ranked)
        return SearchResult(hits, good_match, search_type, alpha, (time.perf_counter() - started) * 1000.0,
                            counts["cached"], counts["encoded"], live.version, query.offset, has_more, facets)

    def _text(self, text: str, counts: dict[str, int]) -> np.ndarray:
        return self._encode(("text", text.encode()), lambda: self.embedder.encode_texts([text])[0], counts)

    def _encode(self, key: tuple[str, bytes], compute: Callable[[], np.ndarray], counts: dict[str, int]) -> np.ndarray:
        vector, hit = self.cache.get_or_compute(content_key(*key), compute)
        counts["cached" if hit else "encoded"] += 1
        return vector

    @staticmethod
    def _row(live: LiveIndex, product_id: str) -> int:
        if (row := live.rows.get(product_id)) is None:
            raise UnknownProduct(f"no product with id {product_id!r}")
        return row

    @staticmethod
    def _allowed(live: LiveIndex, filters: Mapping[str, Any]) -> np.ndarray | None:
        if not filters:
            return None
        if live.columns is None:
            raise NoFilterColumns(f"index version {live.version} was built before filters existed: rebuild it")
        return live.columns.mask(filters)

    def _page(self, live: LiveIndex, ranked: Ranked, alpha: float, query: Query) -> tuple[list[Hit], bool]:
        """The hits from `query.offset` on (duplicates collapsed first), and whether more follow."""
        products: dict[int, ProductRecord] = {}  # parsed only for the positions looked at (rows cost µs each)

        def product(i: int) -> ProductRecord:
            if i not in products:
                products[i] = live.products[ranked.rows[i]]
            return products[i]

        depth = query.offset + query.top_k + 1  # one more: does a next page exist?
        keep = (first_of_each(lambda i: product(i).thumbnail, ranked.vectors, depth) if query.collapse_duplicates
                else list(range(min(depth, len(ranked.rows)))))
        page = keep[query.offset : query.offset + query.top_k]
        calibration = self.embedder.spec.calibration
        relevances = None
        if calibration and page:
            at = np.array(page)
            relevances = relevance(calibration, alpha=alpha,
                                   image_cosine=None if ranked.image_cosine is None else ranked.image_cosine[at],
                                   text_cosine=None if ranked.text_cosine is None else ranked.text_cosine[at])
        hits = [Hit(product(i), float(ranked.scores[i]), None if relevances is None else float(relevances[n]))
                for n, i in enumerate(page)]
        return hits, len(keep) > query.offset + query.top_k

    def _facets(self, live: LiveIndex, query: Query, text: np.ndarray | None, image: np.ndarray | None,
                alpha: float, keyword_text: str | None, negative_text: tuple[str, ...],
                ranked: Ranked) -> dict[str, list[tuple[str | float, int]]]:
        """Value counts over the query's candidates (the pool it ranks). A field the query filters on is counted
        over the candidates of the other filters, so its other values stay visible to choose from."""
        if not query.facets:
            return {}
        if live.columns is None:
            raise NoFilterColumns(f"index version {live.version} was built before facets existed: rebuild it")
        out: dict[str, list[tuple[str | float, int]]] = {}
        for name in dict.fromkeys(query.facets):
            rows = ranked.rows
            if name in query.filters:
                others = {k: v for k, v in query.filters.items() if k != name}
                allow = self._allowed(live, others)
                if query.product_id is not None:
                    allow = np.ones(len(live.products), dtype=bool) if allow is None else allow
                    allow[live.rows[query.product_id]] = False
                neighbours, matches = candidates(live, probe_vector(live, text, image, alpha), allow, keyword_text,
                                                 negative_text, where=_where(others))
                rows = np.union1d(neighbours, matches)
            out[name] = live.columns.counts(name, rows)
        return out

    def fields(self) -> list[dict[str, Any]]:
        """What the live version can be filtered and faceted by."""
        live = self._live
        if live is None:
            raise NotReady(self.problem or "the index is not loaded")
        return live.columns.fields() if live.columns is not None else []

    def product(self, product_id: str) -> ProductRecord | None:
        self.maybe_refresh()
        live = self._live
        if live is None:
            raise NotReady(self.problem or "the index is not loaded")
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
            "problem": self.problem,
        }
