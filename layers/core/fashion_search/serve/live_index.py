"""One loaded, checked index version: the vector index and the products' metadata, in memory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from pydantic import ValidationError

from ..errors import FashionSearchError
from ..index import IndexUnusable, VectorIndex, open_index
from ..index.columns import FILE as COLUMNS_FILE
from ..index.columns import Columns
from ..index.keywords import FILE as KEYWORDS_FILE
from ..index.keywords import KeywordIndex
from ..records import ProductRecord
from ..store import ObjectStore, versions
from .attributes import AttributeMatcher
from .fusion import GalleryStats

if TYPE_CHECKING:
    from ..model.embedder import Embedder

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Vectors the gallery statistics are estimated from: a score's standard deviation from 4,096 samples
# is within ~1 % of the whole gallery's (the soft AND only needs its scale); the covariance costs
# ~0.06 s of cold start at 896 dimensions.
STATS_SAMPLE = 4096
# Stored vectors searched for before a version is swapped in (live_index._probe).
PROBES = 8
# How far from unit length a stored vector may be: float32 vectors are within ~1e-6, an 8-bit index's
# dequantised ones within ~1.3e-3 on the starter's vectors (faiss_hnsw_sq.py); a vector nobody normalised
# is off by far more.
UNIT_TOLERANCE = 1e-2


class ModelMismatch(FashionSearchError):
    """The index was built with another model bundle: its vectors are not comparable with ours."""

    status, code = 500, "model_mismatch"


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

    def __getitem__(self, row: int) -> ProductRecord:
        """The row's record; pydantic.ValidationError when it is not one (LiveIndex.load checks every row)."""
        return ProductRecord.model_validate_json(self._data[self._starts[row] : self._stops[row]])


def id_hash(product_id: str) -> int:
    """A product id's 64-bit hash: Python's own, keyed per process (PYTHONHASHSEED), so no catalog can pick
    ids that collide on purpose; RowsById resolves the ones that collide by chance."""
    return hash(product_id)


class RowsById:
    """Product id -> row without a Python object per product: the ids' hashes, sorted, next to their rows.

    12 bytes a product (an int64 hash and an int32 row; measured in BENCHMARKS.md, "Scale"), where a dict of
    str -> int costs ~150 (the dict's slot, the id's str object, the row's int object). A lookup binary-searches
    the hash and returns the row, among those sharing it, whose own record holds the id (one row parsed, a few
    microseconds): ids that hash alike cost an extra parse, never a wrong row, and an unknown id finds nothing.
    """

    def __init__(self, products: ProductTable, hashes: np.ndarray) -> None:
        """`hashes[row]` = id_hash of row's product_id, for rows 0..len(hashes)-1 of `products`."""
        order = np.argsort(hashes, kind="stable")  # rows that share a hash stay in row order
        self._hashes = np.ascontiguousarray(hashes[order], dtype=np.int64)
        self._rows = order.astype(np.int32 if len(order) < 2**31 else np.int64)
        self._products = products

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        return self._hashes.nbytes + self._rows.nbytes

    def _candidates(self, product_id: str) -> np.ndarray:
        key = np.int64(id_hash(product_id))
        lo, hi = np.searchsorted(self._hashes, key, side="left"), np.searchsorted(self._hashes, key, side="right")
        return self._rows[lo:hi]

    def get(self, product_id: str) -> int | None:
        """The row of `product_id`, None when no product has it."""
        for row in self._candidates(product_id):
            if self._products[int(row)].product_id == product_id:
                return int(row)
        return None

    def __getitem__(self, product_id: str) -> int:
        row = self.get(product_id)
        if row is None:
            raise KeyError(product_id)
        return row

    def __contains__(self, product_id: object) -> bool:
        return isinstance(product_id, str) and self.get(product_id) is not None

    def first_repeat(self) -> tuple[int, int, str] | None:
        """(row, earlier row, product_id) of the first row, in row order, whose id an earlier row holds."""
        same = self._hashes[1:] == self._hashes[:-1]  # rare, but for a repeated id
        if not same.any():
            return None
        # Runs of one hash, [start, stop) over the sorted hashes.
        starts = np.flatnonzero(same & ~np.concatenate(([False], same[:-1])))
        stops = np.flatnonzero(same & ~np.concatenate((same[1:], [False]))) + 2
        found: tuple[int, int, str] | None = None
        for start, stop in zip(starts, stops, strict=True):
            first_row: dict[str, int] = {}
            for row in map(int, self._rows[start:stop]):  # in row order
                product_id = self._products[row].product_id
                earlier = first_row.setdefault(product_id, row)
                if earlier != row:
                    if found is None or row < found[0]:
                        found = (row, earlier, product_id)
                    break
        return found


