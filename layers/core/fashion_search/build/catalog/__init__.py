"""Catalog sources: a DummyJSON/FakeStore-compatible API or a JSONL feed, normalised to CatalogProduct.

A catalog is data from outside and may be hostile; see load_catalog for what it may and may not do.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..fetch import Fetcher, is_url
from .api import CatalogTooLarge, fetch_api, from_dummyjson, from_fakestore
from .feed import read_feed, resolve_images
from .product import CatalogProduct, Rejected


@dataclass(frozen=True)
class CatalogOptions:
    """How much a catalog may make the builder read, and which local images a feed may name."""

    max_products: int = 1_000_000  # catalog entries read, valid or not
    max_pages: int = 20_000  # API requests (1,000,000 products at 50 or more per page)
    image_roots: tuple[Path, ...] = ()  # folders a feed's local images may be in, besides the feed's own


@dataclass
class Catalog:
    source: str
    kind: str  # 'feed', 'dummyjson' or 'fakestore'
    products: list[CatalogProduct]
    rejected: list[Rejected] = field(default_factory=list)


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'product'}: {e['msg']}" for e in error.errors())


def _image_problem(ref: str, roots: tuple[Path, ...] | None) -> str | None:
    """Why a product may not use `ref` as an image, or None. `roots` are the folders local images may be
    in (None: no local image at all). Decided from the reference alone, never from the disk, so that
    what a skip says does not depend on whether a file exists."""
    if is_url(ref):
        return None
    if roots is None:
        return "is not an http(s) URL: a remote catalog may not name local files"
    if "://" in ref:
        return "is neither an http(s) URL nor a file path"
    if not any(Path(ref).is_relative_to(root) for root in roots):
        return "is outside the feed's folder (allow its folder explicitly: --allow-images-under)"
    return None


class _Collector:
    """Turns raw entries into a Catalog: invalid ones, later duplicates of an id and products whose image
    the source may not name are rejected with reasons; too many entries raise CatalogTooLarge."""

    def __init__(self, catalog: Catalog, convert: Callable[[dict[str, Any]], CatalogProduct],
                 roots: tuple[Path, ...] | None, options: CatalogOptions, limit: int | None) -> None:
        self.catalog, self.convert, self.roots, self.options, self.limit = catalog, convert, roots, options, limit
        self.seen: set[str] = set()
        self.entries = 0

    def add(self, where: str, raw: Any) -> bool:
        """Take one entry; False once `limit` products were taken (read no further)."""
        self.entries += 1
        if self.entries > self.options.max_products:
            raise CatalogTooLarge(f"{self.catalog.source} has more than {self.options.max_products:,} products: "
                                  "refused (raise --max-products, or index part of it with --limit)")
        rejected = self._take(where, raw)
        if rejected is not None:
            self.catalog.rejected.append(rejected)
        return self.limit is None or len(self.catalog.products) < self.limit

    def _take(self, where: str, raw: Any) -> Rejected | None:
        if isinstance(raw, str):  # the feed reader's account of a line it could not read
            return Rejected(product_id=None, reason="invalid_product", detail=raw)
        if not isinstance(raw, dict):
            return Rejected(product_id=None, reason="invalid_product", detail=f"{where} is not a JSON object")
        try:
            product = self.convert(raw)
        except ValidationError as exc:
            raw_id = raw.get("id")
            pid = None if raw_id is None else str(raw_id)[:200]
            return Rejected(product_id=pid, reason="invalid_product", detail=f"{where}: {_describe(exc)}")
        if product.id in self.seen:
            return Rejected(product_id=product.id, reason="duplicate_id",
                            detail=f"{where}: id {product.id} appears earlier")
        self.seen.add(product.id)
        if problem := _image_problem(product.image, self.roots):
            return Rejected(product_id=product.id, reason="image_not_allowed",
                            detail=f"{where}: image {product.image!r} {problem}")
        extra = tuple(ref for ref in product.images if _image_problem(ref, self.roots) is None)
        self.catalog.products.append(product.model_copy(update={"images": extra}))
        return None


async def load_catalog(source: str, fetcher: Fetcher, options: CatalogOptions = CatalogOptions(),
                       limit: int | None = None) -> Catalog:
    """Read a catalog from a feed path (or file:// URI) or an http(s) products URL; `limit` stops reading
    after that many products.

    What a catalog may make the builder do:
    - Read local files: only a local feed may name them, and only inside the feed's folder or one of
      `options.image_roots`, after symlinks and '..' are resolved. A remote catalog names images by
      http(s) URL only: a path or file:// URI there would have the builder read a file off its own disk
      and publish it as a thumbnail. Either way the product is skipped as `image_not_allowed`, for a
      reason that says nothing of whether the file exists. (Which hosts image URLs may be on is
      FetchOptions.image_hosts, checked by the fetcher on every request and redirect.)
    - Read much: at most `options.max_products` entries and `options.max_pages` API requests, whatever
      total the catalog claims, else CatalogTooLarge. CatalogProduct bounds every field.
    """
    if is_url(source):
        kind, pages = await fetch_api(source, fetcher, options.max_pages)
        convert = from_dummyjson if kind == "dummyjson" else from_fakestore
        collector = _Collector(Catalog(source, kind, []), convert, None, options, limit)
        async with aclosing(pages):
            async for page in pages:
                for raw in page:
                    if not collector.add(f"product #{collector.entries + 1}", raw):
                        return collector.catalog
        return collector.catalog
    if "://" in source and not source.startswith("file://"):
        raise ValueError(f"unsupported catalog {source}: use a feed path, file://..., or the http(s) URL "
                         "of a products API")
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"catalog feed {source} does not exist")
    folder = path.resolve().parent
    roots = (folder, *(Path(root).expanduser().resolve() for root in options.image_roots))
    collector = _Collector(Catalog(str(path), "feed", []), CatalogProduct.model_validate, roots, options, limit)
    with closing(read_feed(path)) as lines:
        for n, raw in lines:
            if not collector.add(f"line {n}", raw if isinstance(raw, str) else resolve_images(raw, folder)):
                break
    return collector.catalog


__all__ = ["Catalog", "CatalogOptions", "CatalogProduct", "CatalogTooLarge", "Rejected", "load_catalog"]
