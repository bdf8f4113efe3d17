"""The embedded default: a local HTTP server that turns requests into API Gateway HTTP API (v2) events for
the same Lambda handler, and serves the thumbnails and the frontend like CloudFront.

The HTTP side is waitress, a WSGI server: pure Python, no C build, threads. It parses requests strictly
(a Content-Length of digits only and only one, chunked bodies de-chunked, Transfer-Encoding overriding
Content-Length, no bare CR or LF, no header name with '_'), buffers a body only up to the API's 6 MB and
refuses a larger Content-Length before reading a byte of it, and hands only complete requests to its
threads, so a slow client holds none. uvicorn (ASGI, over h11 or httptools) parses as strictly but has no
body limit of its own, and the handler is synchronous: a WSGI app over it is the simplest honest shape.
waitress's own refusals (400, 413, 431, 501) are answered in the API's JSON error shape.

Handler calls are serialised, as Lambda runs one invocation per execution environment at a time; the
other threads serve static files meanwhile.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import responses as reasons
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from .api import LambdaHandler
from .schemas import MAX_REQUEST_BYTES, ErrorDetail, ErrorResponse

THREADS = 8
_THUMBNAIL = re.compile(r"^/thumbnails/([0-9a-f]{64}\.webp)$")
_TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")
# On every local response: no MIME sniffing, no framing, no Referer leaking search terms to other sites.
SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "no-referrer")]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Objects(Protocol):
    """Where the thumbnails are read from, as CloudFront reads them from the bucket: the index's object store
    (store.ObjectStore has this shape; its KeyNotFound is a KeyError)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; a KeyError when there is none."""
        ...


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that handlers and powertools read."""

    function_name: str = "fashion-search-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 2048
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:fashion-search-local"
    log_group_name: str = "/aws/lambda/fashion-search-local"
    log_stream_name: str = "local"
    deadline: float = field(default_factory=lambda: time.time() + 30)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


def http_api_event(method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event, as API Gateway would send it."""
    parts = urlsplit(target)
    lowered: dict[str, str] = {}
    for key, value in headers.items():
        key = key.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    content_type = lowered.get("content-type", "").lower()
    textual = not body or content_type.startswith(_TEXT_TYPES)
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": unquote(parts.path),
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {"method": method, "path": unquote(parts.path), "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": lowered.get("user-agent", "")},
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": not textual,
    }
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered.pop("cookie").split(";")]
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = body.decode("utf-8", errors="replace") if textual else base64.b64encode(body).decode()
    return event


def page_policy(api_base_url: str) -> str:
    """The search page's Content-Security-Policy: its own scripts and styles only (ES modules, no inline code),
    images from here plus data: and blob: (the photo preview), requests to here and the API's origin."""
    api = urlsplit(api_base_url)
    connect = "'self'" + (f" {api.scheme}://{api.netloc}" if api.netloc else "")
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class _Reply(NamedTuple):
    status: int
    body: bytes
    headers: list[tuple[str, str]]


def _text(status: int, message: str, *headers: tuple[str, str]) -> _Reply:
    return _Reply(status, message.encode(), [("Content-Type", "text/plain; charset=utf-8"), *headers])


class _RefusalTask(ErrorTask):
    """waitress's answer to a request it refuses to parse (malformed, body over the limit, headers too large):
    the API's JSON error shape and the security headers; waitress closes the connection after it."""

    def execute(self) -> None:
        error = self.request.error
        message = (f"the request body is over {MAX_REQUEST_BYTES // 2**20} MB, the most the API accepts"
                   if error.code == 413 else error.body)
        detail = ErrorDetail(code=error.reason.lower().replace(" ", "_"), message=message)
        body = ErrorResponse(error=detail, request_id=None).model_dump_json().encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                      *SECURITY_HEADERS])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = _RefusalTask


class _Server(TcpWSGIServer):
    channel_class = _Channel


