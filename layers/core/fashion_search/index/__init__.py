"""Vector indexes behind one small interface (base.VectorIndex): FAISS HNSW over float vectors (the default)
and over 8-bit scalar-quantised ones (faiss_hnsw_sq.py), both in the version's files, and Amazon S3 Vectors
(s3_vectors.py), an index in AWS's service that the version names.

A version's manifest records which kind built its index ("type"); open_index() opens it with that
kind's implementation, drop_index() deletes what it keeps outside the version. Imports nothing of ours but
errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import IndexParams, IndexUnavailable, IndexUnusable, ReadFile, VectorIndex, Where
from .faiss_hnsw import FaissHnswIndex, HnswParams
from .faiss_hnsw_sq import FaissHnswSqIndex, HnswSq8Params
from .s3_vectors import S3VectorsIndex, S3VectorsParams

# The manifest's index "type" -> its implementation.
KINDS: dict[str, type[VectorIndex]] = {kind.kind: kind for kind in (FaissHnswIndex, FaissHnswSqIndex, S3VectorsIndex)}


def _kind(spec: Mapping[str, Any]) -> type[VectorIndex]:
    kind = spec.get("type")
    implementation = KINDS.get(kind) if isinstance(kind, str) else None
    if implementation is None:
        raise IndexUnusable(f"the index is of an unknown type {kind!r} (known: {', '.join(sorted(KINDS))})")
    return implementation


def open_index(spec: Mapping[str, Any], read: ReadFile) -> VectorIndex:
    """The index a manifest's "index" entry (`spec`) describes, its files read by `read(name)`."""
    return _kind(spec).open(spec, read)


def drop_index(spec: Mapping[str, Any]) -> None:
    """Delete what the index a manifest's "index" entry describes keeps outside its version's files."""
    _kind(spec).drop(spec)


__all__ = ["KINDS", "FaissHnswIndex", "FaissHnswSqIndex", "HnswParams", "HnswSq8Params", "IndexParams",
           "IndexUnavailable", "IndexUnusable", "ReadFile", "S3VectorsIndex", "S3VectorsParams", "VectorIndex",
           "Where", "drop_index", "open_index"]
