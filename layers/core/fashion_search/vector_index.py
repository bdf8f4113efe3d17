"""FAISS HNSW over inner product of unit vectors (= cosine similarity): a thin wrapper."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np


@dataclass(frozen=True)
class HnswParams:
    """Graph degree and beam widths. efSearch is a query-time knob, stored as the default.

    efSearch 256 is the lowest that keeps recall@10 >= 0.98 against exact search from 20k up to 1M
    vectors (BENCHMARKS.md, section 2); it costs ~0.2 ms a query at 20k and ~0.35 ms at 1M on one core.
    """

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 256

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def build_hnsw(vectors: np.ndarray, params: HnswParams = HnswParams()) -> faiss.IndexHNSWFlat:
    """An HNSW graph over `vectors` (rows must be L2-normalised; row i gets id i)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexHNSWFlat(vectors.shape[1], params.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    if len(vectors):
        index.add(vectors)
    return index


def serialize(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def search(index: faiss.Index, queries: np.ndarray, k: int,
           ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k nearest rows per query, best first; missing slots have id -1.

    efSearch is raised to k when needed: HNSW cannot return more neighbours than its beam holds.
    """
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = min(k, index.ntotal)
    if k <= 0:
        empty = np.zeros((len(queries), 0))
        return empty.astype(np.float32), empty.astype(np.int64)
    if isinstance(index, faiss.IndexHNSW):
        ef = max(k, ef_search or index.hnsw.efSearch)
        return index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=ef))
    return index.search(queries, k)
