"""The object-store interface: keys are '/'-separated paths relative to the store's root."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol


class KeyNotFound(KeyError):
    """The key does not exist in the store."""


class ObjectStore(Protocol):
    """Whole-object reads and writes. A `put` is atomic: readers see the old or the new object."""

    uri: str

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes, *, content_type: str | None = None,
            cache_control: str | None = None) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix`, in lexicographic order."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; missing keys are ignored."""
        ...
