"""The one product model every catalog source is normalised to, with every field bounded.

A catalog is data from outside: a 5 MiB title would be indexed, returned by every search that finds it,
and push a response past Lambda's 6 MB limit. So the model bounds each field, by one rule:

- Text shown to shoppers (title, description, category, brand, attribute string values) is truncated:
  cut to one character under its bound and ended with "…", so a long title still indexes and reads as cut.
- What identifies something (the id, an image reference) is never cut, since a cut could make two
  different ones equal: the product is skipped (`invalid_product`) instead.
- Of the attributes, those with keys longer than MAX_ATTRIBUTE_KEY_CHARS are dropped, then the first
  MAX_ATTRIBUTES in catalog order are kept. Of the extra images (never fetched), those longer than
  MAX_IMAGE_REF_CHARS are dropped, then the first MAX_IMAGES kept.

A search hit then carries under 600 characters of catalog text (id, title, category), so 100 hits stay
far below 6 MB whatever the escaping.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...records import AttributeValue

MAX_ID_CHARS = 128
MAX_IMAGE_REF_CHARS = 2_048
MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 5_000
MAX_NAME_CHARS = 100  # category and brand
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_KEY_CHARS = 64
MAX_ATTRIBUTE_VALUE_CHARS = 500
MAX_IMAGES = 20
ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its first limit - 1 and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


class CatalogProduct(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    title: str = Field(min_length=1)
    image: str = Field(min_length=1, max_length=MAX_IMAGE_REF_CHARS)  # an absolute path or an http(s) URL
    images: tuple[str, ...] = ()
    description: str | None = None
    category: str | None = None
    price: float | None = Field(default=None, allow_inf_nan=False)
    brand: str | None = None
    rating: float | None = Field(default=None, allow_inf_nan=False)
    attributes: dict[str, AttributeValue] = {}

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @field_validator("title")
    @classmethod
    def _strip_title(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("title is blank")
        return clip(value, MAX_TITLE_CHARS)

    @field_validator("description")
    @classmethod
    def _clip_description(cls, value: str | None) -> str | None:
        return None if value is None else clip(value, MAX_DESCRIPTION_CHARS)

    @field_validator("category", "brand")
    @classmethod
    def _clip_name(cls, value: str | None) -> str | None:
        return None if value is None else clip(value, MAX_NAME_CHARS)

    @field_validator("images")
    @classmethod
    def _first_images(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(ref for ref in value if len(ref) <= MAX_IMAGE_REF_CHARS)[:MAX_IMAGES]

    @field_validator("attributes")
    @classmethod
    def _bound_attributes(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        kept = (item for item in value.items() if len(item[0]) <= MAX_ATTRIBUTE_KEY_CHARS)
        return {key: clip(v, MAX_ATTRIBUTE_VALUE_CHARS) if isinstance(v, str) else v
                for _, (key, v) in zip(range(MAX_ATTRIBUTES), kept, strict=False)}


class Rejected(BaseModel):
    """A catalog entry or product that did not make it into the index, and why."""

    product_id: str | None
    reason: str
    detail: str
