"""The index pipeline: catalog -> images -> thumbnails + embeddings -> an index -> a published version.

Fetching is async and bounded; decoding runs in worker threads; encoding of one chunk overlaps the
fetching of the next. A product whose image cannot be used is skipped with a reason, never fatal.
Rebuilds reuse the live version's embedding of every image that did not change.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FashionSearchError
from ..index import HnswParams, IndexParams
from ..index.columns import Columns
from ..index.keywords import KeywordIndex
from ..model.embedder import Embedder
from ..model.images import THUMBNAIL_CONTENT_TYPE, ImageError, decode_image, make_thumbnail
from ..records import ProductRecord
from ..store import ObjectStore, versions
from .catalog import Catalog, CatalogOptions, CatalogProduct, Rejected, load_catalog
from .fetch import Fetcher, FetchError, FetchOptions, is_url
from .progress import Progress

CHUNK = 256


class BuildError(FashionSearchError):
    """Nothing could be indexed: publishing an empty version would take the catalog offline."""

    status, code = 500, "build_failed"


@dataclass(frozen=True)
class BuildOptions:
    limit: int | None = None  # read and index only the first N products
    index: IndexParams = field(default_factory=HnswParams)  # which kind of index, built how
    fetch: FetchOptions = field(default_factory=FetchOptions)
    catalog: CatalogOptions = field(default_factory=CatalogOptions)
    keep_versions: int | None = None  # prune after publishing, keeping this many versions
    incremental: bool = True


@dataclass
class BuildSummary:
    version: str
    products_indexed: int
    skipped: int
    skipped_by_reason: dict[str, int]
    reused_embeddings: int
    encoded: int
    seconds: float
    catalog: dict[str, Any] = field(default_factory=dict)
    pruned: dict[str, int] | None = None


@dataclass
class _Record:
    """What a build remembers of a product's image to skip it next time (records.jsonl)."""

    product_id: str
    image: str
    image_sha256: str
    validators: dict[str, Any]
    thumbnail: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__


@dataclass
class _Item:
    product: CatalogProduct
    record: _Record
    vector: np.ndarray | None = None
    pixels: np.ndarray | None = None

    def pixels_to_encode(self) -> np.ndarray:
        assert self.pixels is not None, "an item without a vector keeps its decoded pixels until encoded"
        return self.pixels

    def encoded_vector(self) -> np.ndarray:
        assert self.vector is not None, "every item that reaches the index has been encoded or reused"
        return self.vector


@dataclass
class _Previous:
    """The live version's records, and its vectors by image digest (same model only)."""

    records: dict[str, _Record] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def _load_previous(store: ObjectStore, model_hash: str, progress: Progress) -> _Previous:
    pointer = versions.read_pointer(store)
    if pointer is None:
        return _Previous()
    try:
        manifest = versions.read_manifest(store, pointer.version, pointer.manifest_sha256)
        if manifest.model.get("hash") != model_hash:
            progress.stage(f"live version {pointer.version} used another model: re-encoding everything")
            return _Previous()
        lines = versions.read_file(store, manifest, "records.jsonl").decode().splitlines()
        matrix = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy")))
    except versions.VersionError as exc:
        progress.stage(f"live version unusable for reuse ({exc}): re-encoding everything")
        return _Previous()
    records = [_Record(**json.loads(line)) for line in lines if line]
    return _Previous({r.product_id: r for r in records},
                     {r.image_sha256: matrix[row] for row, r in enumerate(records)})


def _record(product: CatalogProduct, thumbnail: str) -> ProductRecord:
    """What the index stores and the search API returns about a product (local image paths stay private)."""
    return ProductRecord(product_id=product.id, title=product.title, description=product.description,
                         category=product.category, price=product.price, brand=product.brand,
                         rating=product.rating, attributes=product.attributes, thumbnail=thumbnail,
                         source_image=product.image if is_url(product.image) else None)


def _fields(record: ProductRecord) -> dict[str, Any]:
    """The record's filterable fields, flat: the catalog's own, then its attributes (not shadowing them)."""
    own = {"category": record.category, "brand": record.brand, "price": record.price, "rating": record.rating}
    return {**record.attributes, **own}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


