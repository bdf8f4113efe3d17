"""Catalog sources: a DummyJSON/FakeStore-compatible API or a JSONL feed, normalised to Product."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..fetch import Fetcher, is_url
from .api import fetch_api, from_dummyjson, from_fakestore
from .feed import read_feed, resolve_images
from .product import Product, Rejected


@dataclass
class Catalog:
    source: str
    kind: str  # 'feed', 'dummyjson' or 'fakestore'
    products: list[Product]
    rejected: list[Rejected] = field(default_factory=list)


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'product'}: {e['msg']}" for e in error.errors())


def _normalise(entries: Iterable[tuple[str, Any]], convert: Callable[[dict[str, Any]], Product],
               source: str, kind: str) -> Catalog:
    """Convert raw entries, rejecting invalid ones and later duplicates of an id (with reasons)."""
    catalog = Catalog(source, kind, [])
    seen: set[str] = set()
    for where, raw in entries:
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        pid = None if raw_id is None else str(raw_id)
        if isinstance(raw, str):
            catalog.rejected.append(Rejected(product_id=None, reason="invalid_product", detail=raw))
            continue
        try:
            product = convert(raw)
        except ValidationError as exc:
            catalog.rejected.append(Rejected(product_id=pid, reason="invalid_product",
                                             detail=f"{where}: {_describe(exc)}"))
            continue
        if product.id in seen:
            catalog.rejected.append(Rejected(product_id=product.id, reason="duplicate_id",
                                             detail=f"{where}: id {product.id} appears earlier"))
            continue
        seen.add(product.id)
        catalog.products.append(product)
    return catalog


async def load_catalog(source: str, fetcher: Fetcher) -> Catalog:
    """Read a catalog from a feed path or an http(s) products URL."""
    if is_url(source):
        kind, raws = await fetch_api(source, fetcher)
        convert = from_dummyjson if kind == "dummyjson" else from_fakestore
        return _normalise(((f"product #{i + 1}", raw) for i, raw in enumerate(raws)), convert, source, kind)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"catalog feed {source} does not exist")
    folder = path.resolve().parent
    entries = ((f"line {n}", raw if isinstance(raw, str) else resolve_images(raw, folder))
               for n, raw in read_feed(path))
    return _normalise(entries, Product.model_validate, str(path), "feed")


__all__ = ["Catalog", "Product", "Rejected", "load_catalog"]
