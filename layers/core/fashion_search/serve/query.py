"""What a search asks and what it answers: plain values, no model, no index, no store.

http/ and the CLI build a Query and read a SearchResult; the service (service.py) does the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import FashionSearchError
from ..records import ProductRecord

SearchType = Literal["text", "image", "hybrid"]


class EmptyQuery(FashionSearchError, ValueError):
    """Neither text nor image was given."""

    status, code = 400, "empty_query"


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: bytes | None = None  # JPEG, PNG or WebP bytes
    alpha: float = 0.5  # weight of the image in a hybrid query
    top_k: int = 10
    collapse_duplicates: bool = True  # one slot per image (duplicates.py)

    def plan(self) -> tuple[str, SearchType, float]:
        """(the text stripped, the kind of search, the image weight applied); EmptyQuery when there is nothing
        to search for. A text-only query weighs the image 0, an image-only one 1."""
        text = self.text.strip() if self.text else ""
        if not text and not self.image:
            raise EmptyQuery("give a text, an image, or both")
        search_type: SearchType = "hybrid" if text and self.image else "text" if text else "image"
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
