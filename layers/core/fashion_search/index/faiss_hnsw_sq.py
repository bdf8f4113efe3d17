"""FAISS HNSW over 8-bit scalar-quantised vectors (`IndexHNSWSQ`, QT_8bit, inner product): the compressed
VectorIndex, for catalogs whose float vectors no longer fit one search function.

Each dimension of a stored vector is one byte, on a scale from that dimension's minimum to its maximum over
the vectors the index was built from (FAISS's QT_8bit, trained at build time): 896 bytes a vector at 896
dimensions instead of 3,584, next to the graph's ~230 bytes at M=32 (1,127 bytes a product in memory
against 3,690: BENCHMARKS.md section 12). Queries stay float32; the graph's scores, `vectors()` and the
exact scoring of a selective filter read the dequantised vectors, which are within ~1.3e-3 of unit length
on the starter's vectors and off the float cosines by about as much.

That rounding is the recall it costs: over the 20,873 real vectors, recall@10 0.991 against 0.999 for
float32; on section 12's synthetic million, whose noisy copies of one vector lie closer together than the
rounding, even exact search over the codes reaches only 0.935. A re-rank with the float vectors would win
it back (0.989 from the 256 candidates the service re-scores), but the function would have to hold the
float vectors (or read them per query) to do it, which is what quantising saves: there is none.

Same file name (`index.faiss`), filtered search and zero-copy open as FAISS HNSW (faiss_hnsw.py); the
manifest's "type" (`IndexHNSWSQ`) tells them apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import faiss
import numpy as np

from .base import IndexUnusable
from .faiss_hnsw import FILE, FaissHnswIndex, _read_in_place

if TYPE_CHECKING:
    from .columns import Columns

QUANTIZER = "QT_8bit"


@dataclass(frozen=True)
class HnswSq8Params:
    """Graph degree and beam widths, as HnswParams; the vectors are stored as 8-bit codes."""

    m: int = 32
    ef_construction: int = 200
    ef_search: int = 256

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def build(self, vectors: np.ndarray, version: str = "", columns: Columns | None = None) -> FaissHnswSqIndex:
        """An HNSW graph over `vectors` quantised to 8 bits a dimension (rows L2-normalised; row i gets id i);
        the version's file holds all of it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexHNSWSQ(vectors.shape[1], getattr(faiss.ScalarQuantizer, QUANTIZER), self.m,
                                  faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        if len(vectors):
            index.train(vectors)  # each dimension's range, from every vector: nothing added later falls outside
            index.add(vectors)
        return FaissHnswSqIndex(index)

    def describe(self, version: str = "") -> dict[str, Any]:
        return {"type": FaissHnswSqIndex.kind, "metric": "inner_product", "quantizer": QUANTIZER, **self.as_dict()}

    def __str__(self) -> str:
        return (f"HNSW over 8-bit scalar-quantised vectors, M={self.m}, efConstruction={self.ef_construction}, "
                f"efSearch={self.ef_search}")


class FaissHnswSqIndex(FaissHnswIndex):
    """A FAISS `IndexHNSWSQ` behind the VectorIndex interface: FaissHnswIndex's search, over 8-bit codes."""

    kind: ClassVar[str] = "IndexHNSWSQ"

    @classmethod
    def from_bytes(cls, data: bytes) -> FaissHnswSqIndex:
        """The index serialised in `data`, searched in place; IndexUnusable when it is not an HNSW-SQ index."""
        index, buffer = _read_in_place(data)
        if not isinstance(index, faiss.IndexHNSWSQ):
            raise IndexUnusable(f"{FILE} is not a FAISS HNSW index over scalar-quantised vectors "
                                f"(it is a {type(index).__name__})")
        return cls(index, buffer)
