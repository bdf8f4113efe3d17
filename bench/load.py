"""Load: clients of mixed queries while the catalog is rebuilt and a client sends photo bombs.

Three phases of the same length against one `fashion-search serve` (loopback), after a short
warm-up, each with the same `clients` threads sending mixed queries back to back (60 % text, 25 %
photo, 15 % text + photo; shoppers' phrases and catalog photos drawn at random from a pool of 600
and 300, so some repeat, as on a real site, and the embedding cache answers them). Each phase has
its own pool, so that every phase starts with the same share of new queries:

1. quiet: nothing else runs;
2. reindex: builds of the catalog with 1 % new photos publish one after another (`fashion-search
   build` subprocesses); the server swaps each new version in while answering;
3. bomb: one more client sends hostile photos back to back — a 2 KB lossless WebP of 16383×2441
   pixels, a PNG whose text chunk inflates to 50 MB, a photo over the 4 MB limit, in 8 colours each
   so the embedding cache cannot answer them — each must be
   refused with a 4xx, and the others' p99 should stay within 2× the quiet phase's.

Every non-2xx answer to a normal client is counted (the target is 0), and so is every bomb answer
that is not a 4xx.

    python -m bench.load --model models/fashion-starter [--products 2000] [--clients 4] [--seconds 30]
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, PngImagePlugin

from bench.build import change_photos, cli_build, copy_feed, write_feed
from bench.common import Context, log, table
from bench.e2e import FEED, local_server, product_photos, shopper_queries
from fashion_search.config import default_model_dir

MIX = (("text", 0.60), ("image", 0.25), ("hybrid", 0.15))


def bombs(variants: int = 8) -> list[tuple[str, str]]:
    """Hostile photos, base64: small on the wire, huge (or over the limit) once decoded. Each comes in
    `variants` colours, so that the server's embedding cache cannot answer a repeat for free."""
    def encoded(img: Image.Image, **save: Any) -> str:
        out = io.BytesIO()
        img.save(out, **save)
        return base64.b64encode(out.getvalue()).decode()

    rng = np.random.default_rng(0)
    out = []
    for _ in range(variants):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        text = PngImagePlugin.PngInfo()
        text.add_text("comment", "a" * 50_000_000, zip=True)
        noise = Image.fromarray(rng.integers(0, 256, (1300, 1300, 3), dtype=np.uint8))
        out += [("webp 16383x2441 (40 MP)", encoded(Image.new("RGB", (16383, 2441), colour), format="WEBP",
                                                    lossless=True)),
                ("png text chunk to 50 MB", encoded(Image.new("RGB", (8, 8), colour), format="PNG", pnginfo=text)),
                ("photo over 4 MB", encoded(noise, format="PNG"))]
    return out


