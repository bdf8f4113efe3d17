"""build/fetch.py against a real HTTP server on 127.0.0.1 that answers from a script per path:
retries with backoff on transient statuses (Retry-After honoured), conditional requests (304),
the size bound (with and without Content-Length), timeouts, and local files' validators."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fashion_search.build.fetch import Fetched, Fetcher, FetchError, FetchOptions

QUICK = FetchOptions(timeout=2.0, retries=3, backoff=0.01)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False  # no Content-Length: the body comes in chunks


@dataclass
class Seen:
    at: float
    headers: dict[str, str]


class Script:
    """A loopback server: each path answers with its script's next answer (the last one repeats)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.seen: dict[str, list[Seen]] = {}
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                script.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def on(self, path: str, *answers: Answer) -> str:
        self.answers[path] = list(answers)
        return self.url(path)

    def hits(self, path: str) -> int:
        return len(self.seen.get(path, []))

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        seen = self.seen.setdefault(req.path, [])
        seen.append(Seen(time.monotonic(), dict(req.headers.items())))
        script = self.answers.get(req.path) or [Answer(404, b"no script")]
        answer = script[min(len(seen), len(script)) - 1]
        try:
            time.sleep(answer.delay)
            req.send_response(answer.status)
            for key, value in answer.headers.items():
                req.send_header(key, value)
            if answer.chunked:
                req.send_header("Transfer-Encoding", "chunked")
                req.end_headers()
                for start in range(0, len(answer.body), 4096):
                    chunk = answer.body[start : start + 4096]
                    req.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                req.wfile.write(b"0\r\n\r\n")
            else:
                req.send_header("Content-Length", str(len(answer.body)))
                req.end_headers()
                req.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts, size bound)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Script]:
    script = Script()
    yield script
    script.stop()


def run(coro_fn: Any, options: FetchOptions = QUICK) -> Any:
    async def go() -> Any:
        async with Fetcher(options) as fetcher:
            return await coro_fn(fetcher)

    return asyncio.run(go())


def json_answer(obj: Any, status: int = 200, **headers: str) -> Answer:
    return Answer(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **headers})


# -- retries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_transient_statuses_are_retried_until_success(server: Script, status: int) -> None:
    url = server.on("/products", json_answer({}, status), json_answer({}, status), json_answer({"ok": 1}))
    assert run(lambda f: f.get_json(url)) == {"ok": 1}
    assert server.hits("/products") == 3


def test_retries_back_off_exponentially(server: Script) -> None:
    url = server.on("/products", Answer(503), Answer(503), json_answer([1]))
    assert run(lambda f: f.get_json(url), FetchOptions(retries=2, backoff=0.2)) == [1]
    first, second, third = (s.at for s in server.seen["/products"])
    # backoff * 2**attempt * jitter in [0.5, 1.5): >= 0.1 s, then >= 0.2 s
    assert second - first >= 0.09
    assert third - second >= 0.19


def test_retries_give_up_with_the_last_status(server: Script) -> None:
    url = server.on("/products", Answer(500, b"down"))
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_json(url), FetchOptions(retries=2, backoff=0.01))
    assert caught.value.reason == "http_500"
    assert server.hits("/products") == 3  # the first try and two retries


def test_retry_after_is_honoured_on_429(server: Script) -> None:
    url = server.on("/products", Answer(429, b"slow down", {"Retry-After": "1"}), json_answer({"ok": 1}))
    assert run(lambda f: f.get_json(url), FetchOptions(retries=1, backoff=0.001)) == {"ok": 1}
    first, second = (s.at for s in server.seen["/products"])
    assert second - first >= 0.95  # the server's 1 s, not the 1 ms backoff


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_permanent_statuses_are_not_retried(server: Script, status: int) -> None:
    url = server.on("/img.jpg", Answer(status))
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_resource(url))
    assert caught.value.reason == ("not_found" if status == 404 else f"http_{status}")
    assert server.hits("/img.jpg") == 1


def test_a_refused_connection_is_a_network_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_resource(f"http://127.0.0.1:{port}/x.jpg"), FetchOptions(retries=1, backoff=0.01))
    assert caught.value.reason == "network"


# -- timeouts ---------------------------------------------------------------------------------
def test_a_slow_answer_times_out_and_is_retried(server: Script) -> None:
    url = server.on("/slow.jpg", Answer(200, b"late", delay=1.0), Answer(200, b"quick"))
    options = FetchOptions(timeout=0.2, retries=1, backoff=0.01)
    assert run(lambda f: f.get_resource(url), options).data == b"quick"
    assert server.hits("/slow.jpg") == 2


