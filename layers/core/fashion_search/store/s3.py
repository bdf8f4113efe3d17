"""S3 (or any S3-compatible endpoint) as an object store, through boto3."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import KeyNotFound

# Parallel ranged GETs for big objects (an index of 1M vectors is hundreds of MB): cold starts
# are bound by S3 throughput, which scales with concurrent connections.
_TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=16)


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # boto3 reads AWS_ENDPOINT_URL itself, which is how moto and other endpoints plug in.
        self._s3 = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=32)
        )

    @classmethod
    def from_uri(cls, uri: str) -> S3Store:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"store URI {uri!r} has no bucket")
        return cls(bucket, prefix)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes:
        buffer = io.BytesIO()
        try:
            self._s3.download_fileobj(self.bucket, self._key(key), buffer, Config=_TRANSFER)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise KeyNotFound(key) from None
            raise
        return buffer.getvalue()

    def put(self, key: str, data: bytes, *, content_type: str | None = None,
            cache_control: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        if cache_control:
            extra["CacheControl"] = cache_control
        self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def exists(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        strip = len(self._key(""))
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):  # the API's limit per request
            chunk = keys[start : start + 1000]
            self._s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(k)} for k in chunk], "Quiet": True},
            )
