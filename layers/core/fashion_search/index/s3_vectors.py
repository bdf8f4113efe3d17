"""Amazon S3 Vectors behind the VectorIndex interface: a version's vectors in a vector index of their own, for
catalogs past what one search function holds in memory (up to 2 billion vectors an index, nothing to run or
pay for while idle).

- **One index a version**, `<prefix>-<version id>` (lowercased) in the deployment's vector bucket, as
  immutable as the version: the manifest's "index" entry names bucket and index, `s3vectors.json` (the
  version's file) adds its dimension, count and metadata fields, and drop() deletes it when the version is
  pruned or its build fails. The search function keeps the product rows in products.jsonl as before.
- **Vectors**: key = the row ("0" .. "n-1"), written in PutVectors batches of 500 (the API's limit), with the
  version's filter columns (columns.py) as filterable metadata: a keyword value casefolded, as our filters
  compare it, a number as the float32 the column holds. A vector may carry 2 KB of filterable metadata and
  50 keys: the most common fields go first, and a field that would overflow any product's budget is left
  out for every product (a partial field would make the service drop products that match).
- **Search**: QueryVectors with `topK` at most 100 (the service's limit: the ranking asks for POOL = 256, so
  a query's vector candidates are its 100 nearest, and as many among the holders of the values its text
  names), cosine distance turned into similarity (1 - distance = the inner product of unit vectors, FAISS's
  score). Our filters (`where`) become S3 Vectors' filter document, applied inside the service's search;
  the `allow` mask is applied to what comes back (of 100 asked for: a query costs the same whatever its
  topK), so every result passes exactly what a FAISS search would let through (the product more-like-this
  leaves out, say). A condition on a field the index does not hold is left to the mask: fewer results,
  never a wrong one.
- **vectors(rows)**: GetVectors in batches of 100 keys (the API's limit), several at once.

AWS errors never reach a client as they are: a failure to answer is IndexUnavailable (503, worded for the
public, the AWS error logged and kept as the cause), anything else IndexUnusable.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from .base import IndexUnavailable, IndexUnusable, ReadFile, Where
from .columns import IN_STOCK, RANGE_KEYS, Column, Columns, folded

logger = logging.getLogger(__name__)

FILE = "s3vectors.json"
KIND = "S3Vectors"
PUT_BATCH = 500  # vectors per PutVectors request (the API's limit)
GET_BATCH = 100  # keys per GetVectors request (the API's limit)
MAX_TOP_K = 100  # results per QueryVectors request (the service's limit)
METADATA_KEYS = 50  # metadata keys a vector may carry
# Filterable metadata a vector may carry is 2 KB; AWS does not say how it counts a value's bytes, so a quarter
# is left for its encoding.
METADATA_BYTES = 1536
NUMBER_BYTES = 8
# Requests in flight at once: GetVectors batches of a query's candidates, PutVectors batches of a build (an
# index takes 2,500 vectors a second: five batches).
WORKERS = 8
_POOL = ThreadPoolExecutor(WORKERS, thread_name_prefix="s3vectors")
# Vector bucket and index names (AWS's rules).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_INDEX = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MISSING = ("NotFoundException",)
_UNAVAILABLE = "vector search is not answering right now: try again shortly"


def make_client() -> Any:
    """boto3's S3 Vectors client, in the environment's region and credentials: adaptive retries (the service
    answers 429 past its request rates) and timeouts of seconds, not botocore's minute."""
    import boto3  # imported when S3 Vectors is used (~0.1 s)
    from botocore.config import Config

    return boto3.client("s3vectors", config=Config(retries={"max_attempts": 5, "mode": "adaptive"},
                                                    connect_timeout=5, read_timeout=10,
                                                    max_pool_connections=2 * WORKERS))


