"""The HTTP API's request and response models: validation and the OpenAPI document come from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ..records import ProductRecord
    from ..serve.query import SearchResult

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit: API Gateway and the local server refuse more
MAX_TEXT_CHARS = 500
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # decoded; its base64 (5.6 MB) keeps requests under the 6 MB limit
# An 8x8 red PNG: the documented example must be a picture the API accepts (schemathesis sends it).
EXAMPLE_IMAGE = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mPcpKTEgA0wMeAAg1MCAMXcAQbwB5D8"
                 "AAAAAElFTkSuQmCC")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "navy blue shirt for men", "top_k": 10},
                     {"text": "red", "image": EXAMPLE_IMAGE, "alpha": 0.7, "top_k": 20}]})

    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS, description="What the shopper typed.")
    # The image's limit is its decoded size (413 image_too_large); this cap only spares the server from
    # decoding what no request can carry.
    image: str | None = Field(
        default=None, max_length=MAX_REQUEST_BYTES,
        description="A JPEG, PNG or WebP photo, base64-encoded (a data: URL is accepted); at most 4 MB decoded.")
    alpha: float = Field(default=0.5, ge=0.0, le=1.0, allow_inf_nan=False, strict=True,
                         description="Weight of the image when both are given: 0 = text only, 1 = image only.")
    top_k: int = Field(default=10, ge=1, le=100, strict=True, description="How many products to return.")
    collapse_duplicates: bool = Field(
        default=True, strict=True,
        description="One slot per photo: products with the same image (or near-identical vectors) appear once.")


class SearchHit(BaseModel):
    product_id: str
    title: str
    image_url: str | None = Field(description="Thumbnail URL (WebP, at most 320 px).")
    price: float | None
    category: str | None
    similarity_score: float = Field(description="Cosine similarity between the query and the product, in [-1, 1] "
                                                "(for a hybrid query, with the normalised alpha-weighted mix).")
    relevance: float | None = Field(
        description="Calibrated probability, in [0, 1], that the product is what the query asks for; comparable "
                    "across text, photo and hybrid queries. null when the model bundle is not calibrated.")


class SearchResponse(BaseModel):
    results: list[SearchHit]
    query_time: float = Field(description="Milliseconds spent encoding the query and searching the index.")
    total_results: int
    good_match: bool | None = Field(
        description="Whether the best result reaches the model's close-match threshold: false means no product "
                    "matches well and the results are only the nearest ones. null when the bundle is not calibrated.")
    alpha_used: float = Field(description="The image weight applied: 0 for text-only, 1 for image-only queries.")
    search_type: Literal["text", "image", "hybrid"]
    index_version: str


class ProductDetail(BaseModel):
    product_id: str
    title: str
    description: str | None = None
    category: str | None = None
    price: float | None = None
    brand: str | None = None
    rating: float | None = None
    attributes: dict[str, Any] = {}
    image_url: str | None = None
    source_image: str | None = Field(default=None, description="The catalog's original image URL, if public.")


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    index_version: str | None
    product_count: int
    built_at: str | None
    model: str
    model_hash: str
    problem: str | None = Field(description="Why no index, or not the newest one, is being served.")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


def image_url(product: ProductRecord, base: str) -> str | None:
    """Where the product's thumbnail is served: `base` is the URL of the store's thumbnails/ folder."""
    key = product.thumbnail
    return f"{base}{key.removeprefix('thumbnails/')}" if key else None


def product_detail(product: ProductRecord, thumbnail_base: str) -> ProductDetail:
    return ProductDetail(**product.model_dump(include=set(ProductDetail.model_fields)),
                         image_url=image_url(product, thumbnail_base))


def search_response(result: SearchResult, thumbnail_base: str) -> SearchResponse:
    hits = [SearchHit(product_id=h.product.product_id, title=h.product.title,
                      image_url=image_url(h.product, thumbnail_base), price=h.product.price,
                      category=h.product.category, similarity_score=h.score,
                      relevance=None if h.relevance is None else round(h.relevance, 4)) for h in result.hits]
    return SearchResponse(results=hits, query_time=round(result.query_ms, 3), total_results=len(hits),
                          good_match=result.good_match,
                          alpha_used=result.alpha_used, search_type=result.search_type,
                          index_version=result.version)