def test_timeouts_give_up_after_the_retries(server: Script) -> None:
    url = server.on("/slow.jpg", Answer(200, b"late", delay=1.0))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_resource(url), FetchOptions(timeout=0.2, retries=1, backoff=0.01))
    assert caught.value.reason == "timeout"
    assert server.hits("/slow.jpg") == 2
    assert time.monotonic() - started < 1.5  # did not wait for the server's answers


# -- conditional requests ---------------------------------------------------------------------
def test_etag_and_last_modified_are_sent_back_and_304_means_unchanged(server: Script) -> None:
    validators = {"ETag": '"v1"', "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT"}
    url = server.on("/img.jpg", Answer(200, b"JPEG", validators), Answer(304, b"", validators))
    first = run(lambda f: f.get_resource(url))
    assert first == Fetched(b"JPEG", {"etag": '"v1"', "last_modified": "Wed, 01 May 2024 10:00:00 GMT"})
    assert not first.not_modified
    assert "If-None-Match" not in server.seen["/img.jpg"][0].headers
    second = run(lambda f: f.get_resource(url, first.validators))
    assert second.not_modified and second.data is None
    assert second.validators == first.validators
    sent = server.seen["/img.jpg"][1].headers
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Wed, 01 May 2024 10:00:00 GMT"


def test_a_changed_resource_comes_back_with_new_validators(server: Script) -> None:
    url = server.on("/img.jpg", Answer(200, b"NEW", {"ETag": '"v2"'}))
    fetched = run(lambda f: f.get_resource(url, {"etag": '"v1"'}))
    assert fetched == Fetched(b"NEW", {"etag": '"v2"'})


def test_a_304_nobody_asked_for_is_an_error(server: Script) -> None:
    url = server.on("/img.jpg", Answer(304))
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_resource(url))
    assert caught.value.reason == "http_304"


# -- size bound -------------------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_bodies_past_the_size_bound_are_refused_once(server: Script, chunked: bool) -> None:
    url = server.on("/big.jpg", Answer(200, b"x" * 50_000, chunked=chunked))
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_resource(url), FetchOptions(max_bytes=10_000, retries=3, backoff=0.01))
    assert caught.value.reason == "too_large"
    assert server.hits("/big.jpg") == 1  # repeating cannot help


def test_bodies_within_the_bound_arrive_whole(server: Script) -> None:
    body = bytes(range(256)) * 39  # 9,984 bytes
    url = server.on("/ok.jpg", Answer(200, body, chunked=True))
    assert run(lambda f: f.get_resource(url), FetchOptions(max_bytes=10_000)).data == body


def test_catalog_pages_have_their_own_bound(server: Script) -> None:
    url = server.on("/products", json_answer(["x" * 100] * 200))
    options = FetchOptions(max_bytes=100, max_page_bytes=1_000)
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_json(url), options)
    assert caught.value.reason == "too_large"
    small = server.on("/small", json_answer(["x" * 100] * 5))  # 500+ bytes: past max_bytes, within the page bound
    assert run(lambda f: f.get_json(small), options) == ["x" * 100] * 5


def test_a_page_that_is_not_json(server: Script) -> None:
    url = server.on("/products", Answer(200, b"<html>maintenance</html>"))
    with pytest.raises(FetchError) as caught:
        run(lambda f: f.get_json(url))
    assert caught.value.reason == "not_json"


# -- local files ------------------------------------------------------------------------------
def test_local_files_use_size_and_mtime_as_validators(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"one")
    first = run(lambda f: f.get_resource(str(path)))
    assert first.data == b"one" and set(first.validators) == {"size", "mtime_ns"}
    assert run(lambda f: f.get_resource(str(path), first.validators)).not_modified
    path.write_bytes(b"two!")
    changed = run(lambda f: f.get_resource(str(path), first.validators))
    assert changed.data == b"two!"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, touched
    assert not run(lambda f: f.get_resource(str(path), changed.validators)).not_modified


def test_local_file_errors(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(b"x" * 2_000)
    cases = {str(tmp_path / "missing.jpg"): "not_found", str(tmp_path): "not_found",
             str(tmp_path / "big.jpg"): "too_large"}
    for ref, reason in cases.items():
        with pytest.raises(FetchError) as caught:
            run(lambda f, ref=ref: f.get_resource(ref), FetchOptions(max_bytes=1_000))
        assert caught.value.reason == reason, ref
