"""A folder as an object store: the embedded default for local runs and tests."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .base import KeyNotFound

_TEMPORARY = ".*.tmp"  # the names put gives its temporary files: .<name>.<random>.tmp


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.uri = self.root.as_uri()

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key {key!r} escapes the store")
        return path

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyNotFound(key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self.path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, IsADirectoryError):
            raise KeyNotFound(key) from None

    def put(self, key: str, data: bytes, *, content_type: str | None = None,
            cache_control: str | None = None) -> None:
        """Write to a temporary file beside the target, then rename: atomic on POSIX."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return iter(())
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and not p.name.endswith(".tmp"))
        return iter(sorted(k for k in keys if k.startswith(prefix)))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self.path(key)
            path.unlink(missing_ok=True)
            # Drop folders left empty, up to the root.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def last_modified(self, key: str) -> float:
        try:
            return self.path(key).stat().st_mtime
        except FileNotFoundError:
            raise KeyNotFound(key) from None

    def remove_stale_temporaries(self, before: float) -> int:
        """Temporary files of puts whose process died before the rename; folders left empty go too."""
        stale = []
        for path in self.root.rglob(_TEMPORARY) if self.root.is_dir() else ():
            try:
                if path.is_file() and path.stat().st_mtime < before:
                    stale.append(path.relative_to(self.root).as_posix())
            except FileNotFoundError:  # renamed into place meanwhile: not a leftover
                continue
        self.delete(stale)
        return len(stale)
