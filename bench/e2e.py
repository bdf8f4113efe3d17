"""End-to-end latency and throughput through the local server (`fashion-search serve`) over HTTP.

Every measured query is distinct (no embedding-cache hits) except in the "alpha moved" row, which
replays one hybrid query with new alphas as the frontend's slider does.

    python -m bench.e2e --store /tmp/fashion-store [--model DIR] [--requests 200]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from fashion_search.bundle import default_bundle_dir

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FEED = DATA / "fashion" / "feed.jsonl"
CLI = str(Path(sys.executable).parent / "fashion-search")


@dataclass(frozen=True)
class Stats:
    name: str
    concurrency: int
    latencies_ms: list[float]
    server_ms: list[float]
    wall_seconds: float

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.latencies_ms, 95))

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_seconds


def shopper_queries(count: int, seed: int = 0) -> list[str]:
    """Distinct queries phrased as shoppers type them, from the catalog's own attributes."""
    rows = [json.loads(line) for line in FEED.read_text().splitlines()]
    rng = random.Random(seed)
    phrases: set[str] = set()
    while len(phrases) < count:
        a = rng.choice(rows)["attributes"] | {"type": rng.choice(rows)["category"]}
        templates = [f"{a['baseColour']} {a['type']} for {a['gender']}", f"{a['gender']} {a['baseColour']} {a['type']}",
                     f"{a['usage']} {a['baseColour']} {a['type']}", f"{a['baseColour']} {a['type']}"]
        phrases.add(rng.choice(templates).lower())
    return sorted(phrases)


def product_photos(count: int, seed: int = 1) -> list[str]:
    paths = sorted((DATA / "fashion" / "images").glob("*.jpg"))
    return [base64.b64encode(p.read_bytes()).decode() for p in random.Random(seed).sample(paths, count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(store: str, model: Path, threads: int | None = None) -> Iterator[str]:
    """`fashion-search serve` in a child process; yields its URL once healthy."""
    port = free_port()
    env_threads = {"FASHION_SEARCH_THREADS": str(threads)} if threads else {}
    proc = subprocess.Popen([CLI, "serve", "--store", store, "--model", str(model), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env_threads})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/v1/health").json()["status"] == "ok":
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"server did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(url: str, name: str, bodies: list[dict], concurrency: int = 1) -> Stats:
    """POST every body to /api/v1/search with `concurrency` clients; latency per request in ms."""
    latencies: list[float] = []
    server: list[float] = []
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        def one(body: dict) -> None:
            started = time.perf_counter()
            response = client.post(f"{url}/api/v1/search", json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            server.append(response.json()["query_time"])

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, bodies))
        wall = time.perf_counter() - started
    return Stats(name, concurrency, latencies, server, wall)


def workloads(requests: int, top_k: int = 24) -> dict[str, list[dict]]:
    texts, photos = shopper_queries(2 * requests), product_photos(2 * requests)
    hybrid_text, hybrid_photo = texts[requests:], photos[requests:]
    slider = [{"text": texts[0], "image": photos[0], "alpha": a, "top_k": top_k}
              for a in np.linspace(0.05, 0.95, requests)]
    return {
        "text": [{"text": t, "top_k": top_k} for t in texts[:requests]],
        "image": [{"image": p, "top_k": top_k} for p in photos[:requests]],
        "hybrid": [{"text": t, "image": p, "alpha": 0.5, "top_k": top_k} for t, p in zip(hybrid_text, hybrid_photo,
                                                                                           strict=True)],
        "hybrid, alpha moved (cached)": slider,
    }


def table(rows: list[Stats]) -> str:
    lines = ["| query | clients | requests | p50 ms | p95 ms | server p50 ms | req/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in rows:
        lines.append(f"| {s.name} | {s.concurrency} | {len(s.latencies_ms)} | {s.p50:.1f} | {s.p95:.1f} | "
                     f"{np.percentile(s.server_ms, 50):.1f} | {s.throughput:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a store holding an index of the fashion feed")
    parser.add_argument("--model", type=Path, default=default_bundle_dir())
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    loads = workloads(args.requests + args.warmup)
    with local_server(args.store, args.model) as url:
        rows = []
        for name, bodies in loads.items():
            run(url, name, bodies[: args.warmup])  # warm: model pages, allocator, connection
            rows.append(run(url, name, bodies[args.warmup :]))
    print(table(rows))


if __name__ == "__main__":
    main()
