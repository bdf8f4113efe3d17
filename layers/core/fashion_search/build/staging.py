"""A build's staging folder: what its plan, its chunks and its merge hand each other through the store.

A build can run as three steps in different processes (the builder Lambda's actions under a Step
Functions state machine, or `fashion-search build --workers N`): the plan reads the catalog once and
splits it into chunks; each chunk fetches, decodes and encodes its products; the merge builds the
index and publishes the version. Everything they pass on lives under the version's staging prefix::

    staging/<id>/chunks/<k>/input.jsonl     chunk k's products (CatalogProduct rows), in catalog order
    staging/<id>/chunks/<k>/previous.jsonl  the live version's records chunk k may reuse: {"row", "record"}
    staging/<id>/catalog-rejected.jsonl     the catalog entries the plan rejected, in catalog order
    staging/<id>/chunks.json                [{"chunk": 0}, ...]: what the state machine's Distributed Map reads
    staging/<id>/plan.json                  written last by the plan: the build exists once it does
    staging/<id>/chunks/<k>/heartbeat.json  rewritten while chunk k runs (prune sees the build is alive)
    staging/<id>/chunks/<k>/<attempt>.npy   an attempt's vectors, and <attempt>.jsonl its rows
    staging/<id>/chunks/<k>/done.json       written last by chunk k: which attempt, checksums, counts

Every file is checked against a SHA-256 that the file written after it records (the plan's, or a
chunk's done.json), so a step never works from a torn or foreign file. A chunk's attempts write to
files of their own and name the finished one in done.json with one atomic put: a retried chunk whose
earlier attempt still finished, or a retry of a finished chunk, leaves a complete, consistent output.
The merge publishes only when every chunk has one. The version's files, manifest and pointer are
store/versions.py's; the staging folder is deleted once the version is published (or the build fails).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from ..errors import FashionSearchError
from ..store import KeyNotFound, ObjectStore, versions
from .catalog import CatalogProduct, Rejected

PLAN = "plan.json"
ITEMS = "chunks.json"
CATALOG_REJECTED = "catalog-rejected.jsonl"
DONE = "done.json"
# Chunks a plan may make: the Distributed Map's result (one small number per chunk) must stay far below
# Step Functions' 256 KiB payload limit, and each chunk reads the plan, which lists them all.
MAX_CHUNKS = 10_000
HEARTBEAT_SECONDS = 60.0
# Rows of the live version's embeddings.npy read by range: runs closer than this are read as one.
_ROW_GAP = 64
_HASH_BLOCK = 64 << 20
_VERSION_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")


class StagingError(FashionSearchError):
    """A staged build is missing, incomplete or corrupt: nothing of it may be published."""

    status, code = 500, "staging_invalid"


class IncompleteBuild(StagingError):
    """The merge found chunks without a complete output: the build has not finished (or failed)."""

    status, code = 500, "build_incomplete"


class PreviousVersion(BaseModel):
    """The live version a build reuses embeddings from, pinned by the plan (its files were verified then)."""

    version: str
    manifest_sha256: str
    rows: int
    dim: int
    header_bytes: int  # where the rows of its embeddings.npy start (read by range)


class ChunkSpec(BaseModel):
    chunk: int
    products: int
    input: versions.FileInfo
    previous: versions.FileInfo


class BuildPlan(BaseModel):
    format: int = 1
    version: str
    started_at: float  # POSIX time the plan started: the build's clock (manifest build_seconds)
    catalog: dict[str, Any]  # source, kind
    catalog_entries: int  # entries read, valid or not
    model: dict[str, Any]  # name, hash, dim: every chunk must encode with this bundle
    previous: PreviousVersion | None
    rejected: versions.FileInfo | None = None  # catalog-rejected.jsonl (write_plan fills it in)
    chunks: list[ChunkSpec] = []


class ChunkDone(BaseModel):
    """What a finished chunk wrote, so that the merge can check it (and a retry can recognise it)."""

    chunk: int
    attempt: str
    model_hash: str
    files: dict[str, versions.FileInfo]  # "vectors" (.npy) and "rows" (.jsonl) of the attempt
    counts: dict[str, int]  # indexed, skipped, reused, encoded
    seconds: float


def check_version_id(version: object) -> str:
    """A build's id as new_version_id makes it; anything else (it comes from outside) is refused."""
    if not isinstance(version, str) or not _VERSION_ID.fullmatch(version):
        raise StagingError(f"{version!r} is not a build's version id")
    return version