@dataclass(frozen=True)
class LiveIndex:
    pointer: versions.Pointer
    manifest: versions.Manifest
    index: VectorIndex
    products: ProductTable  # row -> product record, as products.jsonl holds it
    rows: RowsById  # product id -> row (`rows[id]`, `rows.get(id)`)
    stats: GalleryStats  # every query's score distribution over this index (fusion.py)
    columns: Columns | None  # filter columns (None: a version built before filters existed)
    keywords: KeywordIndex | None  # BM25 over titles (None: a version built before, or an unreadable keywords file)
    attributes: AttributeMatcher | None = None  # the keyword fields' values a query's words name

    @property
    def version(self) -> str:
        return self.manifest.version

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored unit vectors of `rows` [len(rows), dim]."""
        return self.index.vectors(rows)

    @classmethod
    def load(cls, store: ObjectStore, pointer: versions.Pointer, model: Embedder) -> LiveIndex:
        """Fetch, verify and deserialise the version `pointer` names, for queries encoded by `model`.

        Everything a query relies on is checked here, before the version can be swapped in: checksums,
        model, dimension, counts, every product row, and a few searches. A VersionError (or ModelMismatch)
        says what is wrong, in words fit for /health (no store location, no file contents).
        """
        manifest = versions.read_manifest(store, pointer.version, pointer.manifest_sha256)
        version = manifest.version
        built_with = manifest.model
        if built_with.get("hash") != model.model_hash:
            raise ModelMismatch(
                f"index version {version} was built with model {built_with.get('name')!r} "
                f"({str(built_with.get('hash'))[:12]}), but this service runs {model.name!r} "
                f"({model.model_hash[:12]}): rebuild the index with this model, or deploy the model the index was "
                "built with"
            )
        products = ProductTable(versions.read_file(store, manifest, "products.jsonl"))
        index = _open(manifest, lambda name: versions.read_file(store, manifest, name))
        if index.dim != model.dim:
            raise versions.VersionError(f"index version {version} holds {index.dim}-d vectors, but model "
                                        f"{model.name!r} makes {model.dim}-d vectors: rebuild the index")
        if index.ntotal != len(products) or index.ntotal != manifest.counts.get("indexed"):
            raise versions.VersionError(f"version {version}: index and metadata disagree on the count")
        rows = _rows_by_id(version, products)
        sample = _probe(version, index)
        columns = _optional(manifest, store, COLUMNS_FILE, Columns.from_bytes)
        if columns is not None and columns.rows != index.ntotal:
            raise versions.VersionError(f"version {version}: {COLUMNS_FILE} and the index disagree on the count")
        return cls(pointer, manifest, index, products, rows,
                   GalleryStats.of(sample if len(sample) else np.zeros((1, index.dim), dtype=np.float32)),
                   columns, _optional(manifest, store, KEYWORDS_FILE, KeywordIndex.from_bytes, required=False),
                   AttributeMatcher(columns) if columns is not None else None)


def _optional(manifest: versions.Manifest, store: ObjectStore, name: str, parse: Callable[[bytes], T],
              required: bool = True) -> T | None:
    """A version file that older versions lack (None then). A broken one refuses the version when `required`,
    else it is logged and left out (a keyword index this SQLite cannot open costs the keyword signal only)."""
    if name not in manifest.files:
        return None
    try:
        return parse(versions.read_file(store, manifest, name))
    except ValueError as exc:
        if required:
            raise versions.VersionError(f"version {manifest.version}: {exc}") from None
        logger.error("version %s: %s: searching without it", manifest.version, exc)
        return None


def _unusable(version: str, exc: IndexUnusable) -> versions.VersionError:
    """The VersionError for /health; the engine's own error (it may name its sources) goes to the log only."""
    logger.error("version %s: %s: %s", version, exc, exc.__cause__ or "")
    return versions.VersionError(f"version {version}: {exc}")


def _open(manifest: versions.Manifest, read: Callable[[str], bytes]) -> VectorIndex:
    try:
        return open_index(manifest.index, read)
    except IndexUnusable as exc:
        raise _unusable(manifest.version, exc) from None


def _rows_by_id(version: str, products: ProductTable) -> RowsById:
    """Product id -> row, checking every row on the way (the one pass that parses them all): a product
    record with a product_id of its own, or queries would fail on it later. The first problem in row order
    refuses the version: a row that is not a record, or one repeating an earlier row's id."""
    hashes = np.empty(len(products), dtype=np.int64)
    broken: str | None = None
    checked = len(products)
    for row in range(len(products)):
        try:
            hashes[row] = id_hash(products[row].product_id)
        except ValidationError as exc:  # its summary names the fields and error kinds, never the row's content
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}"
                                 for e in exc.errors(include_input=False, include_url=False)[:3])
            broken = f"version {version}: products.jsonl row {row + 1} is not a product record ({problems})"
            checked = row
            break
    rows = RowsById(products, hashes[:checked])
    if (repeat := rows.first_repeat()) is not None:  # before the broken row, so it comes first
        row, earlier, product_id = repeat
        raise versions.VersionError(f"version {version}: products.jsonl row {row + 1} repeats product_id "
                                    f"{product_id!r} of row {earlier + 1}")
    if broken is not None:
        raise versions.VersionError(broken)
    return rows


def _probe(version: str, index: VectorIndex) -> np.ndarray:
    """Up to STATS_SAMPLE stored vectors, checked: unit length (cosine = inner product, what scores and
    calibration assume), and a search for some of them finds them (or an equal) with finite scores."""
    picked = np.sort(np.random.default_rng(0).permutation(index.ntotal)[:STATS_SAMPLE])
    if not len(picked):
        return np.zeros((0, index.dim), dtype=np.float32)
    try:
        sample = index.vectors(picked)
        scores, ids = index.search(sample[:PROBES], 1)
    except IndexUnusable as exc:
        raise _unusable(version, exc) from None
    if not np.all(np.abs(np.linalg.norm(sample, axis=1) - 1.0) < UNIT_TOLERANCE):  # NaN fails too
        raise versions.VersionError(f"version {version}: index.faiss holds vectors that are not unit length")
    # One probe finding itself is enough: HNSW may leave the odd vector unreachable.
    if not (np.all(np.isfinite(scores)) and np.all(ids >= 0) and np.any(scores >= 1.0 - UNIT_TOLERANCE)):
        raise versions.VersionError(f"version {version}: a search of index.faiss does not find its own vectors")
    return sample
