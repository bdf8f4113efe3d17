"""Fetching catalog pages and images over HTTP or from disk: bounded, timed out, retried.

Conditional requests let a rebuild skip unchanged images without downloading them: each fetch
returns validators (ETag / Last-Modified for HTTP, size + mtime for files) that the next build
sends back.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from .errors import FashionSearchError

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "fashion-search-indexer/0.1"


class FetchError(FashionSearchError):
    """A resource could not be fetched; `reason` is a short code for reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Fetched:
    """A fetched resource; `data` is None when the validators said it is unchanged."""

    data: bytes | None
    validators: dict[str, Any] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.data is None


@dataclass(frozen=True)
class FetchOptions:
    concurrency: int = 16
    timeout: float = 15.0
    retries: int = 3
    backoff: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    max_bytes: int = 32 << 20


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


class Fetcher:
    """One pooled httpx client for the whole build, with a concurrency bound shared by all calls."""

    def __init__(self, options: FetchOptions = FetchOptions(), transport: httpx.AsyncBaseTransport | None = None):
        self.options = options
        self._limit = asyncio.Semaphore(options.concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(options.timeout),
            limits=httpx.Limits(max_connections=options.concurrency),
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        response = await self._get(url, params=params)
        if response.status_code != 200:
            raise FetchError(f"http_{response.status_code}", f"GET {response.url} answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise FetchError("not_json", f"GET {response.url} did not return JSON") from None

    async def get_resource(self, ref: str, validators: dict[str, Any] | None = None) -> Fetched:
        """Bytes of a URL or a local file, or not-modified when `validators` still hold."""
        if is_url(ref):
            return await self._get_url(ref, validators or {})
        return await asyncio.to_thread(_read_file, Path(ref), validators or {}, self.options.max_bytes)

    async def _get_url(self, url: str, validators: dict[str, Any]) -> Fetched:
        headers = {}
        if etag := validators.get("etag"):
            headers["If-None-Match"] = etag
        if last_modified := validators.get("last_modified"):
            headers["If-Modified-Since"] = last_modified
        response = await self._get(url, headers=headers)
        if response.status_code == 304 and headers:
            return Fetched(None, validators)
        if response.status_code == 404:
            raise FetchError("not_found", f"{url} does not exist (404)")
        if response.status_code != 200:
            raise FetchError(f"http_{response.status_code}", f"{url} answered {response.status_code}")
        if len(response.content) > self.options.max_bytes:
            raise FetchError("too_large", f"{url} is larger than {self.options.max_bytes:,} bytes")
        fresh = {k: v for k, v in (("etag", response.headers.get("ETag")),
                                   ("last_modified", response.headers.get("Last-Modified"))) if v}
        return Fetched(response.content, fresh)

    async def _get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET with retries on network errors, timeouts and transient statuses (honours Retry-After)."""
        attempt = 0
        while True:
            async with self._limit:
                try:
                    response = await self._client.get(url, **kwargs)
                    await response.aread()
                except httpx.TimeoutException:
                    error: FetchError | None = FetchError("timeout", f"{url} timed out")
                    response = None
                except httpx.TransportError as exc:
                    error, response = FetchError("network", f"{url}: {exc.__class__.__name__} {exc}"), None
                else:
                    error = None
            if response is not None and response.status_code not in RETRY_STATUSES:
                return response
            if attempt >= self.options.retries:
                if response is not None:
                    return response
                assert error is not None
                raise error
            await asyncio.sleep(self._delay(attempt, response))
            attempt += 1

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = self.options.backoff * 2**attempt * random.uniform(0.5, 1.5)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            delay = max(delay, _retry_after_seconds(retry_after))
        return min(delay, 30.0)


def _retry_after_seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 0.0


def _read_file(path: Path, validators: dict[str, Any], max_bytes: int) -> Fetched:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FetchError("not_found", f"{path} does not exist") from None
    except OSError as exc:
        raise FetchError("unreadable", f"{path}: {exc.strerror}") from None
    if not path.is_file():
        raise FetchError("not_found", f"{path} is not a file")
    fresh = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if validators.get("size") == fresh["size"] and validators.get("mtime_ns") == fresh["mtime_ns"]:
        return Fetched(None, validators)
    if stat.st_size > max_bytes:
        raise FetchError("too_large", f"{path} is larger than {max_bytes:,} bytes")
    try:
        return Fetched(path.read_bytes(), fresh)
    except OSError as exc:
        raise FetchError("unreadable", f"{path}: {exc.strerror}") from None

