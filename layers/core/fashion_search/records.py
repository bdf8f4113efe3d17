"""The product record an index version stores, one per vector: written by build/, read by serve/.

One typed model for products.jsonl's rows, so the builder, the live index, the API and the CLI agree on
the fields instead of passing dicts; `extra="ignore"` lets an older service read a newer version's rows.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

AttributeValue = str | int | float | bool


class ProductRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    product_id: str = Field(min_length=1)
    title: str
    description: str | None = None
    category: str | None = None
    price: float | None = None
    brand: str | None = None
    rating: float | None = None
    attributes: dict[str, AttributeValue] = {}
    thumbnail: str | None = None  # the store key of its WebP thumbnail (content-addressed)
    source_image: str | None = None  # the catalog's image URL when public (local paths stay private)
