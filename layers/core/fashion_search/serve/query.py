"""What a search asks and what it answers: plain values, no model, no index, no store.

http/ and the CLI build a Query and read a SearchResult; the service (service.py) does the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import FashionSearchError
from ..records import ProductRecord

SearchType = Literal["text", "image", "hybrid"]


# A query ranks this many candidates (the nearest products that pass its filters, and its keyword matches):
# the set its facets count, its duplicates collapse in and its pages are cut from.
POOL = 256
# How deep pages go (offset + top_k): collapsed duplicates may take some of the pool's places.
MAX_DEPTH = 200


class EmptyQuery(FashionSearchError, ValueError):
    """Neither text nor image was given."""

    status, code = 400, "empty_query"


class BadQuery(FashionSearchError, ValueError):
    """Fields that cannot go together, or a page past the deepest one."""

    status, code = 400, "bad_query"


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: bytes | None = None  # JPEG, PNG or WebP bytes
    alpha: float = 0.5  # weight of the image in a hybrid query
    top_k: int = 10
    collapse_duplicates: bool = True  # one slot per image (duplicates.py)
    product_id: str | None = None  # "more like this": the product's stored vector stands for the photo
    negative_text: tuple[str, ...] = ()  # pushed down (ranking.py)
    filters: Mapping[str, Any] = field(default_factory=dict)  # field -> value, values or range (index/columns.py)
    facets: tuple[str, ...] = ()  # fields whose values are counted over the candidates
    offset: int = 0  # results skipped: pages are stable within one index version
    keywords: bool | None = None  # the BM25 signal on titles; None: the service's default

    def plan(self) -> tuple[str, SearchType, float]:
        """(the text stripped, the kind of search, the image weight applied); EmptyQuery or BadQuery when there
        is nothing to search for or the fields contradict. A text-only query weighs the image 0, an image-only
        one 1; a product id counts as an image."""
        text = self.text.strip() if self.text else ""
        if self.image and self.product_id is not None:
            raise BadQuery("give a photo or a product_id to search like, not both")
        if self.offset < 0:
            raise BadQuery("offset cannot be negative")
        if self.offset + self.top_k > MAX_DEPTH:
            raise BadQuery(f"offset + top_k may be at most {MAX_DEPTH} (results past that are not ranked)")
        photo = bool(self.image) or self.product_id is not None
        if not text and not photo:
            raise EmptyQuery("give a text, an image, or both" + (" (negative_text alone finds nothing)"
                                                                  if any(self.negative_text) else ""))
        search_type: SearchType = "hybrid" if text and photo else "text" if text else "image"
        return text, search_type, self.alpha if search_type == "hybrid" else float(search_type == "image")


@dataclass(frozen=True)
class Hit:
    product: ProductRecord
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
    offset: int = 0
    has_more: bool = False  # results past this page exist
    facets: dict[str, list[tuple[str | float, int]]] = field(default_factory=dict)  # field -> (value, count)