def key(version: str, name: str) -> str:
    return versions.staging_key(check_version_id(version), name)


def chunk_key(version: str, chunk: int, name: str) -> str:
    return key(version, f"chunks/{chunk:05d}/{name}")


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line]


def _put(store: ObjectStore, k: str, data: bytes) -> versions.FileInfo:
    store.put(k, data)
    return versions.FileInfo(sha256=versions.sha256(data), bytes=len(data))


def _get(store: ObjectStore, k: str, info: versions.FileInfo, what: str) -> bytes:
    try:
        data = store.get(k)
    except KeyNotFound:
        raise StagingError(f"{what} is missing ({k})") from None
    if len(data) != info.bytes or versions.sha256(data) != info.sha256:
        raise StagingError(f"{what} is corrupt (checksum mismatch: {k})")
    return data


# ------------------------------------------------------------------ plan


def write_plan(store: ObjectStore, plan: BuildPlan, inputs: list[list[CatalogProduct]],
               previous: list[list[tuple[int, dict[str, Any]]]], rejected: list[Rejected]) -> BuildPlan:
    """Stage the chunks' inputs, then the item list and the plan (last: the build exists once it does).
    `plan.chunks` and `plan.rejected` are filled in from what is written."""
    if len(inputs) > MAX_CHUNKS:
        raise StagingError(f"{len(inputs):,} chunks is more than a build may have ({MAX_CHUNKS:,}): "
                           "make the chunks bigger")
    chunks = []
    for k, (products, reusable) in enumerate(zip(inputs, previous, strict=True)):
        rows = jsonl([p.model_dump(mode="json") for p in products])
        prev = jsonl([{"row": row, "record": record} for row, record in reusable])
        chunks.append(ChunkSpec(chunk=k, products=len(products),
                                input=_put(store, chunk_key(plan.version, k, "input.jsonl"), rows),
                                previous=_put(store, chunk_key(plan.version, k, "previous.jsonl"), prev)))
    plan = plan.model_copy(update={
        "chunks": chunks,
        "rejected": _put(store, key(plan.version, CATALOG_REJECTED), jsonl([r.model_dump() for r in rejected])),
    })
    store.put(key(plan.version, ITEMS), json.dumps([{"chunk": k} for k in range(len(chunks))]).encode(),
              content_type="application/json")
    store.put(key(plan.version, PLAN), plan.model_dump_json().encode(), content_type="application/json")
    return plan


def read_plan(store: ObjectStore, version: str) -> BuildPlan:
    try:
        raw = store.get(key(version, PLAN))
    except KeyNotFound:
        raise StagingError(f"build {version} has no plan (never planned, already published, or discarded)") from None
    try:
        plan = BuildPlan.model_validate_json(raw)
    except ValidationError as exc:
        raise StagingError(f"build {version}: its plan is not valid ({exc.error_count()} errors)") from None
    if plan.version != version:
        raise StagingError(f"build {version}: its plan is build {plan.version}'s")
    return plan


def read_input(store: ObjectStore, plan: BuildPlan, chunk: int) -> list[CatalogProduct]:
    spec = chunk_spec(plan, chunk)
    name = chunk_name(chunk, len(plan.chunks))
    data = _get(store, chunk_key(plan.version, chunk, "input.jsonl"), spec.input, f"{name}'s input")
    try:
        return [CatalogProduct.model_validate(row) for row in _rows(data)]
    except (ValueError, ValidationError) as exc:
        raise StagingError(f"{name}'s input is not a product list ({exc})") from None


