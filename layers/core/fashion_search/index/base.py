"""The vector-index interface: what a build makes and a search service queries, whatever the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import numpy as np

from ..errors import FashionSearchError

# Reads one of a version's files by name (checked against the manifest by whoever passes it).
ReadFile = Callable[[str], bytes]


class IndexUnusable(FashionSearchError):
    """A version's index data is not an index of the kind its manifest names, or cannot be searched.

    The message names the file and is fit for the public (/health); the engine's own error, which may
    name its sources, is the exception's __cause__, for the log.
    """

    status, code = 500, "index_unusable"


class VectorIndex(Protocol):
    """Unit vectors under row ids 0..ntotal-1, searched by inner product (= cosine similarity)."""

    kind: ClassVar[str]  # what a manifest records as the index's "type": open_index() chooses by it

    @property
    def dim(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def search(self, vectors: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k nearest rows per query vector, best first; missing slots have row -1.
        `allow`: a boolean mask over rows, those a result may be (a filter); None for all."""
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


class IndexParams(Protocol):
    """How to build one kind of index: the build options name one of these."""

    def build(self, vectors: np.ndarray) -> VectorIndex:
        """An index over `vectors` (rows L2-normalised; row i gets id i)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the version's manifest records under "index": its "type" is the built index's `kind`."""
        ...
