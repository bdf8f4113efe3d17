"""Vector indexes behind one small interface (base.VectorIndex): FAISS HNSW over float vectors (the default)
and over 8-bit scalar-quantised ones (faiss_hnsw_sq.py).

A version's manifest records which kind built its index ("type"); open_index() opens it with that
kind's implementation. Imports nothing of ours but errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import IndexParams, IndexUnusable, ReadFile, VectorIndex
from .faiss_hnsw import FaissHnswIndex, HnswParams
from .faiss_hnsw_sq import FaissHnswSqIndex, HnswSq8Params

# The manifest's index "type" -> its implementation.
KINDS: dict[str, type[VectorIndex]] = {FaissHnswIndex.kind: FaissHnswIndex, FaissHnswSqIndex.kind: FaissHnswSqIndex}


def open_index(spec: Mapping[str, Any], read: ReadFile) -> VectorIndex:
    """The index a manifest's "index" entry (`spec`) describes, its files read by `read(name)`."""
    kind = spec.get("type")
    implementation = KINDS.get(kind) if isinstance(kind, str) else None
    if implementation is None:
        raise IndexUnusable(f"the index is of an unknown type {kind!r} (known: {', '.join(sorted(KINDS))})")
    return implementation.open(spec, read)


__all__ = ["KINDS", "FaissHnswIndex", "FaissHnswSqIndex", "HnswParams", "HnswSq8Params", "IndexParams", "IndexUnusable",
           "ReadFile", "VectorIndex", "open_index"]
