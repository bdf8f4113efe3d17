"""The object-store interface: keys are '/'-separated paths relative to the store's root."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol


class KeyNotFound(KeyError):
    """The key does not exist in the store."""


class StoreError(Exception):
    """The store could not be reached or refused a request (credentials, network, permissions).

    Not a FashionSearchError on purpose: the search service treats those as a refused index version,
    whereas an outage is worth retrying. The CLI reports it as one line.
    """


class ObjectStore(Protocol):
    """Whole-object reads and writes. A `put` is atomic: readers see the old or the new object."""

    uri: str

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes of the object from byte `start` (fewer at its end, none past it)."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str | None = None,
            cache_control: str | None = None) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix`, in lexicographic order."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; missing keys are ignored."""
        ...

    def last_modified(self, key: str) -> float:
        """When the object was last written (POSIX time); KeyNotFound if it does not exist."""
        ...

    def remove_stale_temporaries(self, before: float) -> int:
        """Delete what puts cut short (the writer was killed) left behind, last written before `before`
        (POSIX time); returns how many. Invisible to `list`, so only this removes them."""
        ...
