"""The one product model every catalog source is normalised to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

AttributeValue = str | int | float | bool


class Product(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    image: str = Field(min_length=1)  # main image: an absolute path or an http(s) URL
    images: tuple[str, ...] = ()
    description: str | None = None
    category: str | None = None
    price: float | None = None
    brand: str | None = None
    rating: float | None = None
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
        return value


class Rejected(BaseModel):
    """A catalog entry or product that did not make it into the index, and why."""

    product_id: str | None
    reason: str
    detail: str