def read_previous(store: ObjectStore, plan: BuildPlan, chunk: int) -> list[tuple[int, dict[str, Any]]]:
    """(row in the live version's embeddings, its record) for every record chunk `chunk` may reuse."""
    spec = chunk_spec(plan, chunk)
    data = _get(store, chunk_key(plan.version, chunk, "previous.jsonl"), spec.previous,
                f"{chunk_name(chunk, len(plan.chunks))}'s reusable records")
    return [(int(row["row"]), row["record"]) for row in _rows(data)]


def read_rejected(store: ObjectStore, plan: BuildPlan) -> list[Rejected]:
    if plan.rejected is None:
        raise StagingError(f"build {plan.version}: its plan names no rejected entries file")
    data = _get(store, key(plan.version, CATALOG_REJECTED), plan.rejected, "the catalog's rejected entries")
    return [Rejected.model_validate(row) for row in _rows(data)]


def chunk_spec(plan: BuildPlan, chunk: int) -> ChunkSpec:
    if not 0 <= chunk < len(plan.chunks):
        raise StagingError(f"build {plan.version} has no chunk {chunk} (numbered from 0; it has {len(plan.chunks)})")
    return plan.chunks[chunk]


def chunk_name(chunk: int, total: int) -> str:
    """How messages name a chunk: "chunk 3/4" is the third of four (chunk 2 in events and keys, from 0)."""
    return f"chunk {chunk + 1}/{total}"


# ------------------------------------------------------------------ the live version's vectors, by range


def npy_header(store: ObjectStore, k: str) -> tuple[int, tuple[int, ...]]:
    """(bytes before the first row, shape) of a C-ordered little-endian float32 .npy in the store."""
    head = io.BytesIO(store.get_range(k, 0, 4096))
    try:
        major, _ = np.lib.format.read_magic(head)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(head)
    except ValueError as exc:
        raise StagingError(f"{k} is not a .npy file ({exc})") from None
    if fortran or dtype != np.dtype("<f4") or len(shape) != 2:
        raise StagingError(f"{k} is not a C-ordered float32 matrix")
    return head.tell(), shape


def verify_object(store: ObjectStore, k: str, info: versions.FileInfo) -> None:
    """Check an object against its checksum, reading it in blocks (it may not fit in memory)."""
    digest, size = hashlib.sha256(), 0
    while True:
        block = store.get_range(k, size, _HASH_BLOCK)
        digest.update(block)
        size += len(block)
        if len(block) < _HASH_BLOCK:
            break
    if size != info.bytes or digest.hexdigest() != info.sha256:
        raise versions.VersionError(f"{k} is corrupt (checksum mismatch)")


def read_rows(store: ObjectStore, previous: PreviousVersion, rows: list[int]) -> np.ndarray:
    """Rows of the pinned version's embeddings.npy, in the order given, by ranged reads of runs of rows."""
    width = previous.dim * 4
    out = np.empty((len(rows), previous.dim), dtype=np.float32)
    k = versions.version_key(previous.version, "embeddings.npy")
    order = sorted(range(len(rows)), key=rows.__getitem__)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and rows[order[end]] - rows[order[end - 1]] <= _ROW_GAP:
            end += 1
        first, last = rows[order[start]], rows[order[end - 1]]
        if not 0 <= first <= last < previous.rows:
            raise StagingError(f"rows {first}-{last} are outside version {previous.version}'s embeddings")
        data = store.get_range(k, previous.header_bytes + first * width, (last - first + 1) * width)
        if len(data) != (last - first + 1) * width:
            raise StagingError(f"version {previous.version}'s embeddings.npy is shorter than its manifest says")
        block = np.frombuffer(data, dtype="<f4").reshape(-1, previous.dim)
        for i in order[start:end]:
            out[i] = block[rows[i] - first]
        start = end
    return out


# ------------------------------------------------------------------ chunks


