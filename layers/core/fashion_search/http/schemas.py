"""The HTTP API's request and response models: validation and the OpenAPI document come from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)

from ..serve.query import MAX_DEPTH, POOL

if TYPE_CHECKING:
    from ..records import ProductRecord
    from ..serve.query import SearchResult

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit: API Gateway and the local server refuse more
MAX_TEXT_CHARS = 500
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # decoded; its base64 (5.6 MB) keeps requests under the 6 MB limit
# An 8x8 red PNG: the documented example must be a picture the API accepts (schemathesis sends it).
EXAMPLE_IMAGE = ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mPcpKTEgA0wMeAAg1MCAMXcAQbwB5D8"
                 "AAAAAElFTkSuQmCC")


FilterScalar = StrictStr | StrictBool | StrictInt | StrictFloat
MAX_FILTERS = 16
MAX_FILTER_VALUES = 100
MAX_NEGATIVE_TERMS = 5


class Range(BaseModel):
    """A number range: any of the four bounds, at least one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"gte": 10, "lte": 50}, {"gt": 4.5}]})

    gte: float | None = Field(default=None, allow_inf_nan=False)
    gt: float | None = Field(default=None, allow_inf_nan=False)
    lte: float | None = Field(default=None, allow_inf_nan=False)
    lt: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _not_empty(self) -> Range:
        bounds = self.model_dump(exclude_none=True)
        if not bounds:
            raise ValueError("a range needs at least one of gte, gt, lte, lt")
        low = max((v for k, v in bounds.items() if k in ("gte", "gt")), default=None)
        high = min((v for k, v in bounds.items() if k in ("lte", "lt")), default=None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"the range is empty: its lower bound {low} is above its upper bound {high}")
        return self


def _filter_kind(value: Any) -> str:
    return "range" if isinstance(value, dict | Range) else "values" if isinstance(value, list) else "value"


# Tagged by the JSON's own shape, so that a refusal speaks of the shape given (not of every shape tried).
FilterValue = Annotated[
    Annotated[FilterScalar, Tag("value")]
    | Annotated[list[FilterScalar], Field(min_length=1, max_length=MAX_FILTER_VALUES), Tag("values")]
    | Annotated[Range, Tag("range")],
    Discriminator(_filter_kind)]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "navy blue shirt for men", "top_k": 10},
                     {"text": "red", "image": EXAMPLE_IMAGE, "alpha": 0.7, "top_k": 20},
                     {"text": "summer dress", "negative_text": ["black"],
                      "filters": {"category": ["Dresses", "Tops"], "gender": "Women"},
                      "facets": ["category", "baseColour"], "offset": 10, "top_k": 10},
                     {"product_id": "10017", "text": "in red", "alpha": 0.5}]})

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
    product_id: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="More like this: search with this product's photo (its stored vector), blended with `text` by "
                    "`alpha` like a photo. The product itself is left out of the results. Not with `image`.")
    negative_text: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | Annotated[
        list[Annotated[str, Field(max_length=200)]], Field(max_length=MAX_NEGATIVE_TERMS)] | None = Field(
        default=None, description="What the shopper does not want (a term, or up to 5): products that look like it "
                                  "more than the catalog's average lose that much score, and keyword matches "
                                  "holding it are dropped. The page's search box turns '-leather' into one.")
    filters: dict[str, FilterValue] = Field(
        default_factory=dict, max_length=MAX_FILTERS,
        description="Only products that pass every filter (AND across fields). A keyword field (category, brand, "
                    "any text attribute) takes a value or a list of values (any of them; case-insensitive); a "
                    "number field (price, rating, any numeric attribute) a number, a list, or a range "
                    "{gte, gt, lte, lt}, e.g. \"price\": {\"gte\": 10, \"lte\": 50}; in_stock: true keeps "
                    "products whose stock is above 0. "
                    "GET /api/v1/fields lists the live index's fields.")
    facets: list[str] = Field(
        default_factory=list, max_length=8,
        description=f"Fields whose values to count (at most 20 values each, most common first) over the query's "
                    f"candidates: the {POOL} products nearest to it that pass the filters, and its best keyword "
                    f"matches (before duplicates are collapsed: listings sharing a photo count each). A field the "
                    f"query filters on is counted without its own filter, so its other values can be chosen.")
    offset: int = Field(default=0, ge=0, strict=True,
                        description=f"Results to skip (paging); offset + top_k is at most {MAX_DEPTH}. Pages are "
                                    "stable within one index_version.")
    keywords: bool | None = Field(
        default=None, strict=True,
        description="The catalog's own words: BM25 over title, brand and category (fused by reciprocal rank), and "
                    "the catalog values the text names (\"navy blue shirts for men\" ranks up products whose "
                    "colour, category and gender are those). null for the default (on), true or false to choose. "
                    "In a hybrid query the words weigh (1 - alpha).")

    @field_validator("negative_text")
    @classmethod
    def _terms(cls, value: str | list[str] | None) -> list[str]:
        terms = [value] if isinstance(value, str) else value or []
        return [t for t in terms if t.strip()]

    def query_fields(self) -> dict[str, Any]:
        """The fields as serve.query.Query takes them (the image decoded apart)."""
        fields = self.model_dump(exclude={"image", "filters"})
        fields.update(negative_text=tuple(fields["negative_text"] or ()), facets=tuple(fields["facets"]),
                      filters={k: v.model_dump(exclude_none=True) if isinstance(v, Range) else v
                               for k, v in self.filters.items()})
        return fields


class SearchHit(BaseModel):
    product_id: str
    title: str
    image_url: str | None = Field(description="Thumbnail URL (WebP, at most 320 px).")
    price: float | None
    category: str | None
    brand: str | None
    similarity_score: float = Field(description="Cosine similarity between the query and the product, in [-1, 1] "
                                                "(for a hybrid query, with the normalised alpha-weighted mix).")
    relevance: float | None = Field(
        description="Calibrated probability, in [0, 1], that the product is what the query asks for; comparable "
                    "across text, photo and hybrid queries. null when the model bundle is not calibrated.")


class FacetValue(BaseModel):
    value: str | float
    count: int


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
    offset: int = Field(description="Results skipped before this page.")
    has_more: bool = Field(description="Whether a next page exists (ask with offset = offset + top_k).")
    facets: dict[str, list[FacetValue]] = Field(
        default_factory=dict, description="Per field asked for in `facets`: its values over the candidates, with "
                                          "counts, most common first.")


class FilterField(BaseModel):
    name: str
    type: Literal["keyword", "number"]
    values: int | None = Field(default=None, description="Distinct values (keyword fields).")
    min: float | None = None
    max: float | None = None


class Fields(BaseModel):
    fields: list[FilterField] = Field(description="What the live index can be filtered and faceted by.")


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
                      category=h.product.category, brand=h.product.brand, similarity_score=h.score,
                      relevance=None if h.relevance is None else round(h.relevance, 4)) for h in result.hits]
    return SearchResponse(results=hits, query_time=round(result.query_ms, 3), total_results=len(hits),
                          good_match=result.good_match,
                          alpha_used=result.alpha_used, search_type=result.search_type,
                          index_version=result.version, offset=result.offset, has_more=result.has_more,
                          facets={name: [FacetValue(value=v, count=c) for v, c in values]
                                  for name, values in result.facets.items()})
