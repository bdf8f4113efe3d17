"""DummyJSON- and FakeStore-compatible products APIs, recognised from the response shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from ...errors import FashionSearchError
from ..fetch import Fetcher, FetchError
from .product import CatalogProduct

PAGE_SIZE = 100
PAGES_IN_FLIGHT = 4  # pages requested at once: a bound on memory, whatever the catalog claims
_SCALAR = (str, int, float, bool)


class CatalogTooLarge(FashionSearchError):
    """The catalog holds (or claims to hold) more than the build is allowed to read."""

    status, code = 500, "catalog_too_large"


def _attributes(raw: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """Keep the remaining scalar fields (stock, discount, sku...) as facets; tags joined."""
    attrs = {k: v for k, v in raw.items() if k not in skip and isinstance(v, _SCALAR) and v != ""}
    if isinstance(raw.get("tags"), list):
        attrs["tags"] = ", ".join(str(t) for t in raw["tags"])
    return attrs


def from_dummyjson(raw: dict[str, Any]) -> CatalogProduct:
    images = [i for i in raw["images"] if isinstance(i, str)] if isinstance(raw.get("images"), list) else []
    main = images[0] if images else raw.get("thumbnail")
    fields = {"id", "title", "description", "category", "price", "brand", "rating", "images", "thumbnail"}
    return CatalogProduct.model_validate(dict(
        id=raw.get("id"), title=raw.get("title") or "", image=main or "", images=tuple(images),
        description=raw.get("description"), category=raw.get("category"), price=raw.get("price"),
        brand=raw.get("brand"), rating=raw.get("rating"), attributes=_attributes(raw, fields),
    ))


def from_fakestore(raw: dict[str, Any]) -> CatalogProduct:
    rating = raw.get("rating")
    attrs = _attributes(raw, {"id", "title", "description", "category", "price", "image", "rating"})
    if isinstance(rating, dict) and isinstance(rating.get("count"), int):
        attrs["rating_count"] = rating["count"]
    image = raw.get("image") or ""
    return CatalogProduct.model_validate(dict(
        id=raw.get("id"), title=raw.get("title") or "", image=image, images=(image,) if image else (),
        description=raw.get("description"), category=raw.get("category"), price=raw.get("price"),
        rating=rating.get("rate") if isinstance(rating, dict) else rating, attributes=attrs,
    ))


async def fetch_api(url: str, fetcher: Fetcher, max_pages: int) -> tuple[str, AsyncGenerator[list[Any], None]]:
    """The API kind ('dummyjson' or 'fakestore') at `url`, and its raw products, one page at a time.

    The first request is the URL as given (a FakeStore `?limit=` would truncate otherwise). A
    DummyJSON answer's `total` is a claim, used only to know when to stop asking: pages are requested
    a few at a time, and reading stops at the first empty page, so a catalog claiming 100 million
    products costs what it really serves. More than `max_pages` requests raise CatalogTooLarge.
    """
    first = await fetcher.get_json(url)
    if isinstance(first, list):
        return "fakestore", _single(first)
    if not (isinstance(first, dict) and isinstance(first.get("products"), list)):
        raise FetchError("unknown_api", f"{url} answered neither a product list nor {{'products': [...]}}")
    return "dummyjson", _pages(url, fetcher, first, max_pages)


async def _single(products: list[Any]) -> AsyncGenerator[list[Any], None]:
    yield products


async def _pages(url: str, fetcher: Fetcher, first: dict[str, Any], max_pages: int) -> AsyncGenerator[list[Any], None]:
    claimed = first.get("total")
    total = claimed if isinstance(claimed, int) and not isinstance(claimed, bool) else float("inf")
    base = httpx.URL(url)
    requests = 1

    async def pages(skips: list[int]) -> list[list[Any]]:
        nonlocal requests
        if requests + len(skips) > max_pages:
            raise CatalogTooLarge(f"{url} needs more than {max_pages:,} page requests: refused "
                                  "(raise --max-pages, or index part of it with --limit)")
        requests += len(skips)
        answers = await asyncio.gather(
            *(fetcher.get_json(str(base.copy_merge_params({"limit": PAGE_SIZE, "skip": s}))) for s in skips))
        return [a["products"] if isinstance(a, dict) and isinstance(a.get("products"), list) else []
                for a in answers]

    items: list[Any] = first["products"]
    yield items
    position = len(items)
    while items and position < total:
        skips = list(range(position, int(min(total, position + PAGES_IN_FLIGHT * PAGE_SIZE)), PAGE_SIZE))
        for skip, page in zip(skips, await pages(skips), strict=True):
            end = int(min(skip + PAGE_SIZE, total))
            items = page[: end - skip]  # a server that ignores `limit` gets no say in how much is read
            yield items
            position = skip + len(items)
            # A server that caps page sizes below PAGE_SIZE leaves gaps: fill them one page at a time.
            while items and position < end:
                items = (await pages([position]))[0][: end - position]
                yield items
                position += len(items)
            if position < end:
                return  # an empty page before the claimed total: the catalog ends here
