"""Fetching catalog pages and images over HTTP or from disk: bounded, timed out, retried.

Conditional requests let a rebuild skip unchanged images without downloading them: each fetch
returns validators (ETag / Last-Modified for HTTP, size + mtime for files) that the next build
sends back.

What a server sends is not trusted: bodies are read as a stream and abandoned past a size bound
(a lying or missing Content-Length does not help), image requests go only to the allowed hosts
(redirects included), and every httpx failure becomes a FetchError with a short reason.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from ..errors import FashionSearchError

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "fashion-search-indexer/0.1"
_IMAGE = "fashion_search.image"  # request extension marking image requests (kept across redirects)


class FetchError(FashionSearchError):
    """A resource could not be fetched; `reason` is a short code for reports."""

    status, code = 500, "fetch_failed"  # a build's source, never a request's

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
    max_bytes: int = 32 << 20  # per image
    max_page_bytes: int = 64 << 20  # per catalog response (JSON)
    image_hosts: tuple[str, ...] = ()  # when set, image URLs (and their redirects) must be on these hosts


@dataclass(frozen=True)
class _Answer:
    """A response whose body (read only for 200s, within a size bound) is already in memory."""

    status: int
    url: httpx.URL
    headers: httpx.Headers
    body: bytes


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


class Fetcher:
    """One pooled httpx client for the whole build, with a concurrency bound shared by all calls."""

    def __init__(self, options: FetchOptions = FetchOptions(), transport: httpx.AsyncBaseTransport | None = None):
        self.options = options
        self._limit = asyncio.Semaphore(options.concurrency)
        self._image_hosts = frozenset(h.strip().lower() for h in options.image_hosts if h.strip())
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(options.timeout),
            limits=httpx.Limits(max_connections=options.concurrency),
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            event_hooks={"request": [self._check_image_host]},
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        answer = await self._get(url, self.options.max_page_bytes, params=params)
        if answer.status != 200:
            raise FetchError(f"http_{answer.status}", f"GET {answer.url} answered {answer.status}")
        try:
            return json.loads(answer.body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise FetchError("not_json", f"GET {answer.url} did not return JSON that can be read") from None

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
        answer = await self._get(url, self.options.max_bytes, headers=headers, extensions={_IMAGE: True})
        if answer.status == 304 and headers:
            return Fetched(None, validators)
        if answer.status == 404:
            raise FetchError("not_found", f"{url} does not exist (404)")
        if answer.status != 200:
            raise FetchError(f"http_{answer.status}", f"{url} answered {answer.status}")
        fresh = {k: v for k, v in (("etag", answer.headers.get("ETag")),
                                   ("last_modified", answer.headers.get("Last-Modified"))) if v}
        return Fetched(answer.body, fresh)

    async def _check_image_host(self, request: httpx.Request) -> None:
        """Runs before every request, each redirect included: image requests go to allowed hosts only."""
        if self._image_hosts and request.extensions.get(_IMAGE) and request.url.host not in self._image_hosts:
            raise FetchError("host_not_allowed", f"{request.url.host} is not an allowed image host")

    async def _get(self, url: str, max_bytes: int, **kwargs: Any) -> _Answer:
        """GET with retries on network errors, timeouts and transient statuses (honours Retry-After).

        Failures that repeating cannot fix (a redirect loop, a body too large, a URL httpx cannot
        use, a broken Content-Encoding) raise at once.
        """
        attempt = 0
        while True:
            async with self._limit:
                try:
                    answer: _Answer | None = await self._send(url, max_bytes, **kwargs)
                    error = None
                except httpx.TimeoutException:
                    error, answer = FetchError("timeout", f"{url} timed out"), None
                except httpx.TooManyRedirects:
                    raise FetchError("redirect_loop", f"{url} redirects too many times (a redirect loop?)") from None
                except httpx.UnsupportedProtocol as exc:
                    raise FetchError("unsupported_url", f"{url}: {exc}") from None
                except httpx.InvalidURL as exc:
                    raise FetchError("invalid_url", f"{url} is not a valid URL ({exc})") from None
                except httpx.DecodingError:
                    raise FetchError("undecodable", f"{url}: the body does not match its Content-Encoding") from None
                except httpx.TransportError as exc:
                    error, answer = FetchError("network", f"{url}: {exc.__class__.__name__} {exc}"), None
            if answer is not None and answer.status not in RETRY_STATUSES:
                return answer
            if attempt >= self.options.retries:
                if answer is not None:
                    return answer
                assert error is not None
                raise error
            await asyncio.sleep(self._delay(attempt, answer))
            attempt += 1

    async def _send(self, url: str, max_bytes: int, **kwargs: Any) -> _Answer:
        """One GET; a 200's body is read as a stream and abandoned once past `max_bytes` (decoded)."""
        async with self._client.stream("GET", url, **kwargs) as response:
            body = bytearray()
            if response.status_code == 200:
                if int(response.headers.get("Content-Length") or 0) > max_bytes:
                    raise FetchError("too_large", f"{url} is larger than {max_bytes:,} bytes")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError("too_large", f"{url} is larger than {max_bytes:,} bytes")
            return _Answer(response.status_code, response.url, response.headers, bytes(body))

    def _delay(self, attempt: int, answer: _Answer | None) -> float:
        delay = self.options.backoff * 2**attempt * random.uniform(0.5, 1.5)
        retry_after = answer.headers.get("Retry-After") if answer is not None else None
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

