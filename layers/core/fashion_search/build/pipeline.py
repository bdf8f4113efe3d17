"""The index pipeline: catalog -> images -> thumbnails + embeddings -> an index -> a published version.

A build is three steps, which may run in one process or apart (build/staging.py holds what they pass on):

- plan_build reads the catalog once and stages its products split into chunks, with the live
  version's records each chunk may reuse;
- run_chunk fetches, decodes and encodes one chunk's products and stages its vectors and rows; it is
  idempotent, so a failed or killed chunk is simply run again;
- merge_build reads every chunk's output in chunk order, builds the index and publishes the version,
  and refuses to when any chunk has none.

build_index runs the three in this process, its chunks one after another (the CLI's and the builder
Lambda's single build); `fashion-search build --workers N` (build/workers.py) and the state machine
(infra/) run the chunks in parallel, elsewhere. Whichever runs them, the version is the same.

Within a chunk, fetching is async and bounded; decoding runs in worker threads; encoding of one batch
overlaps the fetching of the next. A product whose image cannot be used is skipped with a reason,
never fatal. Rebuilds reuse the live version's embedding of every image that did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FashionSearchError
from ..index import KINDS, HnswParams, IndexParams, S3VectorsParams, VectorIndex, drop_index
from ..index.columns import Columns
from ..index.keywords import KeywordIndex
from ..model.bundle import BundleSpec
from ..model.embedder import Embedder
from ..model.images import THUMBNAIL_CONTENT_TYPE, ImageError, decode_image, make_thumbnail
from ..records import ProductRecord
from ..store import KeyNotFound, ObjectStore, versions
from . import staging
from .catalog import Catalog, CatalogOptions, CatalogProduct, Rejected, load_catalog
from .fetch import Fetcher, FetchError, FetchOptions, is_url
from .progress import Progress

logger = logging.getLogger(__name__)

BATCH = 256  # products fetched at once within a chunk; encoding one batch overlaps fetching the next


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
    chunks: int = 1  # the plan splits the catalog into this many chunks (fewer for a smaller catalog)...
    chunk_size: int | None = None  # ...or, when set, into chunks of about this many products (one batch more at most)

    def __post_init__(self) -> None:
        # Search functions query a version's S3 Vectors index until they load the next version (seconds after
        # it is published): keeping one version would delete the index they still query.
        if isinstance(self.index, S3VectorsParams) and self.keep_versions == 1:
            raise ValueError("with S3 Vectors, keep at least 2 versions: the search functions query the previous "
                             "version's index until they load the new one")


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
    chunks: int = 1
    chunk_retries: int = 0  # chunk runs that failed (or were killed) and were run again


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


def _pin_previous(store: ObjectStore, model_hash: str,
                  progress: Progress) -> tuple[staging.PreviousVersion | None, list[_Record]]:
    """The live version to reuse embeddings from, with its records, its files verified once (chunks then
    read just the rows they need); none when it used another model or is unusable."""
    pointer = versions.read_pointer(store)
    if pointer is None:
        return None, []
    try:
        manifest = versions.read_manifest(store, pointer.version, pointer.manifest_sha256)
        if manifest.model.get("hash") != model_hash:
            progress.stage(f"live version {pointer.version} used another model: re-encoding everything")
            return None, []
        lines = versions.read_file(store, manifest, "records.jsonl").decode().splitlines()
        info = manifest.files.get("embeddings.npy")
        if info is None:
            raise versions.VersionError(f"version {manifest.version} has no embeddings.npy")
        key = versions.version_key(manifest.version, "embeddings.npy")
        staging.verify_object(store, key, info)
        header, (rows, dim) = staging.npy_header(store, key)
        records = [_Record(**json.loads(line)) for line in lines if line]
        if rows != len(records):
            raise versions.VersionError(f"version {manifest.version} has {rows} vectors for {len(records)} records")
    except (versions.VersionError, staging.StagingError, KeyNotFound) as exc:
        progress.stage(f"live version unusable for reuse ({exc}): re-encoding everything")
        return None, []
    pinned = staging.PreviousVersion(version=manifest.version, manifest_sha256=pointer.manifest_sha256, rows=rows,
                                     dim=dim, header_bytes=header)
    return pinned, records


def _chunk_previous(store: ObjectStore, plan: staging.BuildPlan, chunk: int, progress: Progress) -> _Previous:
    """The records chunk `chunk` may reuse and their vectors, read by range from the pinned version."""
    reusable = staging.read_previous(store, plan, chunk)
    if plan.previous is None or not reusable:
        return _Previous()
    records = [_Record(**record) for _, record in reusable]
    try:
        matrix = staging.read_rows(store, plan.previous, [row for row, _ in reusable])
    except (KeyNotFound, staging.StagingError) as exc:  # pruned since the plan, say: correct, just slower
        progress.stage(f"version {plan.previous.version} unusable for reuse ({exc}): re-encoding "
                       f"{staging.chunk_name(chunk, len(plan.chunks))}")
        return _Previous()
    return _Previous({r.product_id: r for r in records},
                     {r.image_sha256: matrix[i] for i, r in enumerate(records)})


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
                 progress: Progress, label: str = "images", heartbeat: Callable[[int], None] | None = None) -> None:
        self.store, self.embedder, self.fetcher = store, embedder, fetcher
        self.previous, self.progress, self.label, self.heartbeat = previous, progress, label, heartbeat
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
        self.progress.stage(self.label, len(products))
        for start in range(0, len(products), BATCH):
            batch = await asyncio.gather(*(self.prepare(p) for p in products[start : start + BATCH]))
            ready = [c for c in batch if isinstance(c, _Item)]
            rejected.extend(c for c in batch if isinstance(c, Rejected))
            items.extend(ready)
            if encoding is not None:
                await encoding  # encode batch k while batch k+1 downloads
            encoding = asyncio.ensure_future(asyncio.to_thread(self.encode, ready))
            self.progress.advance(len(batch), f"{self.encoded:,} encoded, {self.reused:,} reused, "
                                              f"{len(rejected):,} skipped")
            if self.heartbeat is not None:
                await asyncio.to_thread(self.heartbeat, start + len(batch))
        if encoding is not None:
            await encoding
        self.progress.finish(f"{self.encoded:,} encoded, {self.reused:,} reused, {len(rejected):,} skipped")
        return items, rejected


# ---------------------------------------------------------------------- the version's files


def _version_files(index: VectorIndex, vectors: np.ndarray, items: list[_Item], records: list[ProductRecord],
                   columns: Columns, rejected: list[Rejected]) -> dict[str, bytes]:
    """Every file of a version but its manifest (name -> bytes), from the index, its vectors, products and
    their filter columns (row i is items[i]'s) and the skipped entries. The one place that says what a
    version holds."""
    embeddings = io.BytesIO()
    np.save(embeddings, vectors)
    files = {
        **index.save(),
        **columns.save(),
        **KeywordIndex.build([(r.title, r.brand, r.category) for r in records]).save(),
        "embeddings.npy": embeddings.getvalue(),
        "products.jsonl": "".join(r.model_dump_json() + "\n" for r in records).encode(),
        "records.jsonl": _jsonl([i.record.as_dict() for i in items]),
        "skipped.jsonl": _jsonl([r.model_dump() for r in rejected]),
    }
    return files


# ---------------------------------------------------------------------- the three steps


def _split(count: int, options: BuildOptions) -> list[tuple[int, int]]:
    """[start, end) of each chunk: contiguous and balanced, in catalog order. When chunks hold a batch or
    more, their bounds fall on whole batches, so that a chunk encodes its products in the very batches
    one process would (onnxruntime's output depends on a batch's make-up in the last bits of a float)."""
    chunks = -(-count // options.chunk_size) if options.chunk_size else options.chunks
    chunks = max(1, min(chunks, count))
    unit = BATCH if count >= chunks * BATCH else 1
    bounds = [round(k * count / chunks / unit) * unit for k in range(chunks)] + [count]
    return list(itertools.pairwise(bounds))


def _assign(records: list[_Record], inputs: list[list[CatalogProduct]]) -> list[list[tuple[int, dict[str, Any]]]]:
    """Each live record goes to the chunk holding its product (rows in order); records of products that
    left the catalog are dealt out in turn, as their images may come back under other ids."""
    where = {p.id: k for k, products in enumerate(inputs) for p in products}
    out: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in inputs]
    orphans = 0
    for row, record in enumerate(records):
        chunk = where.get(record.product_id)
        if chunk is None:
            chunk, orphans = orphans % len(inputs), orphans + 1
        out[chunk].append((row, record.as_dict()))
    return out


def _nothing_indexed(catalog_source: str, rejected: list[Rejected]) -> BuildError:
    return BuildError(f"no product of {catalog_source} could be indexed "
                      f"({len(rejected)} skipped: {dict(Counter(r.reason for r in rejected))})")


async def plan_build(catalog_source: str, store: ObjectStore, model: BundleSpec,
                     options: BuildOptions = BuildOptions(), progress: Progress | None = None) -> staging.BuildPlan:
    """Step 1: read the catalog once and stage its products in chunks for a new version (the model that
    will encode them, and the live version they may reuse, are pinned in the plan)."""
    progress = progress or Progress(enabled=False)
    started = time.time()
    version = versions.new_version_id()
    async with Fetcher(options.fetch) as fetcher:
        progress.stage(f"catalog {catalog_source}")
        catalog: Catalog = await load_catalog(catalog_source, fetcher, options.catalog, options.limit)
        progress.finish(f"{len(catalog.products):,} products ({catalog.kind}), {len(catalog.rejected)} rejected")
    if not catalog.products:
        raise _nothing_indexed(catalog_source, catalog.rejected)
    inputs = [catalog.products[start:end] for start, end in _split(len(catalog.products), options)]
    previous, records = (await asyncio.to_thread(_pin_previous, store, model.hash, progress) if options.incremental
                         else (None, []))
    progress.stage("plan")
    plan = staging.BuildPlan(
        version=version, started_at=started, catalog={"source": catalog_source, "kind": catalog.kind},
        catalog_entries=len(catalog.products) + len(catalog.rejected),
        model={"name": model.name, "hash": model.hash, "dim": model.dim}, previous=previous,
    )
    plan = await asyncio.to_thread(staging.write_plan, store, plan, inputs, _assign(records, inputs), catalog.rejected)
    sizes = sorted({len(products) for products in inputs})
    progress.finish(f"build {version}: {len(inputs):,} chunk{'s' if len(inputs) > 1 else ''} of "
                    f"{'-'.join(f'{size:,}' for size in sizes[:: max(1, len(sizes) - 1)])} products")
    return plan


async def run_chunk(store: ObjectStore, version: str, chunk: int, embedder: Embedder,
                    fetch: FetchOptions | None = None, progress: Progress | None = None) -> staging.ChunkDone:
    """Step 2, once per chunk (anywhere, in any order, in parallel): fetch, decode and encode chunk
    `chunk`'s products and stage the result. Run again after a failure, it starts over under a new
    attempt; run again after it finished, it returns the finished output."""
    progress = progress or Progress(enabled=False)
    plan = await asyncio.to_thread(staging.read_plan, store, version)
    if embedder.model_hash != plan.model.get("hash"):
        raise BuildError(f"build {version} was planned for model {plan.model.get('name')!r} "
                         f"({str(plan.model.get('hash'))[:12]}), this builder has {embedder.name!r} "
                         f"({embedder.model_hash[:12]}): its vectors would not be comparable")
    label = "images" if len(plan.chunks) == 1 else f"{staging.chunk_name(chunk, len(plan.chunks))} images"
    done = await asyncio.to_thread(staging.read_done, store, plan, chunk)
    if done is not None:
        progress.stage(label)
        progress.finish("already done")
        return done
    started = time.monotonic()
    products = await asyncio.to_thread(staging.read_input, store, plan, chunk)
    if plan.catalog.get("kind") != "feed" and not all(is_url(p.image) for p in products):
        # The plan let no such product through (load_catalog): a staged input that names local files
        # would have this builder read its own disk.
        raise staging.StagingError(f"{staging.chunk_name(chunk, len(plan.chunks))}'s input names local files, "
                                   f"which a {plan.catalog.get('kind')} catalog may not")
    previous = await asyncio.to_thread(_chunk_previous, store, plan, chunk, progress)
    async with Fetcher(fetch or FetchOptions()) as fetcher:
        pipeline = _Pipeline(store, embedder, fetcher, previous, progress, label,
                             staging.Heartbeat(store, version, chunk))
        items, rejected = await pipeline.run(products)
    vectors = (np.stack([i.encoded_vector() for i in items]) if items
               else np.zeros((0, embedder.dim), dtype=np.float32))
    rows = [{"item": {"product": i.product.model_dump(mode="json"), "record": i.record.as_dict()}} for i in items]
    rows += [{"rejected": r.model_dump()} for r in rejected]
    counts = {"indexed": len(items), "skipped": len(rejected), "reused": pipeline.reused, "encoded": pipeline.encoded}
    return await asyncio.to_thread(staging.write_output, store, plan, chunk, vectors, rows, counts,
                                   embedder.model_hash, time.monotonic() - started)


async def merge_build(store: ObjectStore, version: str, options: BuildOptions = BuildOptions(),
                      progress: Progress | None = None) -> BuildSummary:
    """Step 3: every chunk's output in chunk order -> the index and the version's files -> the manifest
    and the pointer (then the staging folder goes, and old versions are pruned). A build with a chunk
    that has no complete output is refused (IncompleteBuild) and the live version stays."""
    progress = progress or Progress(enabled=False)
    plan = await asyncio.to_thread(staging.read_plan, store, version)
    missing = await asyncio.to_thread(staging.missing_chunks, store, plan)
    if missing:
        named = ", ".join(str(c + 1) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise staging.IncompleteBuild(f"build {version}: {len(missing)} of {len(plan.chunks)} chunks have no "
                                      f"output (chunk {named}): not publishing")
    progress.stage("merge", len(plan.chunks))
    items: list[_Item] = []
    matrices: list[np.ndarray] = []
    rejected = await asyncio.to_thread(staging.read_rejected, store, plan)
    reused = encoded = 0
    for chunk in range(len(plan.chunks)):
        done, matrix, rows = await asyncio.to_thread(staging.read_output, store, plan, chunk)
        for row in rows:  # the items' vectors are the chunk's matrix, row for row
            if "item" in row:
                product = CatalogProduct.model_validate(row["item"]["product"])
                items.append(_Item(product, _Record(**row["item"]["record"])))
            else:
                rejected.append(Rejected.model_validate(row["rejected"]))
        matrices.append(matrix)
        reused, encoded = reused + done.counts["reused"], encoded + done.counts["encoded"]
        progress.advance(1)
    progress.finish(f"{len(items):,} products from {len(plan.chunks):,} chunk{'s' if len(plan.chunks) > 1 else ''}")
    if not items:
        raise _nothing_indexed(plan.catalog["source"], rejected)
    vectors = np.concatenate(matrices).astype(np.float32, copy=False)
    del matrices  # one copy of the vectors in memory, not two

    records = [_record(i.product, i.record.thumbnail) for i in items]
    columns = Columns.build([_fields(r) for r in records])
    progress.stage(f"index over {len(items):,} vectors")
    index = await asyncio.to_thread(options.index.build, vectors, version, columns)
    progress.finish(str(options.index))

    by_reason = dict(sorted(Counter(r.reason for r in rejected).items()))
    seconds = round(time.time() - plan.started_at, 3)
    try:
        progress.stage("upload")
        files = _version_files(index, vectors, items, records, columns, rejected)
        infos = await asyncio.to_thread(versions.write_files, store, version, files)
        manifest = versions.Manifest(
            version=version,
            created_at=versions.utc_now(),
            build_seconds=seconds,
            catalog=plan.catalog,
            counts={"catalog": plan.catalog_entries, "indexed": len(items), "skipped": len(rejected),
                    "reused": reused, "encoded": encoded},
            skipped_by_reason=by_reason,
            model=plan.model,
            index=options.index.describe(version),
            files=infos,
        )
        await asyncio.to_thread(versions.publish, store, manifest)
    except BaseException:
        _drop_unpublished(store, version, options.index)
        raise
    progress.finish(f"published {version}")
    await asyncio.to_thread(staging.discard, store, version)
    pruned = prune(store, options.keep_versions, options.index) if options.keep_versions else None
    return BuildSummary(
        version=version, products_indexed=len(items), skipped=len(rejected), skipped_by_reason=by_reason,
        reused_embeddings=reused, encoded=encoded, seconds=seconds, catalog=plan.catalog, pruned=pruned,
        chunks=len(plan.chunks),
    )


def _drop_unpublished(store: ObjectStore, version: str, params: IndexParams) -> None:
    """Delete what build `version` made of its index outside the store (an S3 Vectors index), unless the
    version was published: a failed or aborted build leaves nothing behind, a published one keeps its index.
    A failure to delete is logged (the build's own error matters more); prune() tries again later."""
    try:
        if not store.exists(versions.version_key(version, versions.MANIFEST)):
            drop_index(params.describe(version))
    except Exception as exc:  # a cleanup: the build's own error is the one to raise
        logger.error("build %s: its index outside the store is left for prune to delete: %s", version, exc)


def abort_build(store: ObjectStore, version: str, params: IndexParams) -> int:
    """What the state machine runs when a build fails: discard its staging folder and, unless it was
    published, the index it made outside the store. Returns how many staged files were deleted."""
    discarded = staging.discard(store, version)
    _drop_unpublished(store, version, params)
    return discarded


def prune(store: ObjectStore, keep: int, params: IndexParams | None = None,
          grace_seconds: float = versions.DEAD_BUILD_SECONDS) -> dict[str, int]:
    """versions.prune, deleting first what each pruned version keeps outside the store (an S3 Vectors
    index, which its manifest names; a dead build's, which had no manifest yet, as `params` names it)."""

    def drop(version: str) -> None:
        try:
            spec = versions.read_manifest(store, version).index
        except versions.VersionError:
            if params is None:
                return
            spec = params.describe(version)
        kind = spec.get("type")
        if isinstance(kind, str) and kind in KINDS:  # a kind this release does not know keeps what it keeps
            drop_index(spec)

    return versions.prune(store, keep, grace_seconds, before_delete=drop)


# Runs every chunk of a plan somewhere (this process, worker processes, ...); returns how many chunk runs
# failed and were run again.
ChunkRunner = Callable[[staging.BuildPlan], Awaitable[int]]


async def staged_build(catalog_source: str, store: ObjectStore, model: BundleSpec, run_chunks: ChunkRunner,
                       options: BuildOptions = BuildOptions(), progress: Progress | None = None) -> BuildSummary:
    """Plan, run the chunks with `run_chunks`, merge. A build that fails discards its staging folder; one
    that is killed leaves it to prune (a dead build's leftovers). Either way nothing is published."""
    progress = progress or Progress(enabled=False)
    plan = await plan_build(catalog_source, store, model, options, progress)
    try:
        retries = await run_chunks(plan)
        summary = await merge_build(store, plan.version, options, progress)
    except (FashionSearchError, KeyboardInterrupt, asyncio.CancelledError):
        with contextlib.suppress(Exception):
            await asyncio.to_thread(staging.discard, store, plan.version)
        raise
    return dataclasses.replace(summary, chunk_retries=retries)


async def build_index(catalog_source: str, store: ObjectStore, embedder: Embedder,
                      options: BuildOptions = BuildOptions(), progress: Progress | None = None) -> BuildSummary:
    """Build and publish a new version of the index of `catalog_source` into `store`, all in this process:
    the plan, its chunks one after another, the merge."""
    progress = progress or Progress(enabled=False)

    async def in_process(plan: staging.BuildPlan) -> int:
        for chunk in range(len(plan.chunks)):
            await run_chunk(store, plan.version, chunk, embedder, options.fetch, progress)
        return 0

    return await staged_build(catalog_source, store, embedder.spec, in_process, options, progress)
