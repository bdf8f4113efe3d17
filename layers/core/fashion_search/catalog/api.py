"""DummyJSON- and FakeStore-compatible products APIs, recognised from the response shape."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ..fetch import Fetcher, FetchError
from .product import Product

PAGE_SIZE = 100
_SCALAR = (str, int, float, bool)


def _attributes(raw: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """Keep the remaining scalar fields (stock, discount, sku...) as facets; tags joined."""
    attrs = {k: v for k, v in raw.items() if k not in skip and isinstance(v, _SCALAR) and v != ""}
    if isinstance(raw.get("tags"), list):
        attrs["tags"] = ", ".join(str(t) for t in raw["tags"])
    return attrs


def from_dummyjson(raw: dict[str, Any]) -> Product:
    images = [i for i in raw.get("images") or [] if isinstance(i, str)]
    main = images[0] if images else raw.get("thumbnail")
    fields = {"id", "title", "description", "category", "price", "brand", "rating", "images", "thumbnail"}
    return Product(
        id=raw.get("id"), title=raw.get("title") or "", image=main or "", images=tuple(images),
        description=raw.get("description"), category=raw.get("category"), price=raw.get("price"),
        brand=raw.get("brand"), rating=raw.get("rating"), attributes=_attributes(raw, fields),
    )


def from_fakestore(raw: dict[str, Any]) -> Product:
    rating = raw.get("rating")
    attrs = _attributes(raw, {"id", "title", "description", "category", "price", "image", "rating"})
    if isinstance(rating, dict) and isinstance(rating.get("count"), int):
        attrs["rating_count"] = rating["count"]
    image = raw.get("image") or ""
    return Product(
        id=raw.get("id"), title=raw.get("title") or "", image=image, images=(image,) if image else (),
        description=raw.get("description"), category=raw.get("category"), price=raw.get("price"),
        rating=rating.get("rate") if isinstance(rating, dict) else rating, attributes=attrs,
    )


async def fetch_api(url: str, fetcher: Fetcher) -> tuple[str, list[dict[str, Any]]]:
    """Every raw product of the API at `url`, and the API kind ('dummyjson' or 'fakestore').

    The first request is the URL as given (a FakeStore `?limit=` would truncate otherwise); a
    DummyJSON answer then tells the total, and the remaining pages are fetched concurrently.
    """
    first = await fetcher.get_json(url)
    if isinstance(first, list):
        return "fakestore", first
    if not (isinstance(first, dict) and isinstance(first.get("products"), list)):
        raise FetchError("unknown_api", f"{url} answered neither a product list nor {{'products': [...]}}")
    products: list[dict[str, Any]] = list(first["products"])
    total = int(first.get("total") or len(products))
    base = httpx.URL(url)

    async def page(skip: int) -> list[dict[str, Any]]:
        answer = await fetcher.get_json(str(base.copy_merge_params({"limit": PAGE_SIZE, "skip": skip})))
        return list(answer.get("products") or []) if isinstance(answer, dict) else []

    skips = range(len(products), total, PAGE_SIZE)
    for skip, items in zip(skips, await asyncio.gather(*(page(s) for s in skips)), strict=True):
        products.extend(items)
        # A server that caps page sizes below PAGE_SIZE leaves gaps: fill them one page at a time.
        position = skip + len(items)
        while len(items) and position < min(skip + PAGE_SIZE, total):
            items = (await page(position))[: skip + PAGE_SIZE - position]
            products.extend(items)
            position += len(items)
    return "dummyjson", products