class Phase:
    """Latencies and statuses of one phase, filled by the client threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: dict[str, list[float]] = {kind: [] for kind, _ in MIX}
        self.statuses: Counter[str] = Counter()
        self.bomb_statuses: Counter[str] = Counter()
        self.builds = 0
        self.lock = threading.Lock()

    def summary(self) -> dict[str, Any]:
        every = [ms for values in self.latencies.values() for ms in values]
        stats = {kind: {"requests": len(v), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
                 for kind, v in self.latencies.items() if v}
        return {"name": self.name, "requests": len(every), "p50": float(np.percentile(every, 50)),
                "p99": float(np.percentile(every, 99)), "by_kind": stats, "statuses": dict(self.statuses),
                "non_2xx": sum(n for status, n in self.statuses.items() if not status.startswith("2")),
                "bomb_statuses": dict(self.bomb_statuses), "builds_published": self.builds}


def client(url: str, phase: Phase, stop: threading.Event, seed: int, texts: list[str], photos: list[str]) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            body: dict[str, Any] = {"top_k": 24}
            if kind in ("text", "hybrid"):
                body["text"] = rng.choice(texts)
            if kind in ("image", "hybrid"):
                body["image"] = rng.choice(photos)
            started = time.perf_counter()
            try:
                status = str(http.post(f"{url}/api/v1/search", json=body).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = (time.perf_counter() - started) * 1000
            with phase.lock:
                phase.latencies[kind].append(elapsed)
                phase.statuses[status] += 1


def bomber(url: str, phase: Phase, stop: threading.Event, payloads: list[tuple[str, str]]) -> None:
    with httpx.Client(timeout=60) as http:
        while not stop.is_set():
            for name, image in payloads:
                try:
                    status = str(http.post(f"{url}/api/v1/search", json={"image": image}).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with phase.lock:
                    phase.bomb_statuses[f"{name}: {status}"] += 1


def builder(catalog_rows: list[dict], work: Path, store: Path, model: Path, phase: Phase,
            stop: threading.Event) -> None:
    """Rebuild the catalog with 1 % new photos, again and again, until the phase ends."""
    round_ = 0
    while not stop.is_set():
        round_ += 1
        rows = change_photos(catalog_rows, work / f"photos-{round_}", 0.01, round_ % 100)
        feed = work / f"feed-{round_}.jsonl"
        write_feed(rows, feed)
        cli_build(feed, store, model)
        with phase.lock:
            phase.builds += 1


def run_load(model: Path, work: Path, *, products: int, clients: int, seconds: float) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    rows = copy_feed(FEED, work / "feed.jsonl", products)
    log(f"load: building {len(rows):,} products")
    cli_build(work / "feed.jsonl", store, model)
    names = ("warm-up", "quiet", "reindex", "bomb")
    texts, photos = shopper_queries(600 * len(names)), product_photos(300 * len(names))
    payloads = bombs()
    phases = []
    with local_server(str(store), model) as url:
        for n, name in enumerate(names):
            phase, stop = Phase(name), threading.Event()
            pool = texts[n::len(names)], photos[n::len(names)]
            threads = [threading.Thread(target=client, args=(url, phase, stop, i, *pool)) for i in range(clients)]
            if name == "reindex":
                threads.append(threading.Thread(target=builder, args=(rows, work, store, model, phase, stop)))
            if name == "bomb":
                threads.append(threading.Thread(target=bomber, args=(url, phase, stop, payloads)))
            for t in threads:
                t.start()
            time.sleep(seconds / 3 if name == "warm-up" else seconds)
            stop.set()
            for t in threads:
                t.join()
            if name == "warm-up":
                continue
            phases.append(phase.summary())
            log(f"load: {name}: {phases[-1]['requests']} requests, p50 {phases[-1]['p50']:.1f} ms, "
                f"p99 {phases[-1]['p99']:.1f} ms, non-2xx {phases[-1]['non_2xx']}")
    quiet = phases[0]["p99"]
    return {"products": len(rows), "clients": clients, "seconds": seconds, "phases": phases,
            "p99_ratio": {p["name"]: p["p99"] / quiet for p in phases}}


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    return run_load(ctx.model, ctx.work / "load", products=ctx.size(2000, 300), clients=ctx.size(4, 2),
                    seconds=ctx.size(30, 5))


def render(result: dict[str, Any], ctx: Context) -> str:
    rows = []
    for p in result["phases"]:
        bombs_bad = sum(n for k, n in p["bomb_statuses"].items() if not k.rsplit(": ", 1)[1].startswith("4"))
        extra = {"reindex": f"{p['builds_published']} builds published",
                 "bomb": f"{sum(p['bomb_statuses'].values())} bombs, {bombs_bad} not refused with a 4xx"}
        rows.append([p["name"], f"{p['requests']:,}", f"{p['p50']:.1f}", f"{p['p99']:.1f}",
                     f"{result['p99_ratio'][p['name']]:.2f}×", p["non_2xx"], extra.get(p["name"], "–")])
    bomb = result["phases"][-1]
    statuses = ", ".join(f"{k} ×{n}" for k, n in sorted(bomb["bomb_statuses"].items()))
    return "\n\n".join([
        f"{result['clients']} clients of mixed queries (60 % text, 25 % photo, 15 % both) against `fashion-search "
        f"serve` over {result['products']:,} products, {result['seconds']:g} s per phase; `python -m bench.load`.",
        table(["phase", "requests", "p50 ms", "p99 ms", "p99 vs quiet", "non-2xx", "meanwhile"], rows,
              right=(1, 2, 3, 4, 5)),
        f"Bomb answers: {statuses}."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model_dir())
    parser.add_argument("--work", type=Path, default=Path("bench-results/load"))
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    result = run_load(args.model, args.work, products=args.products, clients=args.clients, seconds=args.seconds)
    ctx = Context(quick=False, model=args.model, feed=FEED, work=args.work, plots=args.work, report=args.work / "x")
    print(render(result, ctx))


if __name__ == "__main__":
    main()
