"""A small stand-in for the Lambda Runtime API (2018-06-01), enough for awslambdaric to run a handler.

It hands out queued invocations on `next` (blocking while there are none, as Lambda does) and
records what the runtime posts back, so a test can run a container's entry point as Lambda does.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class RuntimeApi:
    pending: queue.Queue[tuple[str, Any]] = field(default_factory=queue.Queue)
    results: dict[str, tuple[str, Any]] = field(default_factory=dict)  # request id -> (kind, payload)
    init_error: Any = None
    _done: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def invoke(self, event: Any) -> str:
        request_id = str(uuid.uuid4())
        self.pending.put((request_id, event))
        return request_id

    def wait(self, request_id: str, timeout: float = 60.0) -> tuple[str, Any]:
        """('response' | 'error', payload) once the runtime answered, or raise TimeoutError."""
        with self._done:
            if not self._done.wait_for(lambda: request_id in self.results or self.init_error, timeout):
                raise TimeoutError(f"no answer to {request_id} in {timeout} s")
        if self.init_error:
            return "init_error", self.init_error
        return self.results[request_id]

    def start(self) -> RuntimeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404, {"errorMessage": "unknown path"})
                request_id, event = api.pending.get()  # blocks like the real API between invocations
                body = json.dumps(event).encode()
                self.send_response(200)
                # Lambda always sends these; awslambdaric's native client crashes without Content-Type.
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + 30) * 1000)))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:eu-west-1:123456789012:function:fashion-search")
                self.send_header("Lambda-Runtime-Trace-Id",
                                 "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"null")
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                with api._done:
                    if parts == ["init", "error"]:
                        api.init_error = payload
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                        api.results[parts[1]] = (parts[2], payload)
                    else:
                        return self._reply(404, {"errorMessage": "unknown path"})
                    api._done.notify_all()
                self._reply(202, {"status": "OK"})

            def _reply(self, status: int, obj: Any) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
