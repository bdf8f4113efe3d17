"""Object storage behind one small interface: a local folder (the embedded default) or S3, and (versions.py)
the immutable index versions laid out in it. Imports nothing of ours but errors."""

from __future__ import annotations

from pathlib import Path

from .base import KeyNotFound, ObjectStore
from .local import LocalStore


def open_store(uri: str | Path) -> ObjectStore:
    """`s3://bucket/prefix` -> S3 (honours AWS_ENDPOINT_URL); a path or `file://` URI -> a folder."""
    text = str(uri)
    if text.startswith("s3://"):
        from .s3 import S3Store  # boto3 is imported only when S3 is used

        return S3Store.from_uri(text)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        raise ValueError(f"unsupported store URI {text!r}: use a folder path, file://... or s3://bucket/prefix")
    return LocalStore(Path(text))


__all__ = ["KeyNotFound", "LocalStore", "ObjectStore", "open_store"]
