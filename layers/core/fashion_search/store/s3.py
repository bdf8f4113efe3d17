"""S3 (or any S3-compatible endpoint) as an object store, through boto3."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from s3transfer.exceptions import RetriesExceededError

from .base import KeyNotFound, StoreError

# Parallel ranged GETs for big objects (an index of 1M vectors is hundreds of MB): cold starts
# are bound by S3 throughput, which scales with concurrent connections.
_TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=16)
# What boto3 raises when S3 cannot be reached or refuses: credentials, endpoint, permissions, retries.
_FAILURES = (BotoCoreError, ClientError, Boto3Error, RetriesExceededError)
_MISSING = ("404", "NoSuchKey", "NotFound")


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # boto3 reads AWS_ENDPOINT_URL itself, which is how moto and other endpoints plug in.
        with self._failures("creating its client"):
            self._s3 = client or boto3.client(
                "s3", config=Config(retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=32,
                                    # a stalled connection fails in seconds, not botocore's 60 s per try
                                    connect_timeout=5, read_timeout=15)
            )

    @classmethod
    def from_uri(cls, uri: str) -> S3Store:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"store URI {uri!r} has no bucket")
        return cls(bucket, prefix)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """boto3's failures as a StoreError of one line naming the store (KeyNotFound passes through)."""
        try:
            yield
        except NoCredentialsError:
            raise StoreError(f"{self.uri}: {action}: no AWS credentials found (set AWS_PROFILE, or "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from None
        except _FAILURES as exc:
            raise StoreError(f"{self.uri}: {action}: {' '.join(str(exc).split())}") from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

    def get(self, key: str) -> bytes:
        buffer = io.BytesIO()
        with self._failures(f"reading {key}"):
            try:
                self._s3.download_fileobj(self.bucket, self._key(key), buffer, Config=_TRANSFER)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    raise KeyNotFound(key) from None
                raise
        return buffer.getvalue()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """One ranged GET (S3 answers 416 for a range that starts past the end: no bytes there)."""
        if length <= 0:
            return b""
        with self._failures(f"reading {key}"):
            try:
                answer = self._s3.get_object(Bucket=self.bucket, Key=self._key(key),
                                             Range=f"bytes={start}-{start + length - 1}")
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in _MISSING:
                    raise KeyNotFound(key) from None
                if code == "InvalidRange":
                    return b""
                raise
            data: bytes = answer["Body"].read()
            return data

    def put(self, key: str, data: bytes, *, content_type: str | None = None,
            cache_control: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        if cache_control:
            extra["CacheControl"] = cache_control
        with self._failures(f"writing {key}"):
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def exists(self, key: str) -> bool:
        with self._failures(f"checking {key}"):
            return self._head(key) is not None

    def list(self, prefix: str = "") -> Iterator[str]:
        strip = len(self._key(""))
        with self._failures(f"listing {prefix or '/'}"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:]

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):  # the API's limit per request
            chunk = keys[start : start + 1000]
            with self._failures(f"deleting {len(chunk)} objects"):
                self._s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True},
                )

    def last_modified(self, key: str) -> float:
        with self._failures(f"checking {key}"):
            head = self._head(key)
        if head is None:
            raise KeyNotFound(key)
        return head["LastModified"].timestamp()

    def remove_stale_temporaries(self, before: float) -> int:
        """None to remove: a PutObject is atomic, and the bucket's lifecycle rule aborts incomplete
        multipart uploads."""
        return 0