@contextmanager
def _aws(action: str, public: str | None = None) -> Iterator[None]:
    """AWS's failures as our errors: IndexUnavailable with the public message `public` for the query path
    (the AWS error logged), else IndexUnusable naming `action` (for the builder and its log)."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        detail = " ".join(str(exc).split())
        if public is not None:
            logger.error("S3 Vectors: %s: %s", action, detail)
            raise IndexUnavailable(public) from exc
        raise IndexUnusable(f"S3 Vectors: {action}: {detail}") from exc


def _missing(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in _MISSING


def _number(value: float) -> float:
    """A number as a number column holds it (float32), so that the service compares what our mask compares."""
    return float(np.float32(value))


def _value_bytes(column: Column) -> np.ndarray:
    """Bytes of filterable metadata `column` takes in each row (its key and value; 0 where it has none)."""
    key = len(column.name.encode())
    if column.kind == "number":
        return np.where(np.isnan(column.data), 0, key + NUMBER_BYTES)
    lengths = np.array([len(folded(v).encode()) for v in column.values] or [0], dtype=np.int64)
    return np.where(column.data >= 0, key + lengths[column.data.clip(0)], 0)


def metadata_fields(columns: Columns) -> dict[str, str]:
    """The fields the vectors carry as metadata (name -> "keyword" or "number"): the most common first, each
    for every product or none, while every product's metadata stays within METADATA_KEYS and METADATA_BYTES."""
    sizes = {name: _value_bytes(column) for name, column in columns.by_name.items()}
    used = np.zeros(columns.rows, dtype=np.int64)
    chosen: dict[str, str] = {}
    for name in sorted(sizes, key=lambda n: (-int(np.count_nonzero(sizes[n])), n)):
        if len(chosen) == METADATA_KEYS:
            break
        if columns.rows and int((used + sizes[name]).max()) > METADATA_BYTES:
            continue
        used += sizes[name]
        chosen[name] = columns.by_name[name].kind
    return chosen


def _metadata(columns: Columns, vocabularies: Mapping[str, Sequence[str] | None], rows: range) -> list[dict[str, Any]]:
    """The metadata of `rows`: each one's value of every field in `vocabularies` (a keyword field's values folded
    as filters compare them; None for a number field), as filters compare it."""
    out: list[dict[str, Any]] = [{} for _ in rows]
    for name, values in vocabularies.items():
        data = columns.by_name[name].data[rows.start : rows.stop]
        if values is None:
            for at in np.flatnonzero(~np.isnan(data)):
                out[at][name] = float(data[at])
        else:
            for at in np.flatnonzero(data >= 0):
                out[at][name] = values[data[at]]
    return out


