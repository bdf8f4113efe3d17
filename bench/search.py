"""Search: HNSW (our index, fashion_search.index.faiss_hnsw, default build parameters) against exact
search (FAISS IndexFlatIP, brute force) at the same size: query latency and recall@10 over
efSearch, build time, file size and resident memory; and the default efSearch that follows.

Vectors: the starter model's image vectors of the fashion feed (from the build section's index).
Larger sets keep their cluster structure: row i is real vector (i mod n) plus Gaussian noise,
renormalised, the noise scaled from the data (half the median distance between a real vector and
its nearest real neighbour), so every synthetic vector stays inside its source's neighbourhood.
Queries: half shopper text queries encoded by the starter's text tower (cross-modal, as text search
runs), half "new photos" of catalog products (real image vectors with fresh noise of the same scale).

Each size runs in a fresh process (`--child`), and the index's memory is read in another one that
only loads it the way the service does (`--rss`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    Context,
    finish_recall_plot,
    image_link,
    label_ef_search,
    log,
    ms,
    percentiles,
    plot_path,
    rss_mb,
    run_module,
    save_figure,
    speed,
)
from bench.common import table as md_table

K = 10
TARGET_RECALL = 0.98
EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256)
NOISE_FRACTION = 0.5  # noise norm / median nearest-neighbour distance of the real vectors


def nn_distance(real: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Median distance from a real vector to its nearest other real vector (exact duplicates,
    e.g. one photo used by two products, are skipped)."""
    import faiss

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(real), size=min(sample, len(real)), replace=False)
    index = faiss.IndexFlatIP(real.shape[1])
    index.add(np.ascontiguousarray(real, dtype=np.float32))
    scores, _ = index.search(np.ascontiguousarray(real[rows]), 8)
    distances = np.sqrt(np.maximum(2.0 - 2.0 * scores[:, 1:], 0.0))  # unit vectors: |a-b|² = 2 - 2 a·b
    nearest = np.array([d[d > 1e-4][0] if (d > 1e-4).any() else np.nan for d in distances])
    return float(np.nanmedian(nearest))


