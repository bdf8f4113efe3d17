"""FAISS HNSW over inner product of unit vectors (= cosine similarity): today's VectorIndex.

On disk it is one file, `index.faiss`, FAISS's own serialisation of an `IndexHNSWFlat` (which keeps
the vectors, so `vectors()` reads them back and efSearch travels with the graph). It is opened in place:
the graph and the vectors stay in the bytes the store returned (FAISS's zero-copy reader), so a version
costs its file's size in memory once, not the file plus a deserialised copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import faiss
import numpy as np

from .base import IndexUnusable, ReadFile, Where

if TYPE_CHECKING:
    from .columns import Columns

FILE = "index.faiss"


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

    def build(self, vectors: np.ndarray, version: str = "", columns: Columns | None = None) -> FaissHnswIndex:
        """The graph over `vectors`; the version's file holds all of it, so neither the version's id nor its
        columns matter here."""
        return FaissHnswIndex.build(vectors, self)

    def describe(self, version: str = "") -> dict[str, Any]:
        return {"type": FaissHnswIndex.kind, "metric": "inner_product", **self.as_dict()}

    def __str__(self) -> str:
        return f"HNSW M={self.m}, efConstruction={self.ef_construction}, efSearch={self.ef_search}"


# How a filtered search runs (BENCHMARKS.md, "Filtered search": recall@10 against exact filtered search
# on 100k vectors, for random rows, random categories and the categories farthest from the query):
# - at most EXACT_MAX_ROWS allowed rows: gathered and scored exactly (numpy);
# - more, where scanning the allowed rows costs less than the graph would (SCAN_ROW_COST per row against
#   HNSW_STEP_COST per unit of the widened beam, in microseconds, one core, 896 dimensions): FAISS's flat
#   scan of the stored vectors with the filter as an id selector (0.3 ms for 2,000 of 100k rows, where a
#   numpy gather and product took 8 ms);
# - else the graph: first unfiltered (a probe: does the filter keep rows near the query?), then, when at
#   least PROBE_MIN_PASSING of the probe's results pass, with the filter as an id selector and a beam
#   widened by the share the filter throws away. A filter that keeps nothing near the query (a category
#   far from it) strands the graph search in a neighbourhood it cannot leave: such queries are scanned.
EXACT_MAX_ROWS = 512
SCAN_ROW_COST = 0.3
HNSW_STEP_COST = 2.3
PROBE_MIN_PASSING = 10
MAX_FILTERED_EF = 4096


def filtered_strategy(allowed: int, total: int, k: int, ef: int) -> tuple[str, int]:
    """("exact", "scan" or "hnsw", the efSearch) for a filter keeping `allowed` of `total` rows; "hnsw" still
    falls back to "scan" when its probe finds the filter keeps nothing near the query."""
    widened = int(min(MAX_FILTERED_EF, 2 * ef * max(1.0, total / max(allowed, 1) / 2)))
    if allowed <= max(EXACT_MAX_ROWS, k):
        return "exact", ef
    if allowed * SCAN_ROW_COST <= widened * HNSW_STEP_COST:
        return "scan", ef
    return "hnsw", widened


def _flat_view(index: faiss.Index) -> np.ndarray | None:
    """The stored vectors of an HNSW-over-flat index as a read-only array over FAISS's own memory (no copy),
    None for other kinds. Valid while the index lives: its owner holds both."""
    storage = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else None
    if not isinstance(storage, faiss.IndexFlat) or index.ntotal == 0:
        return None
    view = faiss.rev_swig_ptr(storage.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    view.flags.writeable = False
    return view


def _read_in_place(data: bytes) -> tuple[faiss.Index, np.ndarray]:
    """(the FAISS index serialised in `data`, the buffer it points into). The vectors and graph of flat
    and scalar-quantised HNSW indexes are read without a copy (faiss.ZeroCopyIOReader): the buffer must
    outlive the index. Loading a 1M-vector index.faiss used to peak at ~3x its size (the bytes, FAISS's
    own copy of them, the index); now it is the bytes alone (BENCHMARKS.md, "Scale")."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        reader = faiss.ZeroCopyIOReader(faiss.swig_ptr(buffer), buffer.size)  # type: ignore[attr-defined]  # not in the stubs
        return faiss.read_index(reader), buffer
    except RuntimeError as exc:  # faiss's errors name its C++ sources: they are the cause, for the log
        raise IndexUnusable(f"{FILE} is not a FAISS index") from exc