class LocalServer:
    """What `fashion-search serve` runs: the API, the thumbnails and the search page on one port, `threads`
    threads (the handler one call at a time)."""

    def __init__(self, handler: LambdaHandler, store: Objects, *, frontend: Path | None = None,
                 host: str = "127.0.0.1", port: int = 8000, api_base_url: str = "", threads: int = THREADS) -> None:
        self.handler, self.store, self.frontend = handler, store, frontend
        self.config = json.dumps({"apiBaseUrl": api_base_url}).encode()
        self.policy = page_policy(api_base_url)
        self._invoke_lock = threading.Lock()
        # waitress refuses a body of max_request_body_size bytes or more: MAX_REQUEST_BYTES itself passes.
        self.server = _Server(self.app, host=host, port=port, threads=threads, ident="fashion-search",
                              max_request_body_size=MAX_REQUEST_BYTES + 1)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.server.effective_host}:{self.server.effective_port}"

    def serve_forever(self) -> None:
        """waitress's own loop (`server.run`), in steps of at most 0.2 s so that `stop` can end it
        between two polls: closing its sockets under a running select() fails with EBADF."""
        while not self._stopping.is_set():
            self.server.asyncore.loop(timeout=0.2, map=self.server._map, count=1)

    def start(self) -> LocalServer:
        self._thread = threading.Thread(target=self.serve_forever, name="local-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.server.close()
        self.server.task_dispatcher.shutdown()

    # -- the WSGI application --------------------------------------------------------------------
    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        target = environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"
        path = urlsplit(target).path
        api = path.startswith("/api/")
        reply = self._invoke(environ, method, target) if api else self._route_static(method, path)
        policy = [] if api else [("Content-Security-Policy", self.policy)]  # the Swagger page needs inline script
        headers = [*reply.headers, *policy, *SECURITY_HEADERS, ("Content-Length", str(len(reply.body)))]
        start_response(f"{reply.status} {reasons.get(reply.status, '')}".rstrip(), headers)
        return [b"" if method == "HEAD" else reply.body]

    def _invoke(self, environ: dict[str, Any], method: str, target: str) -> _Reply:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        event = http_api_event(method, target, _request_headers(environ), body, environ.get("REMOTE_ADDR", ""))
        with self._invoke_lock:
            response = self.handler(event, LocalContext())
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        headers = list((response.get("headers") or {}).items())
        headers += [(name, ", ".join(values)) for name, values in (response.get("multiValueHeaders") or {}).items()]
        headers += [("Set-Cookie", cookie) for cookie in response.get("cookies") or []]
        return _Reply(int(response.get("statusCode", 200)), data, headers)

    def _route_static(self, method: str, path: str) -> _Reply:
        if method not in ("GET", "HEAD"):
            return _text(405, "method not allowed", ("Allow", "GET, HEAD"))
        if path == "/config.json":
            return _Reply(200, self.config, [("Content-Type", "application/json"), ("Cache-Control", "no-cache")])
        if match := _THUMBNAIL.match(path):
            try:
                data = self.store.get(f"thumbnails/{match.group(1)}")
            except KeyError:
                return _text(404, "no such thumbnail")
            return _Reply(200, data, [("Content-Type", "image/webp"),
                                      ("Cache-Control", "public, max-age=31536000, immutable")])
        return self._static(path)

    def _static(self, path: str) -> _Reply:
        if self.frontend is None:
            return _text(404, "no frontend is served")
        root = self.frontend.resolve()
        try:  # a NUL byte or a name too long for the file system is a path that names no file
            file = (root / unquote(path).lstrip("/")).resolve()
            if file.is_dir():
                file = file / "index.html"
            if not file.is_relative_to(root) or not file.is_file():
                return _text(404, "not found")
            data = file.read_bytes()
        except (OSError, ValueError):
            return _text(404, "not found")
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return _Reply(200, data, [("Content-Type", content_type), ("Cache-Control", "no-cache")])


def _request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers back from the WSGI environ (waitress joined repeated ones with ', ')."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers
