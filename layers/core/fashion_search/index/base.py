"""The vector-index interface: what a build makes and a search service queries, whatever the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from ..errors import FashionSearchError

if TYPE_CHECKING:
    from .columns import Columns

# Reads one of a version's files by name (checked against the manifest by whoever passes it).
ReadFile = Callable[[str], bytes]
# Filters in our own language (columns.py), all ANDed: what an `allow` mask was computed from, for an index
# that filters inside its engine (S3 Vectors) rather than by the mask.
Where = Sequence[Mapping[str, Any]]


class IndexUnusable(FashionSearchError):
    """A version's index data is not an index of the kind its manifest names, or cannot be searched.

    The message names the file and is fit for the public (/health); the engine's own error, which may
    name its sources, is the exception's __cause__, for the log.
    """

    status, code = 500, "index_unusable"


class IndexUnavailable(IndexUnusable):
    """The service that holds a version's vectors (S3 Vectors) did not answer: a query may succeed later.
    The message is public (a 503); the service's own error is the exception's __cause__, for the log."""

    status, code = 503, "vector_search_unavailable"


class VectorIndex(Protocol):
    """Unit vectors under row ids 0..ntotal-1, searched by inner product (= cosine similarity)."""

    kind: ClassVar[str]  # what a manifest records as the index's "type": open_index() chooses by it

    @property
    def dim(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def search(self, vectors: np.ndarray, k: int, allow: np.ndarray | None = None,
               where: Where = ()) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k nearest rows per query vector (at most as many as the engine returns: S3
        Vectors gives 100), best first; missing slots have row -1. `allow`: a boolean mask over rows, those a
        result may be (a filter); None for all. `where`: the filters `allow` was computed from (an index
        searching in memory needs only the mask); every result passes `allow` either way."""
        ...

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of `rows` [len(rows), dim]."""
        ...

    def save(self) -> dict[str, bytes]:
        """The version files that hold this index (name -> bytes), as open() reads them back."""
        ...

    @classmethod
    def open(cls, spec: Mapping[str, Any], read: ReadFile) -> VectorIndex:
        """The index a manifest's "index" entry (`spec`) describes, its files read by `read(name)`."""
        ...

    @classmethod
    def drop(cls, spec: Mapping[str, Any]) -> None:
        """Delete what the index keeps outside its version's files (nothing, for an index that lives in them),
        before the version goes or when its build fails. Idempotent: what is gone already is no error."""
        ...


class IndexParams(Protocol):
    """How to build one kind of index: the build options name one of these."""

    def build(self, vectors: np.ndarray, version: str = "", columns: Columns | None = None) -> VectorIndex:
        """An index over `vectors` (rows L2-normalised; row i gets id i) for index version `version`, whose
        filter columns are `columns` (an index that filters inside its engine stores them with the vectors)."""
        ...

    def describe(self, version: str = "") -> dict[str, Any]:
        """What the version's manifest records under "index": its "type" is the built index's `kind`, and
        open() and drop() read the rest."""
        ...