def perturb(vectors: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = vectors + rng.standard_normal(vectors.shape, dtype=np.float32) * np.float32(sigma)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def synthetic(real: np.ndarray, size: int, sigma: float, seed: int = 1, chunk: int = 100_000) -> np.ndarray:
    """`size` unit vectors: the real ones first, then real[i mod n] + N(0, sigma²) renormalised."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, real.shape[1]), dtype=np.float32)
    n = min(len(real), size)
    out[:n] = real[:n]
    for start in range(n, size, chunk):
        stop = min(start + chunk, size)
        out[start:stop] = perturb(real[np.arange(start, stop) % len(real)], sigma, rng)
    return out


def recall(exact_scores: np.ndarray, scores: np.ndarray, k: int = K) -> np.ndarray:
    """Per query: share of the k results at least as similar as the exact k-th neighbour (counting by
    score, so ties among equal vectors are not misses)."""
    threshold = exact_scores[:, k - 1 : k] - 1e-5
    return (scores[:, :k] >= threshold).sum(axis=1) / k


def _one_by_one(index: Any, queries: np.ndarray, ef: int | None = None) -> tuple[np.ndarray, list[float]]:
    """Search each query alone, as the service does, timing every call (ms)."""
    scores, times = np.empty((len(queries), K), dtype=np.float32), []
    for i in range(len(queries)):
        started = time.perf_counter()
        s, _ = index.search(queries[i : i + 1], K, ef_search=ef)
        times.append((time.perf_counter() - started) * 1000.0)
        scores[i] = s[0]
    return scores, times


def measure(vectors: np.ndarray, queries: np.ndarray, kinds: np.ndarray, efs: tuple[int, ...] = EF_SEARCH,
            exact_queries: int = 200, index_out: Path | None = None) -> dict[str, Any]:
    """Exact vs HNSW at one size. Builds use every core; queries run one at a time on one thread."""
    import faiss

    from fashion_search.index import FaissHnswIndex, HnswParams

    cores = os.cpu_count() or 1
    faiss.omp_set_num_threads(cores)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    exact_scores, _ = flat.search(queries, K)
    faiss.omp_set_num_threads(1)
    _, exact_times = _one_by_one(FaissHnswIndex(flat), queries[:exact_queries])
    del flat
    params = HnswParams()
    faiss.omp_set_num_threads(cores)
    started = time.perf_counter()
    index = params.build(vectors)
    build_seconds = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in efs:
        scores, times = _one_by_one(index, queries, ef)
        per_query = recall(exact_scores, scores)
        rows.append({"ef_search": ef, **percentiles(times), "recall": float(per_query.mean()),
                     **{f"recall_{kind}": float(per_query[kinds == kind].mean()) for kind in np.unique(kinds)}})
    data = index.to_bytes()
    if index_out is not None:
        index_out.parent.mkdir(parents=True, exist_ok=True)
        index_out.write_bytes(data)
    return {"size": len(vectors), "dim": vectors.shape[1], "queries": len(queries), "exact": percentiles(exact_times),
            "hnsw": rows, "build_seconds": build_seconds, "build_threads": cores, "file_bytes": len(data),
            "params": params.as_dict(), "vectors_mb": vectors.nbytes / 1e6}


def pick_ef(sizes: list[dict[str, Any]], target: float = TARGET_RECALL) -> dict[str, Any]:
    """The lowest efSearch (latency grows with it) whose recall@10 reaches `target` at every size."""
    per_size = []
    for s in sizes:
        ok = [r["ef_search"] for r in s["hnsw"] if r["recall"] >= target]
        per_size.append({"size": s["size"], "ef": min(ok) if ok else None})
    efs = [r["ef_search"] for r in sizes[0]["hnsw"]]
    chosen = min((ef for ef in efs if all(at_ef(s, ef)["recall"] >= target for s in sizes)), default=None)
    return {"target": target, "per_size": per_size, "chosen": chosen}


def index_memory(path: Path) -> dict[str, Any]:
    """Memory of a fresh process that loads the index as the service does (bytes -> deserialize)."""
    return run_module("bench.search", ["--rss", str(path)])


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    from bench.e2e import shopper_queries
    from fashion_search.model.embedder import Embedder
    from fashion_search.store import open_store, versions

    store = open_store(results["build"]["store"])
    pointer = versions.read_pointer(store)
    assert pointer is not None
    manifest = versions.read_manifest(store, pointer.version)
    real = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy"))).astype(np.float32)
    distance = nn_distance(real)
    sigma = float(NOISE_FRACTION * distance / np.sqrt(real.shape[1]))
    count = ctx.size(1000, 200)
    rng = np.random.default_rng(3)
    text = Embedder(ctx.model).encode_texts(shopper_queries(count // 2, seed=11))
    photos = perturb(real[rng.choice(len(real), size=count - count // 2, replace=False)], sigma, rng)
    folder = ctx.work / "search"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "real.npy", real)
    np.save(folder / "queries.npy", np.concatenate([text, photos]).astype(np.float32))
    np.save(folder / "kinds.npy", np.array(["text"] * len(text) + ["photo"] * len(photos)))
    sizes = [len(real), *ctx_sizes(ctx)]
    out = []
    for size in sizes:
        log(f"search: {size:,} vectors (fresh process: exact, HNSW build, efSearch sweep)")
        index_file = folder / f"index-{size}.faiss"
        measured = run_module("bench.search", [
            "--child", "--size", str(size), "--sigma", repr(sigma), "--folder", str(folder),
            "--exact-queries", str(ctx.size(200 if size <= 100_000 else 100, 50)), "--index-out", str(index_file)])
        measured["memory"] = index_memory(index_file)
        measured["index_file"] = str(index_file)
        log(f"search: {size:,}: built in {measured['build_seconds']:.0f} s, "
            f"recall@10 at ef 64 = {next(r['recall'] for r in measured['hnsw'] if r['ef_search'] == 64):.3f}")
        out.append(measured)
    return {"sizes": out, "sigma": sigma, "nn_distance": distance, "noise_fraction": NOISE_FRACTION,
            "real": len(real), "text_queries": len(text), "photo_queries": len(photos), "pick": pick_ef(out)}


def ctx_sizes(ctx: Context) -> list[int]:
    """The synthetic sizes beyond the real set."""
    return [10_000] if ctx.quick else [100_000, 1_000_000]


def at_ef(size: dict[str, Any], ef: int) -> dict[str, Any]:
    return next(r for r in size["hnsw"] if r["ef_search"] == ef)


def plot(result: dict[str, Any], ctx: Context) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for size in result["sizes"]:
        xs, ys = [r["p50"] for r in size["hnsw"]], [r["recall"] for r in size["hnsw"]]
        line = ax.plot(xs, ys, marker="o", ms=3, label=f"HNSW, {size['size']:,}")[0]
        label_ef_search(ax, size["hnsw"])
        ax.scatter([size["exact"]["p50"]], [1.0], marker="s", color=line.get_color(),
                   label=f"exact IndexFlatIP, {size['size']:,}")
    finish_recall_plot(ax, TARGET_RECALL)
    path = plot_path(ctx, "search.png")
    save_figure(fig, path)
    return path


def render(result: dict[str, Any], ctx: Context) -> str:
    from fashion_search.index import HnswParams

    pick, default_ef = result["pick"], HnswParams().ef_search
    sizes = result["sizes"]
    params = sizes[0]["params"]
    parts = [
        f"HNSW = `IndexHNSWFlat`, inner product, M={params['m']}, efConstruction={params['ef_construction']} "
        "(the code defaults), built with all cores; exact = `IndexFlatIP` (brute force) over the same vectors, "
        "the baseline of every ratio here. Queries run one at a time through `FaissHnswIndex.search` on "
        f"1 thread (FAISS OpenMP threads = 1), as the service runs them; top {K}. Recall@10 = share of the "
        "HNSW top 10 at least as similar as the exact 10th neighbour.",
        f"Vectors: {result['real']:,} real starter-model image vectors of the fashion feed; larger sizes add "
        f"real[i mod {result['real']:,}] + N(0, σ²) per dimension, renormalised, with σ = {result['sigma']:.4f} "
        f"(noise norm ≈ {result['noise_fraction']} × the median nearest-neighbour distance of the real vectors, "
        f"{result['nn_distance']:.3f}): each synthetic vector stays next to its source, so the catalog's "
        f"clusters keep their shape, only denser. Queries: {result['text_queries']} shopper text queries "
        f"(starter text tower) + {result['photo_queries']} photo queries (real image vectors with fresh noise "
        "of the same σ).",
        image_link(ctx, plot(result, ctx), "recall vs latency"),
    ]
    rows = []
    for s in sizes:
        for r in s["hnsw"]:
            mark = " ← chosen" if r["ef_search"] == pick["chosen"] else ""
            rows.append([f"{s['size']:,}", f"{r['ef_search']}{mark}", ms(r["p50"]), ms(r["p95"]), f"{r['recall']:.4f}",
                         f"{r.get('recall_text', float('nan')):.4f}", f"{r.get('recall_photo', float('nan')):.4f}",
                         speed(s["exact"]["p50"], r["p50"])])
        rows.append([f"{s['size']:,}", "exact (baseline)", ms(s["exact"]["p50"]), ms(s["exact"]["p95"]), "1",
                     "1", "1", "baseline"])
    parts.append(md_table(["vectors", "efSearch", "p50 ms", "p95 ms", "recall@10", "text q.", "photo q.",
                           "vs exact"], rows, right=(2, 3, 4, 5, 6)))
    rows = []
    for s in sizes:
        mem = s["memory"]
        rows.append([f"{s['size']:,}", f"{s['build_seconds']:.1f}", s["build_threads"], f"{s['file_bytes'] / 1e6:,.0f}",
                     f"{s['vectors_mb']:,.0f}", f"{mem['index_rss_mb']:,.0f}", f"{mem['peak_mb']:,.0f}",
                     f"{s['exact']['n']}", f"{s['queries']}"])
    parts += ["**Index build, size and memory** (one build per size, so the build time is a single "
              "measurement; RSS: a fresh process that reads the file and deserialises it as `LiveIndex.load` "
              "does — the index's share is RSS after minus before, the peak includes the downloaded bytes "
              "held during deserialisation)",
              md_table(["vectors", "HNSW build s", "build threads", "index.faiss MB", "raw float32 MB",
                        "index RSS MB", "load peak RSS MB", "exact-latency queries", "HNSW queries"], rows,
                       right=range(1, 9))]
    per_size = ", ".join(f"{p['size']:,}: {p['ef'] if p['ef'] is not None else 'not reached'}"
                         for p in pick["per_size"])
    if pick["chosen"] is not None:
        verdict = (f"**Default efSearch: {pick['chosen']}** — the lowest efSearch with recall@10 ≥ {pick['target']} "
                   f"at every size measured (lowest per size: {per_size}). The code default is {default_ef}"
                   + ("; it matches." if pick["chosen"] == default_ef else
                      f"; this run says {pick['chosen']} (`HnswParams.ef_search`)."))
    else:
        verdict = (f"No efSearch up to {EF_SEARCH[-1]} reaches recall@10 ≥ {pick['target']} at every size "
                   f"(lowest per size: {per_size}); the code default stays {default_ef}.")
    parts.append(verdict)
    return "\n\n".join(parts)


def _child(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.folder)
    real = np.load(folder / "real.npy")
    vectors = synthetic(real, args.size, args.sigma)
    queries, kinds = np.load(folder / "queries.npy"), np.load(folder / "kinds.npy")
    return measure(vectors, queries, kinds, exact_queries=args.exact_queries, index_out=Path(args.index_out))


def _rss(path: Path) -> dict[str, Any]:
    from fashion_search.index import FaissHnswIndex

    before = rss_mb()["rss_mb"]
    data = path.read_bytes()
    index = FaissHnswIndex.from_bytes(data)
    del data
    after = rss_mb()
    return {"rss_before_mb": before, "rss_after_mb": after["rss_mb"], "peak_mb": after["peak_mb"],
            "index_rss_mb": after["rss_mb"] - before, "ntotal": index.ntotal}


def main() -> None:
    parser = argparse.ArgumentParser(description="one size of the search benchmark, in a fresh process")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--rss", type=Path)
    parser.add_argument("--size", type=int)
    parser.add_argument("--sigma", type=float)
    parser.add_argument("--folder")
    parser.add_argument("--exact-queries", type=int, default=200)
    parser.add_argument("--index-out")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    result = _rss(args.rss) if args.rss else _child(args)
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