class _Pipeline:
    def __init__(self, store: ObjectStore, embedder: Embedder, fetcher: Fetcher, previous: _Previous,
                 progress: Progress) -> None:
        self.store, self.embedder, self.fetcher = store, embedder, fetcher
        self.previous, self.progress = previous, progress
        self.known_thumbnails = {r.thumbnail for r in previous.records.values()}
        self.reused = self.encoded = 0

    async def prepare(self, product: CatalogProduct) -> _Item | Rejected:
        prev = self.previous.records.get(product.id)
        validators = prev.validators if prev is not None and prev.image == product.image else None
        try:
            fetched = await self.fetcher.get_resource(product.image, validators)
        except FetchError as exc:
            return Rejected(product_id=product.id, reason=f"image_{exc.reason}", detail=str(exc))
        if fetched.not_modified:
            assert prev is not None
            return self._reuse(product, prev.image_sha256, prev.validators)
        assert fetched.data is not None
        digest = versions.sha256(fetched.data)
        if digest in self.previous.vectors:  # same bytes as an image already encoded, under any name
            return self._reuse(product, digest, fetched.validators)
        try:
            pixels, thumbnail = await asyncio.to_thread(self._decode, fetched.data)
        except ImageError as exc:
            return Rejected(product_id=product.id, reason=f"image_{exc.reason}", detail=f"{product.image}: {exc}")
        key = versions.thumbnail_key(digest)
        if key not in self.known_thumbnails:
            await asyncio.to_thread(self.store.put, key, thumbnail, content_type=THUMBNAIL_CONTENT_TYPE,
                                    cache_control=versions.IMMUTABLE)
            self.known_thumbnails.add(key)
        return _Item(product, _Record(product.id, product.image, digest, fetched.validators, key), pixels=pixels)

    def _reuse(self, product: CatalogProduct, digest: str, validators: dict[str, Any]) -> _Item:
        self.reused += 1
        record = _Record(product.id, product.image, digest, validators, versions.thumbnail_key(digest))
        return _Item(product, record, vector=self.previous.vectors[digest])

    def _decode(self, data: bytes) -> tuple[np.ndarray, bytes]:
        img = decode_image(data)
        return self.embedder.preprocess(img), make_thumbnail(img)

    def encode(self, items: list[_Item]) -> None:
        todo = [i for i in items if i.vector is None]
        if not todo:
            return
        vectors = self.embedder.encode_pixels([i.pixels_to_encode() for i in todo])
        for item, vector in zip(todo, vectors, strict=True):
            item.vector, item.pixels = vector, None
        self.encoded += len(todo)

    async def run(self, products: list[CatalogProduct]) -> tuple[list[_Item], list[Rejected]]:
        items: list[_Item] = []
        rejected: list[Rejected] = []
        encoding: asyncio.Future[None] | None = None
        self.progress.stage("images", len(products))
        for start in range(0, len(products), CHUNK):
            chunk = await asyncio.gather(*(self.prepare(p) for p in products[start : start + CHUNK]))
            ready = [c for c in chunk if isinstance(c, _Item)]
            rejected.extend(c for c in chunk if isinstance(c, Rejected))
            items.extend(ready)
            if encoding is not None:
                await encoding  # encode chunk k while chunk k+1 downloads
            encoding = asyncio.ensure_future(asyncio.to_thread(self.encode, ready))
            self.progress.advance(len(chunk), f"{self.encoded:,} encoded, {self.reused:,} reused, "
                                              f"{len(rejected):,} skipped")
        if encoding is not None:
            await encoding
        self.progress.finish(f"{self.encoded:,} encoded, {self.reused:,} reused, {len(rejected):,} skipped")
        return items, rejected


async def build_index(catalog_source: str, store: ObjectStore, embedder: Embedder,
                      options: BuildOptions = BuildOptions(), progress: Progress | None = None) -> BuildSummary:
    """Build and publish a new version of the index of `catalog_source` into `store`."""
    progress = progress or Progress(enabled=False)
    started = time.monotonic()
    version = versions.new_version_id()
    async with Fetcher(options.fetch) as fetcher:
        progress.stage(f"catalog {catalog_source}")
        catalog: Catalog = await load_catalog(catalog_source, fetcher, options.catalog, options.limit)
        progress.finish(f"{len(catalog.products):,} products ({catalog.kind}), {len(catalog.rejected)} rejected")
        previous = _load_previous(store, embedder.model_hash, progress) if options.incremental else _Previous()
        pipeline = _Pipeline(store, embedder, fetcher, previous, progress)
        items, rejected = await pipeline.run(catalog.products)
    rejected = catalog.rejected + rejected
    if not items:
        raise BuildError(f"no product of {catalog_source} could be indexed "
                           f"({len(rejected)} skipped: {dict(Counter(r.reason for r in rejected))})")

    progress.stage(f"index over {len(items):,} vectors")
    vectors = np.stack([i.encoded_vector() for i in items]).astype(np.float32)
    index = await asyncio.to_thread(options.index.build, vectors)
    progress.finish(str(options.index))

    progress.stage("upload")
    embeddings = io.BytesIO()
    np.save(embeddings, vectors)
    records = [_record(i.product, i.record.thumbnail) for i in items]
    files = {
        **index.save(),
        **Columns.build([_fields(r) for r in records]).save(),
        **KeywordIndex.build([(r.title, r.brand, r.category) for r in records]).save(),
        "embeddings.npy": embeddings.getvalue(),
        "products.jsonl": "".join(r.model_dump_json() + "\n" for r in records).encode(),
        "records.jsonl": _jsonl([i.record.as_dict() for i in items]),
        "skipped.jsonl": _jsonl([r.model_dump() for r in rejected]),
    }
    infos = await asyncio.to_thread(versions.write_files, store, version, files)
    by_reason = dict(sorted(Counter(r.reason for r in rejected).items()))
    seconds = round(time.monotonic() - started, 3)
    manifest = versions.Manifest(
        version=version,
        created_at=versions.utc_now(),
        build_seconds=seconds,
        catalog={"source": catalog_source, "kind": catalog.kind},
        counts={"catalog": len(catalog.products) + len(catalog.rejected), "indexed": len(items),
                "skipped": len(rejected), "reused": pipeline.reused, "encoded": pipeline.encoded},
        skipped_by_reason=by_reason,
        model={"name": embedder.name, "hash": embedder.model_hash, "dim": embedder.dim},
        index=options.index.describe(),
        files=infos,
    )
    await asyncio.to_thread(versions.publish, store, manifest)
    progress.finish(f"published {version}")
    pruned = versions.prune(store, options.keep_versions) if options.keep_versions else None
    return BuildSummary(
        version=version, products_indexed=len(items), skipped=len(rejected), skipped_by_reason=by_reason,
        reused_embeddings=pipeline.reused, encoded=pipeline.encoded, seconds=seconds,
        catalog={"source": catalog_source, "kind": catalog.kind}, pruned=pruned,
    )