@dataclass(frozen=True)
class S3VectorsParams:
    """Where a version's S3 Vectors index goes: vector bucket `bucket`, index `<prefix>-<version>`."""

    bucket: str
    prefix: str = "fashion-search"
    client: Callable[[], Any] | None = field(default=None, repr=False, compare=False)  # None: make_client

    def __post_init__(self) -> None:
        if not _BUCKET.match(self.bucket):
            raise ValueError(f"vector bucket {self.bucket!r}: 3-63 lowercase letters, digits and hyphens, "
                             "beginning and ending with a letter or digit")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,32}", self.prefix):
            raise ValueError(f"vector index prefix {self.prefix!r}: 1-33 lowercase letters, digits, '.' or '-', "
                             "beginning with a letter or digit")

    def index_name(self, version: str) -> str:
        name = f"{self.prefix}-{version}".lower()
        if not version or not _INDEX.match(name):
            raise ValueError(f"version {version!r} makes no S3 Vectors index name ({name!r})")
        return name

    def build(self, vectors: np.ndarray, version: str = "", columns: Columns | None = None) -> S3VectorsIndex:
        """Create the version's index and put `vectors` into it (row i under key "i"), with `columns` as
        metadata. A build that fails deletes the index it created."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        name = self.index_name(version)
        columns = columns if columns is not None else Columns((), len(vectors))
        fields = metadata_fields(columns)
        index = S3VectorsIndex((self.client or make_client)(), self.bucket, name, vectors.shape[1], len(vectors),
                               fields)
        with _aws(f"creating index {name} in vector bucket {self.bucket}"):
            index.client.create_index(vectorBucketName=self.bucket, indexName=name, dataType="float32",
                                      dimension=vectors.shape[1], distanceMetric="cosine")
        vocabularies = {key: None if kind == "number" else [folded(v) for v in columns.by_name[key].values]
                        for key, kind in fields.items()}  # the fields' values as the metadata holds them
        batches = [range(start, min(start + PUT_BATCH, len(vectors))) for start in range(0, len(vectors), PUT_BATCH)]
        try:
            list(_POOL.map(lambda rows: index.put(vectors[rows.start : rows.stop],
                                                  _metadata(columns, vocabularies, rows), rows), batches))
        except BaseException:
            try:
                S3VectorsIndex.drop(self.describe(version), index.client)
            except IndexUnusable as exc:
                logger.error("%s: the index is left behind, delete it by hand", exc)
            raise
        return index

    def describe(self, version: str = "") -> dict[str, Any]:
        return {"type": KIND, "metric": "cosine", "bucket": self.bucket, "index": self.index_name(version)}

    def __str__(self) -> str:
        return f"S3 Vectors index in vector bucket {self.bucket}"


class S3VectorsIndex:
    """One version's S3 Vectors index behind the VectorIndex interface."""

    kind: ClassVar[str] = KIND

    def __init__(self, client: Any, bucket: str, name: str, dim: int, ntotal: int, fields: Mapping[str, str]) -> None:
        self.client, self.bucket, self.name = client, bucket, name
        self._dim, self._ntotal, self.fields = dim, ntotal, dict(fields)

    @classmethod
    def open(cls, spec: Mapping[str, Any], read: ReadFile) -> S3VectorsIndex:
        """The index `spec` names, as its version's s3vectors.json describes it (no AWS request: LiveIndex.load
        probes it before the version is served)."""
        try:
            info = json.loads(read(FILE))
            located = (info["bucket"], info["index"]) == (spec.get("bucket"), spec.get("index"))
            dim, ntotal, fields = int(info["dimension"]), int(info["count"]), dict(info["fields"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexUnusable(f"{FILE} does not describe an S3 Vectors index") from exc
        if not located:
            raise IndexUnusable(f"{FILE} names another S3 Vectors index than the manifest")
        return cls(make_client(), info["bucket"], info["index"], dim, ntotal, fields)

    @classmethod
    def drop(cls, spec: Mapping[str, Any], client: Any = None) -> None:
        """Delete the index `spec` names; one already gone is no error."""
        bucket, name = spec.get("bucket"), spec.get("index")
        try:
            with _aws(f"deleting index {name} of vector bucket {bucket}"):
                (client or make_client()).delete_index(vectorBucketName=bucket, indexName=name)
        except IndexUnusable as exc:
            if not _missing(exc):
                raise

    def save(self) -> dict[str, bytes]:
        """The version's small file: the vectors stay in the service."""
        info = {"bucket": self.bucket, "index": self.name, "dimension": self._dim, "count": self._ntotal,
                "fields": self.fields}
        return {FILE: json.dumps(info, indent=2).encode()}

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ntotal(self) -> int:
        return self._ntotal

    # -- writing ------------------------------------------------------------------------------------------
    def put(self, vectors: np.ndarray, metadata: Sequence[dict[str, Any]], rows: range) -> None:
        """One PutVectors batch: `vectors` and `metadata` (one each a row) under the numbers of `rows`."""
        batch = [{"key": str(row), "data": {"float32": vector.tolist()}, **({"metadata": meta} if meta else {})}
                 for row, vector, meta in zip(rows, vectors, metadata, strict=True)]
        with _aws(f"putting vectors {rows.start}-{rows.stop - 1} into index {self.name}"):
            self.client.put_vectors(vectorBucketName=self.bucket, indexName=self.name, vectors=batch)

    # -- queries ------------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, k: int, allow: np.ndarray | None = None,
               where: Where = ()) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the min(k, 100) nearest rows per query that pass `where` (in the service) and
        `allow` (here), best first; missing slots have row -1 (and score -inf). With a mask, the service is
        asked for 100 (a query costs the same whatever its topK), so that those the mask drops (the product
        more-like-this leaves out) leave k."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        k = min(k, MAX_TOP_K, self.ntotal)
        scores = np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), max(k, 0)), -1, dtype=np.int64)
        if k <= 0 or (allow is not None and not allow.any()):
            return scores[:, :0], rows[:, :0]
        top_k = k if allow is None else min(MAX_TOP_K, self.ntotal)
        document = self.filter_document(where)
        for i, (found_scores, found_rows) in enumerate(_POOL.map(lambda q: self._query(q, top_k, document), queries)):
            if allow is not None:
                keep = allow[found_rows]
                found_scores, found_rows = found_scores[keep][:k], found_rows[keep][:k]
            scores[i, : len(found_rows)], rows[i, : len(found_rows)] = found_scores, found_rows
        return scores, rows

    def _query(self, query: np.ndarray, k: int, document: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        """One QueryVectors request: (similarities, rows), best first."""
        request: dict[str, Any] = {"vectorBucketName": self.bucket, "indexName": self.name, "topK": k,
                                   "queryVector": {"float32": query.tolist()}, "returnDistance": True}
        if document is not None:
            request["filter"] = document
        with _aws(f"querying index {self.name}", _UNAVAILABLE):
            answer = self.client.query_vectors(**request)
        if answer.get("distanceMetric", "cosine") != "cosine":
            raise IndexUnusable(f"S3 Vectors index {self.name} does not measure cosine distance")
        found = answer.get("vectors", [])
        rows = self._rows([hit.get("key") for hit in found])
        similarities = 1.0 - np.array([hit.get("distance", np.nan) for hit in found], dtype=np.float32)
        if not np.all(np.isfinite(similarities)):
            raise IndexUnusable(f"S3 Vectors index {self.name} answered without distances")
        order = np.argsort(-similarities, kind="stable")
        return similarities[order], rows[order]

    def _rows(self, keys: Sequence[Any]) -> np.ndarray:
        """The rows that vector keys name; IndexUnusable for a key that names none (not an index of ours)."""
        try:
            rows = np.array([int(key) for key in keys], dtype=np.int64)
        except (TypeError, ValueError):
            raise IndexUnusable(f"S3 Vectors index {self.name} holds keys that are not row numbers") from None
        if len(rows) and (rows.min() < 0 or rows.max() >= self.ntotal):
            raise IndexUnusable(f"S3 Vectors index {self.name} holds rows beyond its {self.ntotal} vectors")
        return rows

    def filter_document(self, where: Where) -> dict[str, Any] | None:
        """Our filters (columns.py's language, already checked by Columns.mask) as S3 Vectors' filter
        document, every condition ANDed; None for no condition. Conditions on fields the index does not hold
        are left out: the caller's mask keeps them."""
        conditions = [c for filters in where for name, condition in filters.items()
                      for c in self._conditions(name, condition)]
        if not conditions:
            return None
        return conditions[0] if len(conditions) == 1 else {"$and": conditions}

    def _conditions(self, name: str, condition: Any) -> list[dict[str, Any]]:
        if name == IN_STOCK:
            if self.fields.get("stock") != "number" or not isinstance(condition, bool):
                return []
            return [{"stock": {"$gt": 0.0} if condition else {"$lte": 0.0}}]
        kind = self.fields.get(name)
        if isinstance(condition, Mapping):
            return ([{name: {f"${key}": _number(condition[key])}} for key in RANGE_KEYS if key in condition]
                    if kind == "number" else [])
        values = list(condition) if isinstance(condition, list | tuple) else [condition]
        if kind == "number":
            stored: list[Any] = list(dict.fromkeys(_number(v) for v in values))
        elif kind == "keyword":
            stored = list(dict.fromkeys(folded(v) for v in values))
        else:
            return []
        return [{name: {"$eq": stored[0]}}] if len(stored) == 1 else [{name: {"$in": stored}}]

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of `rows`, by GetVectors batches of 100 keys, several at once."""
        rows = np.asarray(rows, dtype=np.int64)
        wanted = np.unique(rows)
        if not len(wanted):
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [wanted[start : start + GET_BATCH] for start in range(0, len(wanted), GET_BATCH)]
        found: dict[int, np.ndarray] = {}
        for answer in _POOL.map(self._get, batches):
            found.update(answer)
        try:
            return np.stack([found[int(row)] for row in rows])
        except KeyError as exc:
            raise IndexUnusable(f"S3 Vectors index {self.name} lacks row {exc.args[0]}") from None

    def _get(self, rows: np.ndarray) -> dict[int, np.ndarray]:
        with _aws(f"reading vectors of index {self.name}", _UNAVAILABLE):
            answer = self.client.get_vectors(vectorBucketName=self.bucket, indexName=self.name,
                                             keys=[str(row) for row in rows], returnData=True)
        found = answer.get("vectors", [])
        data = [np.asarray(hit.get("data", {}).get("float32", ()), dtype=np.float32) for hit in found]
        if any(vector.shape != (self.dim,) for vector in data):
            raise IndexUnusable(f"S3 Vectors index {self.name} holds vectors that are not {self.dim}-d")
        return dict(zip(self._rows([hit.get("key") for hit in found]).tolist(), data, strict=True))