class Heartbeat:
    """Rewrites chunk k's heartbeat.json at most once a minute, so prune never takes a long chunk's build
    for a dead one."""

    def __init__(self, store: ObjectStore, version: str, chunk: int) -> None:
        self.store, self.key = store, chunk_key(version, chunk, "heartbeat.json")
        self.last = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= HEARTBEAT_SECONDS:
            self.last = now
            self.store.put(self.key, json.dumps({"products_done": done, "at": time.time()}).encode())


def write_output(store: ObjectStore, plan: BuildPlan, chunk: int, vectors: np.ndarray, rows: list[dict[str, Any]],
                 counts: dict[str, int], model_hash: str, seconds: float) -> ChunkDone:
    """Write one attempt's output under names of its own, then done.json naming it (one atomic put)."""
    attempt = secrets.token_hex(6)
    matrix = io.BytesIO()
    np.save(matrix, np.ascontiguousarray(vectors, dtype=np.float32))
    files = {"vectors": _put(store, chunk_key(plan.version, chunk, f"{attempt}.npy"), matrix.getvalue()),
             "rows": _put(store, chunk_key(plan.version, chunk, f"{attempt}.jsonl"), jsonl(rows))}
    done = ChunkDone(chunk=chunk, attempt=attempt, model_hash=model_hash, files=files, counts=counts,
                     seconds=round(seconds, 3))
    store.put(chunk_key(plan.version, chunk, DONE), done.model_dump_json().encode(), content_type="application/json")
    return done


def read_done(store: ObjectStore, plan: BuildPlan, chunk: int) -> ChunkDone | None:
    """Chunk `chunk`'s completion record, or None when it has not finished."""
    chunk_spec(plan, chunk)
    try:
        raw = store.get(chunk_key(plan.version, chunk, DONE))
    except KeyNotFound:
        return None
    name = chunk_name(chunk, len(plan.chunks))
    try:
        done = ChunkDone.model_validate_json(raw)
    except ValidationError:
        raise StagingError(f"{name}'s done.json is not valid") from None
    if done.chunk != chunk or not re.fullmatch(r"[0-9a-f]{12}", done.attempt):
        raise StagingError(f"{name}'s done.json is another chunk's")
    return done


def read_output(store: ObjectStore, plan: BuildPlan, chunk: int) -> tuple[ChunkDone, np.ndarray, list[dict[str, Any]]]:
    """A finished chunk's vectors and rows, checked; IncompleteBuild when it has not finished."""
    done = read_done(store, plan, chunk)
    name = chunk_name(chunk, len(plan.chunks))
    if done is None:
        raise IncompleteBuild(f"{name} of build {plan.version} has no output")
    if done.model_hash != plan.model["hash"]:
        raise StagingError(f"{name} was encoded by another model than the plan's")
    vectors = np.load(io.BytesIO(_get(store, chunk_key(plan.version, chunk, f"{done.attempt}.npy"),
                                      done.files["vectors"], f"{name}'s vectors")))
    rows = _rows(_get(store, chunk_key(plan.version, chunk, f"{done.attempt}.jsonl"), done.files["rows"],
                      f"{name}'s rows"))
    items = sum(1 for row in rows if "item" in row)
    if vectors.shape != (items, plan.model["dim"]) or items != done.counts.get("indexed"):
        raise StagingError(f"{name}'s output is inconsistent ({vectors.shape[0]} vectors, {items} items)")
    return done, vectors, rows


def missing_chunks(store: ObjectStore, plan: BuildPlan) -> list[int]:
    """The chunks without a completion record."""
    done = {k.rsplit("/", 2)[-2] for k in store.list(key(plan.version, "chunks/")) if k.endswith("/" + DONE)}
    return [c.chunk for c in plan.chunks if f"{c.chunk:05d}" not in done]


def discard(store: ObjectStore, version: str) -> int:
    """Delete a build's staging folder; returns how many files it held."""
    keys = list(store.list(key(version, "")))
    store.delete(keys)
    return len(keys)
