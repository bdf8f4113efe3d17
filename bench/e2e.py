"""End-to-end latency and throughput through the local server (`fashion-search serve`) over HTTP.

Every measured query is distinct (no embedding-cache hits) except in the "alpha moved" row, which
replays one hybrid query with new alphas as the frontend's slider does. The baseline is the same
queries through `SearchService.search` in-process (no HTTP, no API layer): the ratio is what the
server around the service costs.

    python -m bench.e2e --store /tmp/fashion-store [--model DIR] [--requests 200]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
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

from bench.common import Context, image_link, log, ms, plot_path, save_figure
from bench.common import table as md_table
from fashion_search.config import default_model_dir

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

    def as_dict(self) -> dict:
        return {"name": self.name, "clients": self.concurrency, "requests": len(self.latencies_ms),
                "p50": self.p50, "p95": self.p95, "server_p50": float(np.percentile(self.server_ms, 50)),
                "server_p95": float(np.percentile(self.server_ms, 95)), "throughput": self.throughput}


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
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{url}/api/v1/health").json()
                if health["status"] == "ok":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            # Stop it first: its stderr ends only when it does (an index built with another model keeps it
            # up and unhealthy, and reading a live pipe would wait forever).
            proc.terminate()
            proc.wait(timeout=30)
            problem = (health or {}).get("problem") or (proc.stderr.read() if proc.stderr else "")
            raise RuntimeError(f"server did not become healthy in 120 s: {problem}")
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


def in_process(store: str, model: Path, name: str, bodies: list[dict], warmup: int) -> Stats:
    """The baseline: the same request bodies through SearchService.search in this process."""
    from fashion_search.config import ServiceSettings
    from fashion_search.serve.query import Query
    from fashion_search.serve.service import SearchService

    service = SearchService(ServiceSettings(store=store, model=model, refresh_seconds=float("inf")))
    latencies, server = [], []
    for i, body in enumerate(bodies):
        image = base64.b64decode(body["image"]) if "image" in body else None
        started = time.perf_counter()
        result = service.search(Query(text=body.get("text"), image=image, alpha=body.get("alpha", 0.5),
                                      top_k=body["top_k"]))
        if i >= warmup:
            latencies.append((time.perf_counter() - started) * 1000)
            server.append(result.query_ms)
    return Stats(name, 1, latencies, server, sum(latencies) / 1000)


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


def suite(store: str, model: Path, requests: int, warmup: int,
          clients: tuple[int, ...]) -> tuple[list[Stats], list[Stats]]:
    """(HTTP rows, in-process baseline rows): text, image and hybrid at each client count, each run
    with its own distinct queries, plus the cached slider row at one client."""
    per = requests + warmup
    loads = workloads(per * len(clients))
    rows = []
    with local_server(store, model) as url:
        for name in ("text", "image", "hybrid"):
            for j, count in enumerate(clients):
                bodies = loads[name][j * per : (j + 1) * per]
                run(url, name, bodies[:warmup], count)  # warm: model pages, allocator, connections
                rows.append(run(url, name, bodies[warmup:], count))
                log(f"e2e: {name}, {count} clients: p50 {rows[-1].p50:.1f} ms, {rows[-1].throughput:.0f} req/s")
        slider = loads["hybrid, alpha moved (cached)"][:per]
        run(url, "hybrid, alpha moved (cached)", slider[:warmup])
        rows.append(run(url, "hybrid, alpha moved (cached)", slider[warmup:]))
    baseline = [in_process(store, model, name, loads[name][:per], warmup) for name in ("text", "image", "hybrid")]
    return rows, baseline


def run_section(ctx: Context, results: dict) -> dict:
    """The benchmark suite's section 3 over the build section's store."""
    clients = (1, 4) if ctx.quick else (1, 4, 16)
    rows, baseline = suite(results["build"]["store"], ctx.model, ctx.size(200, 20), ctx.size(20, 5), clients)
    return {"rows": [r.as_dict() for r in rows], "baseline": [b.as_dict() for b in baseline],
            "products": results["build"]["products"], "top_k": 24, "threads": os.cpu_count()}


def plot(result: dict, ctx: Context) -> Path:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for name in ("text", "image", "hybrid"):
        rows = [r for r in result["rows"] if r["name"] == name]
        clients = [r["clients"] for r in rows]
        left.plot(clients, [r["p50"] for r in rows], marker="o", label=f"{name} p50")
        left.plot(clients, [r["p95"] for r in rows], marker="x", ls=":", label=f"{name} p95")
        right.plot(clients, [r["throughput"] for r in rows], marker="o", label=name)
    for ax, label in ((left, "ms per request"), (right, "requests/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    path = plot_path(ctx, "e2e.png")
    save_figure(fig, path)
    return path


def render(result: dict, ctx: Context) -> str:
    base = {b["name"]: b for b in result["baseline"]}
    rows = []
    for r in result["rows"]:
        b = base.get(r["name"])
        vs = f"{r['p50'] / b['p50']:.2f}× slower" if b and r["clients"] == 1 else "–"
        rows.append([r["name"], r["clients"], r["requests"], ms(r["p50"]), ms(r["p95"]), ms(r["server_p50"]),
                     f"{r['throughput']:.1f}", vs])
    for b in result["baseline"]:
        rows.append([f"{b['name']} — in-process baseline", 1, b["requests"], ms(b["p50"]), ms(b["p95"]),
                     ms(b["server_p50"]), f"{b['throughput']:.1f}", "baseline"])
    return "\n\n".join([
        f"`fashion-search serve` over the build section's index ({result['products']:,} products, starter "
        f"model) on 127.0.0.1, onnxruntime at its default thread count (one per core: {result['threads']}); "
        f"clients are threads with keep-alive connections (httpx) POSTing `/api/v1/search` with top_k "
        f"{result['top_k']}. Each run is bounded (a fixed number of requests after a warm-up) and uses queries "
        "no earlier run used, so every text and photo is encoded (no cache hits) — except the slider row, "
        "which replays one hybrid query with new alphas. Photos are catalog JPEGs (60x80, ~2-3 KB) sent as "
        "base64. *server p50* is the service's own `query_time`; the server runs one handler call at a time, "
        "as one Lambda execution environment does, so extra clients queue and throughput stays at "
        "~1 / service time. Baseline: the same queries through `SearchService.search` in-process (ratio = "
        "p50 through HTTP / p50 in-process, at 1 client).",
        image_link(ctx, plot(result, ctx), "end-to-end latency and throughput"),
        md_table(["query", "clients", "requests", "p50 ms", "p95 ms", "server p50 ms", "req/s",
                  "vs in-process"], rows, right=(1, 2, 3, 4, 5, 6)),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a store holding an index of the fashion feed")
    parser.add_argument("--model", type=Path, default=default_model_dir())
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--clients", type=int, nargs="+", default=[1], help="concurrent clients per run")
    args = parser.parse_args()
    rows, baseline = suite(args.store, args.model, args.requests, args.warmup, tuple(args.clients))
    print(table(rows + [dataclasses.replace(b, name=f"{b.name} (in-process)") for b in baseline]))


if __name__ == "__main__":
    main()
