"""One loaded, checked index version: the FAISS graph and the products' metadata, in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from . import vector_index, versions
from .errors import FashionSearchError
from .fusion import GalleryStats
from .store import ObjectStore

# Vectors the gallery statistics are estimated from: a score's standard deviation from 4,096 samples
# is within ~1 % of the whole gallery's (the soft AND only needs its scale); the covariance costs
# ~0.06 s of cold start at 896 dimensions.
STATS_SAMPLE = 4096


class ModelMismatch(FashionSearchError):
    """The index was built with another model bundle: its vectors are not comparable with ours."""


class ProductTable:
    """products.jsonl kept as its bytes and line offsets; a row is parsed only when asked for.

    A query reads top_k rows, while parsed dicts cost CPython ~2 KB a product: at 1M products that
    is gigabytes of a search function's memory, against the file's own size here.
    """

    def __init__(self, data: bytes) -> None:
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        starts = np.concatenate(([0], newlines + 1))
        stops = np.concatenate((newlines, [len(data)]))
        keep = stops > starts  # blank lines, e.g. after the last newline, hold no product
        self._data, self._starts, self._stops = data, starts[keep], stops[keep]

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, row: int) -> dict[str, Any]:
        return json.loads(self._data[self._starts[row] : self._stops[row]])


@dataclass(frozen=True)
class LiveIndex:
    pointer: versions.Pointer
    manifest: versions.Manifest
    index: faiss.Index
    products: ProductTable  # row -> metadata, as products.jsonl holds it
    rows: dict[str, int]  # product id -> row
    stats: GalleryStats  # every query's score distribution over this index (fusion.py)

    @property
    def version(self) -> str:
        return self.manifest.version

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored unit vectors of `rows` [len(rows), dim]."""
        if not len(rows):
            return np.zeros((0, self.index.d), dtype=np.float32)
        return self.index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))

    @classmethod
    def load(cls, store: ObjectStore, pointer: versions.Pointer, model_name: str, model_hash: str) -> LiveIndex:
        """Fetch, verify (checksums, model, counts) and deserialise the version `pointer` names."""
        manifest = versions.read_manifest(store, pointer.version, pointer.manifest_sha256)
        built_with = manifest.model
        if built_with.get("hash") != model_hash:
            raise ModelMismatch(
                f"index version {manifest.version} was built with model {built_with.get('name')!r} "
                f"({str(built_with.get('hash'))[:12]}), but this service runs {model_name!r} ({model_hash[:12]}): "
                "rebuild the index with this model, or deploy the model the index was built with"
            )
        products = ProductTable(versions.read_file(store, manifest, "products.jsonl"))
        index = vector_index.deserialize(versions.read_file(store, manifest, "index.faiss"))
        if index.ntotal != len(products) or index.ntotal != manifest.counts.get("indexed"):
            raise versions.VersionError(f"version {manifest.version}: index and metadata disagree on the count")
        rows = {products[row]["product_id"]: row for row in range(len(products))}
        sample = np.random.default_rng(0).permutation(index.ntotal)[:STATS_SAMPLE]
        return cls(pointer, manifest, index, products, rows,
                   GalleryStats.of(index.reconstruct_batch(np.sort(sample)) if len(sample) else
                                   np.zeros((1, index.d), dtype=np.float32)))
