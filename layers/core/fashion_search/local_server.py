"""The embedded default: a local HTTP server that turns requests into API Gateway HTTP API (v2)
events for the same Lambda handler, and serves the thumbnails and the frontend like CloudFront.

Handler calls are serialised, as Lambda runs one invocation per execution environment at a time;
static files are served concurrently.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .api import LambdaHandler
from .store import KeyNotFound, ObjectStore

MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation limit, enforced as API Gateway does
_THUMBNAIL = re.compile(r"^/thumbnails/([0-9a-f]{64}\.webp)$")
_TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")


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
    content_type = lowered.get("content-type", "")
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


class LocalServer:
    def __init__(self, handler: LambdaHandler, store: ObjectStore, *, frontend: Path | None = None,
                 host: str = "127.0.0.1", port: int = 8000, api_base_url: str = "") -> None:
        self.handler, self.store, self.frontend = handler, store, frontend
        self.config = json.dumps({"apiBaseUrl": api_base_url}).encode()
        self._invoke_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave as two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.route(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.httpd = Server((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> LocalServer:
        threading.Thread(target=self.serve_forever, name="local-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- routing ---------------------------------------------------------------------------
    def route(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        if path.startswith("/api/"):
            return self._invoke(req)
        if req.command not in ("GET", "HEAD"):
            return _send(req, 405, b"method not allowed", "text/plain", {"Allow": "GET, HEAD"})
        if path == "/config.json":
            return _send(req, 200, self.config, "application/json", {"Cache-Control": "no-cache"})
        if match := _THUMBNAIL.match(path):
            try:
                data = self.store.get(f"thumbnails/{match.group(1)}")
            except KeyNotFound:
                return _send(req, 404, b"no such thumbnail", "text/plain")
            return _send(req, 200, data, "image/webp", {"Cache-Control": "public, max-age=31536000, immutable"})
        return self._static(req, path)

    def _invoke(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            req.close_connection = True
            return _send(req, 413, b'{"message":"Request Entity Too Large"}', "application/json")
        body = req.rfile.read(length) if length else b""
        event = http_api_event(req.command, req.path, dict(req.headers.items()), body, req.client_address[0])
        with self._invoke_lock:
            response = self.handler(event, LocalContext())
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(values)
        content_type = headers.pop("Content-Type", None) or headers.pop("content-type", None)
        cookies = response.get("cookies") or []
        _send(req, int(response.get("statusCode", 200)), data, content_type, headers, cookies)

    def _static(self, req: BaseHTTPRequestHandler, path: str) -> None:
        if self.frontend is None:
            return _send(req, 404, b"no frontend is served", "text/plain")
        root = self.frontend.resolve()
        file = (root / unquote(path).lstrip("/")).resolve()
        if file.is_dir():
            file = file / "index.html"
        if not file.is_relative_to(root) or not file.is_file():
            return _send(req, 404, b"not found", "text/plain")
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        _send(req, 200, file.read_bytes(), content_type, {"Cache-Control": "no-cache"})


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None,
          headers: dict[str, str] | None = None, cookies: list[str] | None = None) -> None:
    try:
        req.send_response(status)
        if content_type:
            req.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            req.send_header(name, value)
        for cookie in cookies or []:
            req.send_header("Set-Cookie", cookie)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the browser went away