def _empty(queries: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((queries, 0), dtype=np.float32), np.zeros((queries, 0), dtype=np.int64)


class FaissHnswIndex:
    """A FAISS index (an `IndexHNSWFlat` when built here) behind the VectorIndex interface."""

    kind: ClassVar[str] = "IndexHNSWFlat"

    def __init__(self, index: faiss.Index, data: np.ndarray | None = None) -> None:
        self._index = index
        self._data = data  # the bytes an opened index lives in (zero-copy): kept as long as the index is
        self._matrix = _flat_view(index)  # its stored vectors, read in place

    @classmethod
    def build(cls, vectors: np.ndarray, params: HnswParams = HnswParams()) -> FaissHnswIndex:
        """An HNSW graph over `vectors` (rows must be L2-normalised; row i gets id i)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexHNSWFlat(vectors.shape[1], params.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
        if len(vectors):
            index.add(vectors)
        return cls(index)

    @classmethod
    def open(cls, spec: Mapping[str, Any], read: ReadFile) -> FaissHnswIndex:
        return cls.from_bytes(read(FILE))

    @classmethod
    def from_bytes(cls, data: bytes) -> FaissHnswIndex:
        """The index serialised in `data`, searched in place: its vectors and graph are not copied out."""
        return cls(*_read_in_place(data))

    @classmethod
    def drop(cls, spec: Mapping[str, Any]) -> None:
        """Nothing to do: the index lives in its version's file."""

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self._index).tobytes()

    def save(self) -> dict[str, bytes]:
        return {FILE: self.to_bytes()}

    @property
    def dim(self) -> int:
        return self._index.d

    @property
    def ntotal(self) -> int:
        return self._index.ntotal

    @property
    def ef_search(self) -> int | None:
        """The efSearch stored with the graph (None for an index that is not HNSW)."""
        return self._index.hnsw.efSearch if isinstance(self._index, faiss.IndexHNSW) else None

    def search(self, vectors: np.ndarray, k: int, allow: np.ndarray | None = None, where: Where = (), *,
               ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k nearest rows per query, best first; missing slots have row -1.

        efSearch (the stored one unless given) is raised to k when needed: HNSW cannot return more
        neighbours than its beam holds. `allow` (a boolean mask over rows) restricts the results to
        those rows, by the strategy its selectivity calls for (filtered_strategy); `where`, the filters
        behind it, is not needed.
        """
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        k = min(k, self.ntotal)
        allowed = self.ntotal if allow is None else int(np.count_nonzero(allow))
        if k <= 0 or allowed == 0:
            return _empty(len(queries))
        ef = max(k, ef_search or self.ef_search or k)
        if allow is None:
            return self._search(self._index, queries, k, ef)
        strategy, widened = filtered_strategy(allowed, self.ntotal, k, ef)
        if strategy == "exact":
            return self._exact(queries, k, np.flatnonzero(allow))
        bits = np.packbits(np.asarray(allow, dtype=bool), bitorder="little")  # outlives the searches below
        if strategy == "hnsw" and isinstance(self._index, faiss.IndexHNSW):
            _, near = self._search(self._index, queries, k, ef)  # the probe
            passing = (allow[np.where(near >= 0, near, 0)] & (near >= 0)).sum(axis=1)
            if passing.min() >= min(PROBE_MIN_PASSING, k):
                return self._search(self._index, queries, k, widened, bits)
        storage = faiss.downcast_index(self._index.storage) if isinstance(self._index, faiss.IndexHNSW) else self._index
        return self._search(storage, queries, k, None, bits)

    def _search(self, index: faiss.Index, queries: np.ndarray, k: int, ef: int | None,
                bits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search: HNSW at efSearch `ef`, or a flat scan (`ef` None); `bits` a filter bitmap."""
        params = (faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]  # not in faiss's stubs
                  if ef is not None and isinstance(index, faiss.IndexHNSW) else faiss.SearchParameters())
        if bits is not None:
            params.sel = faiss.IDSelectorBitmap(self.ntotal, faiss.swig_ptr(bits))
        try:
            return index.search(queries, k, params=params)
        except RuntimeError as exc:
            raise IndexUnusable(f"{FILE} cannot be searched") from exc

    def _exact(self, queries: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among `rows`: every allowed vector scored (what a selective filter needs)."""
        k = min(k, len(rows))
        scores = self.vectors(rows) @ queries.T  # [rows, queries]
        top = np.argpartition(-scores, k - 1, axis=0)[:k] if k < len(rows) else np.arange(len(rows))[:, None].repeat(
            len(queries), axis=1)
        out_scores = np.take_along_axis(scores, top, axis=0).T
        order = np.argsort(-out_scores, axis=1, kind="stable")
        return (np.take_along_axis(out_scores, order, axis=1).astype(np.float32),
                rows[np.take_along_axis(top.T, order, axis=1)].astype(np.int64))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._matrix is not None and rows.min() >= 0 and rows.max() < len(self._matrix):
            return self._matrix[rows]  # a gather from the stored vectors: ~10x faster than reconstruct_batch
        try:
            return self._index.reconstruct_batch(rows)
        except RuntimeError as exc:
            raise IndexUnusable(f"{FILE} cannot be searched") from exc
