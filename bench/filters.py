"""Filtered search: recall@10 against exact filtered search, and latency, by selectivity and kind of filter.

`FaissHnswIndex.search(vectors, k, allow=mask)` picks its path by how many rows the filter keeps
(`faiss_hnsw.filtered_strategy`):
- "exact": at most `EXACT_MAX_ROWS` rows (or no more than k), gathered and scored exactly (numpy);
- "scan": more, where scanning them costs less than the widened graph search would (allowed rows ×
  `SCAN_ROW_COST` against the widened efSearch × `HNSW_STEP_COST`): FAISS's flat scan of the stored vectors
  with the filter as an `IDSelectorBitmap`;
- "hnsw": else a probe (the unfiltered HNSW search) and, when at least `PROBE_MIN_PASSING` of its k results
  pass the filter, HNSW with the selector at an efSearch widened by the filter's selectivity; when fewer pass
  (the filter keeps nothing near the query) the flat scan instead ("probe→scan").

This section measures that choice ("shipped") and, with the module's constants monkeypatched in the measuring
process (never `layers/` itself), the alternatives:
- "scan everything" (`EXACT_MAX_ROWS` = 0, `HNSW_STEP_COST` huge): every filter by the flat scan (a filter
  keeping no more than k rows is still gathered exactly): what exact answers cost;
- "graph without the probe" (`EXACT_MAX_ROWS` = 0, `SCAN_ROW_COST` huge, `PROBE_MIN_PASSING` = 0): every filter
  through HNSW at the widened efSearch, what the previous code did above its exact threshold, to show why the
  probe is needed;
- the graph without the probe at fixed efSearch values (`filtered_strategy` patched): whether a wider beam alone
  would do, and which beam the searches the probe lets through need.
Which path each search took is recorded by wrapping `FaissHnswIndex._search` and `_exact` (in the measuring
process only); the configurations without the probe skip its unfiltered search (its answer would be ignored),
so their times are the graph search's alone. Configurations are interleaved query by query in a random order.

Vectors: the search section's synthetic-but-clustered index (`index-100000.faiss`: real starter-model image
vectors of the fashion feed, then real[i mod n] plus noise; built here the same way when missing). Queries:
the search section's text and photo queries, half and half. Each query searches alone on one thread
(FAISS OpenMP and BLAS threads = 1, in a fresh process) for `POOL` candidates, as the service does
(`serve.ranking.candidates`); recall@10 is the share of the exact filtered top 10 (by score, so ties are not
misses) among the first 10 it returns, recall@pool the same over the whole candidate pool. The baseline,
the unfiltered HNSW search of the same queries, runs in the same process.

Filters, one per query (a new mask each time), at each selectivity:
- random: rows drawn uniformly (a filter unrelated to anything, e.g. a SKU range);
- categories: whole categories (article types of the row's source product) in a random order until the
  filter keeps the share asked for, the last category cut by product (e.g. "category in [...]");
- far categories: the same, the categories least similar to the query first (their centroid's cosine
  with the query): the shopper asks for something the filter excludes, so none of the query's
  neighbourhood in the graph passes the filter, the hardest realistic case for a filtered graph search.

Acceptance: recall@10 >= TARGET_RECALL at every selectivity measured under every kind of filter, as shipped.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Context, image_link, log, ms, percentiles, plot_path, run_module, save_figure, table

RECALL_AT = 10
TARGET_RECALL = 0.99
SELECTIVITIES = (0.5, 0.2, 0.1, 0.05, 0.02, 0.005, 0.0005)
EF_SWEEP = (256, 512, 1024, 2048, 4096)
QUICK_EF_SWEEP = (256, 512, 4096)
MASKS = {"random": "random rows", "categories": "random categories", "far": "far categories"}
THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# faiss_hnsw's constants of the filtered search, recorded with the figures.
CONSTANTS = ("EXACT_MAX_ROWS", "SCAN_ROW_COST", "HNSW_STEP_COST", "PROBE_MIN_PASSING", "MAX_FILTERED_EF")


# -- inputs -----------------------------------------------------------------------------------
def _store_rows(store_uri: str) -> tuple[np.ndarray, list[str]]:
    """The build's stored vectors and each product's category, in index row order."""
    from fashion_search.store import open_store, versions

    store = open_store(store_uri)
    pointer = versions.read_pointer(store)
    assert pointer is not None, f"nothing published in {store_uri}"
    manifest = versions.read_manifest(store, pointer.version)
    vectors = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy"))).astype(np.float32)
    categories = [json.loads(line).get("category") or "" for line in
                  versions.read_file(store, manifest, "products.jsonl").decode().splitlines() if line]
    return vectors, categories


def prepare(ctx: Context, results: dict[str, Any], size: int) -> dict[str, Any]:
    """Paths of the index, its real vectors and the queries (the search section's when they exist and match the
    build's store, else made here by the search section's functions), and the category code of each real row."""
    from bench import search

    real, categories = _store_rows(results["build"]["store"])
    ours = ctx.work / "filters"
    ours.mkdir(parents=True, exist_ok=True)
    saved = ctx.work / "search"
    index_file, real_file = saved / f"index-{size}.faiss", saved / "real.npy"
    queries_file, kinds_file = saved / "queries.npy", saved / "kinds.npy"
    reused = all(p.is_file() for p in (index_file, real_file, queries_file, kinds_file))
    if reused:
        saved_real = np.load(real_file, mmap_mode="r")
        reused = saved_real.shape == real.shape and np.array_equal(saved_real[:: max(1, len(real) // 64)],
                                                                   real[:: max(1, len(real) // 64)])
        if not reused:
            log("filters: the search section's vectors are not the build's store's: making new ones")
    if not reused:
        from bench.e2e import shopper_queries
        from fashion_search.index import HnswParams
        from fashion_search.model.embedder import Embedder

        sigma = results.get("search", {}).get("sigma") or \
            float(search.NOISE_FRACTION * search.nn_distance(real) / np.sqrt(real.shape[1]))
        index_file, real_file = ours / f"index-{size}.faiss", ours / "real.npy"
        queries_file, kinds_file = ours / "queries.npy", ours / "kinds.npy"
        count = ctx.size(1000, 200)
        rng = np.random.default_rng(3)
        text = Embedder(ctx.model).encode_texts(shopper_queries(count // 2, seed=11))
        photos = search.perturb(real[rng.choice(len(real), size=count - count // 2, replace=False)], sigma, rng)
        np.save(real_file, real)
        np.save(queries_file, np.concatenate([text, photos]).astype(np.float32))
        np.save(kinds_file, np.array(["text"] * len(text) + ["photo"] * len(photos)))
        log(f"filters: building an HNSW index of {size:,} vectors (as the search section does)")
        index_file.write_bytes(HnswParams().build(search.synthetic(real, size, sigma)).to_bytes())
    names = sorted(set(categories))
    codes = np.array([names.index(c) for c in categories], dtype=np.int32)
    np.save(ours / "categories.npy", codes)
    return {"index": str(index_file), "real": str(real_file), "queries": str(queries_file),
            "kinds": str(kinds_file), "categories": str(ours / "categories.npy"), "category_count": len(names),
            "reused_search_data": reused}


# -- masks ------------------------------------------------------------------------------------
def row_orders(kind: str, queries: np.ndarray, row_category: np.ndarray, centroids: np.ndarray,
               seed: int) -> Iterator[np.ndarray]:
    """Per query, every row in the order its filters take them: a filter of selectivity s keeps the first
    s × rows (so one query's filters are nested)."""
    rows = len(row_category)
    rng = np.random.default_rng(seed)
    for q in queries:
        if kind == "random":
            yield rng.permutation(rows).astype(np.int32)
            continue
        if kind == "far":
            rank = np.empty(len(centroids), dtype=np.int64)
            rank[np.argsort(centroids @ q, kind="stable")] = np.arange(len(centroids))
        else:
            rank = rng.permutation(len(centroids))
        # Category first; within it the products (sources) in a random order, so a category is cut by product.
        tie = rng.permutation(rows)
        yield np.lexsort((tie, rank[row_category])).astype(np.int32)


def category_centroids(vectors: np.ndarray, row_category: np.ndarray) -> np.ndarray:
    centroids = np.zeros((int(row_category.max()) + 1, vectors.shape[1]), dtype=np.float32)
    for code in np.unique(row_category):
        centroids[code] = vectors[row_category == code].mean(axis=0)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


# -- measurement ------------------------------------------------------------------------------
Patch = tuple[Any, str, Any]  # (module, class or object; attribute; value)
HUGE = 1e12  # a cost constant that rules its path out


@contextmanager
def patched(*patches: Patch) -> Iterator[None]:
    """Attributes of fashion_search.index.faiss_hnsw (module constants, the strategy function, methods of
    FaissHnswIndex) and of a Trace replaced for the block: the code under test looks them up at call time."""
    saved = [(target, name, getattr(target, name)) for target, name, _ in patches]
    try:
        for target, name, value in patches:
            setattr(target, name, value)
        yield
    finally:
        for target, name, value in reversed(saved):
            setattr(target, name, value)


class Trace:
    """What `FaissHnswIndex.search` did, call by call: `patches()` wraps its `_search` (one FAISS search: HNSW or
    a flat scan, with or without the filter's bitmap) and `_exact` (the numpy gather), in this process only.
    With `skip_probe` set, the graph's unfiltered probe is not run (an empty answer instead, which passes a
    `PROBE_MIN_PASSING` of 0): for the configurations that ignore it."""

    def __init__(self) -> None:
        from fashion_search.index import FaissHnswIndex

        self.calls: list[tuple[str, int | None, bool]] = []  # (path, efSearch, filtered)
        self.skip_probe = False
        self._search, self._exact = FaissHnswIndex._search, FaissHnswIndex._exact

    def patches(self) -> list[Patch]:
        import faiss

        from fashion_search.index import FaissHnswIndex

        trace, search, exact = self, self._search, self._exact

        def traced_search(index: Any, faiss_index: Any, queries: np.ndarray, k: int, ef: int | None,
                          bits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            graph = isinstance(faiss_index, faiss.IndexHNSW)
            trace.calls.append(("hnsw" if graph else "flat", ef if graph else None, bits is not None))
            if trace.skip_probe and graph and bits is None:
                return np.zeros((len(queries), k), dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64)
            return search(index, faiss_index, queries, k, ef, bits)

        def traced_exact(index: Any, queries: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            trace.calls.append(("exact", None, True))
            return exact(index, queries, k, rows)

        return [(FaissHnswIndex, "_search", traced_search), (FaissHnswIndex, "_exact", traced_exact)]

    def take(self) -> tuple[str, int | None]:
        """(the path of the search just made: "exact", "scan", "hnsw" or "probe→scan"; the efSearch of its filtered
        graph search), and a clean slate for the next."""
        calls, self.calls = self.calls, []
        path, ef, _ = calls[-1]
        if path == "flat":
            return ("probe→scan" if any(p == "hnsw" for p, _, _ in calls[:-1]) else "scan"), None
        return path, ef


@dataclass(frozen=True)
class Config:
    name: str  # "shipped", "scan", "graph" or "graph_fixed"
    ef: int | None  # the fixed efSearch of "graph_fixed"
    patches: list[Patch]


def configs(efs: tuple[int, ...], trace: Trace) -> list[Config]:
    """Every configuration measured at every selectivity (module docstring)."""
    from fashion_search.index import faiss_hnsw

    traced = trace.patches()
    no_probe = [(faiss_hnsw, "PROBE_MIN_PASSING", 0), (trace, "skip_probe", True)]
    out = [
        Config("shipped", None, traced),
        Config("scan", None, [*traced, (faiss_hnsw, "EXACT_MAX_ROWS", 0), (faiss_hnsw, "HNSW_STEP_COST", HUGE)]),
        Config("graph", None, [*traced, (faiss_hnsw, "EXACT_MAX_ROWS", 0), (faiss_hnsw, "SCAN_ROW_COST", HUGE),
                               *no_probe]),
    ]
    for ef in efs:
        def fixed(allowed: int, total: int, k: int, _ef: int, ef: int = ef) -> tuple[str, int]:
            return "hnsw", max(ef, k)

        out.append(Config("graph_fixed", ef, [*traced, (faiss_hnsw, "filtered_strategy", fixed), *no_probe]))
    return out


def _recall(scores: np.ndarray, rows: np.ndarray, mask: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the exact filtered top min(k, allowed) among the first k results (valid, allowed rows scoring at
    least the exact k-th's)."""
    want = min(k, len(truth))
    if want == 0:
        return 1.0
    rows, scores = rows[:k], scores[:k]
    valid = rows >= 0
    valid[valid] &= mask[rows[valid]]
    return float(((scores >= truth[want - 1] - 1e-5) & valid).sum() / want)


def _timed(index: Any, query: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    started = time.perf_counter()
    scores, rows = index.search(query[None, :], k, mask)
    return scores[0], rows[0], (time.perf_counter() - started) * 1000.0


def measure(index: Any, vectors: np.ndarray, row_category: np.ndarray, queries: np.ndarray, kinds: np.ndarray,
            selectivities: tuple[float, ...] = SELECTIVITIES, efs: tuple[int, ...] = EF_SWEEP,
            masks: tuple[str, ...] = tuple(MASKS), warmup: int = 3,
            progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every (mask kind, selectivity, config) over `queries`, one query at a time; `vectors` are the index's
    (the exact answers), `row_category` each row's category code."""
    from fashion_search.index import faiss_hnsw
    from fashion_search.serve.query import POOL

    total = len(vectors)
    k = min(POOL, total)
    ef = max(k, index.ef_search or k)
    scores_all = vectors @ queries.T  # [rows, queries]: the exact answers of every filter
    exact_top = -np.sort(-scores_all, axis=0)[:k].T
    times, rec10, recpool = [], [], []
    for i in range(-warmup, len(queries)):
        s, r, t = _timed(index, queries[max(i, 0)], k, None)
        if i >= 0:
            every = np.ones(total, dtype=bool)
            times.append(t)
            rec10.append(_recall(s, r, every, exact_top[i], RECALL_AT))
            recpool.append(_recall(s, r, every, exact_top[i], k))
    unfiltered = {**percentiles(times), "ef_search": index.ef_search, "recall@10": float(np.mean(rec10)),
                  "recall@pool": float(np.mean(recpool))}
    progress(f"unfiltered: p50 {unfiltered['p50']:.2f} ms, recall@10 {unfiltered['recall@10']:.4f}")
    centroids = category_centroids(vectors, row_category)
    trace = Trace()
    measured = configs(efs, trace)
    rows_out = []
    for kind_index, kind in enumerate(masks):
        orders = list(row_orders(kind, queries, row_category, centroids, seed=100 + kind_index))
        for selectivity in selectivities:
            allowed = max(1, round(selectivity * total))
            query_masks, truths = [], []
            for j, order in enumerate(orders):
                keep = order[:allowed]
                mask = np.zeros(total, dtype=bool)
                mask[keep] = True
                query_masks.append(mask)
                truths.append(-np.sort(-scores_all[keep, j])[:k])
            picks = []  # what filtered_strategy says under each configuration
            for config in measured:
                with patched(*config.patches):
                    picks.append(faiss_hnsw.filtered_strategy(allowed, total, k, ef))
            for i in range(warmup):
                for config in measured:
                    with patched(*config.patches):
                        _timed(index, queries[i % len(queries)], k, query_masks[i % len(queries)])
            trace.calls.clear()
            # Interleaved: each query through every configuration, in a new random order, so that other work on
            # the machine, and the caches a wide HNSW search leaves cold for the next one, weigh on all alike.
            found: list[list[tuple[np.ndarray, np.ndarray, float, str]]] = [[] for _ in measured]
            order = np.random.default_rng(len(rows_out))
            for j in range(len(queries)):
                for c in order.permutation(len(measured)):
                    with patched(*measured[c].patches):
                        s, r, t = _timed(index, queries[j], k, query_masks[j])
                    found[c].append((s, r, t, trace.take()[0]))
            passed = np.array([path == "hnsw" for *_, path in found[0]])  # the searches the shipped probe let through
            for c, config in enumerate(measured):
                r10 = np.array([_recall(s, r, query_masks[j], truths[j], RECALL_AT)
                                for j, (s, r, _, _) in enumerate(found[c])])
                rp = np.array([_recall(s, r, query_masks[j], truths[j], k) for j, (s, r, _, _) in enumerate(found[c])])
                strategy, strategy_ef = picks[c]
                rows_out.append({
                    "mask": kind, "selectivity": selectivity, "allowed": allowed, "config": config.name,
                    "strategy": strategy, "ef_search": strategy_ef if strategy == "hnsw" else None,
                    "decisions": dict(Counter(path for *_, path in found[c])),
                    **percentiles([t for _, _, t, _ in found[c]]), "recall@10": float(r10.mean()),
                    "min_recall@10": float(r10.min()), "recall@pool": float(rp.mean()),
                    "recall@10_probe_passed": float(r10[passed].mean()) if passed.any() else None,
                    **{f"recall@10_{q}": float(r10[kinds == q].mean()) for q in np.unique(kinds)}})
            shipped = next(r for r in rows_out[::-1] if r["config"] == "shipped")
            progress(f"{MASKS[kind]}, {selectivity:.2%} ({allowed:,} rows): shipped {shipped['strategy']}"
                     f"{'' if shipped['ef_search'] is None else ' ef ' + str(shipped['ef_search'])} "
                     f"{shipped['decisions']}: recall@10 {shipped['recall@10']:.4f}, p50 {shipped['p50']:.2f} ms")
    return {"size": total, "dim": vectors.shape[1], "k": k, "queries": len(queries),
            "query_kinds": {str(q): int((kinds == q).sum()) for q in np.unique(kinds)},
            "constants": {name: getattr(faiss_hnsw, name) for name in CONSTANTS} | {"ef_search": index.ef_search},
            "unfiltered": unfiltered, "rows": rows_out, "efs": list(efs), "selectivities": list(selectivities),
            "masks": list(masks)}


def _child(args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from fashion_search.index import FaissHnswIndex

    faiss.omp_set_num_threads(1)
    index = FaissHnswIndex.from_bytes(Path(args.index).read_bytes())
    vectors = index.vectors(np.arange(index.ntotal))
    real = np.load(args.real, mmap_mode="r")
    head = min(len(real), index.ntotal)
    sample = np.linspace(0, head - 1, 64).astype(np.int64)
    if not np.array_equal(vectors[sample], real[sample]):
        raise RuntimeError(f"{args.index}: its first rows are not {args.real}'s vectors (rows i and i mod n share "
                           "a source only then)")
    row_category = np.load(args.categories)[np.arange(index.ntotal) % len(real)]
    queries, kinds = np.load(args.queries), np.load(args.kinds)
    rng = np.random.default_rng(7)
    pick = np.concatenate([rng.choice(np.flatnonzero(kinds == kind), size=args.count // 2, replace=False)
                           for kind in ("text", "photo")])
    efs = tuple(int(e) for e in args.efs.split(","))
    selectivities = tuple(float(s) for s in args.selectivities.split(","))
    return measure(index, vectors, row_category, np.ascontiguousarray(queries[pick]), kinds[pick], selectivities,
                   efs, progress=lambda m: log(f"filters: {m}"))


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    size = ctx.size(100_000, 10_000)
    inputs = prepare(ctx, results, size)
    efs = QUICK_EF_SWEEP if ctx.quick else EF_SWEEP
    log(f"filters: {size:,} vectors, fresh process, 1 thread "
        f"({'the search section' if inputs['reused_search_data'] else 'made here'}: {inputs['index']})")
    measured = run_module("bench.filters", [
        "--child", "--index", inputs["index"], "--real", inputs["real"], "--categories", inputs["categories"],
        "--queries", inputs["queries"], "--kinds", inputs["kinds"], "--count", str(ctx.size(200, 40)),
        "--efs", ",".join(map(str, efs)), "--selectivities", ",".join(map(repr, SELECTIVITIES))], env=THREADS_ENV)
    return {**measured, "inputs": inputs, "analysis": analyse(measured)}


# -- analysis ---------------------------------------------------------------------------------
STRATEGIES = {  # the whole-strategy configurations, compared at every selectivity
    "shipped": "shipped (exact, scan, or probe then graph)",
    "scan": "scan everything (FAISS flat scan with the bitmap)",
    "graph": "graph without the probe (HNSW with the bitmap at the widened efSearch)",
}


def _rows(result: dict[str, Any], config: str, **where: Any) -> list[dict[str, Any]]:
    return [r for r in result["rows"] if r["config"] == config and all(r[k] == v for k, v in where.items())]


def _worst(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst over the kinds of filter: lowest recall@10 (and its kind), highest p50 and p95."""
    low = min(rows, key=lambda r: r["recall@10"])
    return {"recall": low["recall@10"], "mask": low["mask"], "p50": max(r["p50"] for r in rows),
            "p95": max(r["p95"] for r in rows), "recall_pool": min(r["recall@pool"] for r in rows)}


def fell_back(decisions: dict[str, int]) -> float | None:
    """Share of the probed searches (those bound for the graph) that the probe sent to the flat scan."""
    probed = decisions.get("probe→scan", 0) + decisions.get("hnsw", 0)
    return decisions.get("probe→scan", 0) / probed if probed else None


def analyse(result: dict[str, Any], target: float = TARGET_RECALL) -> dict[str, Any]:
    """Per selectivity: the shipped path and each strategy's worst recall and latency over the kinds of filter,
    the share of probed searches sent to the scan, the lowest fixed efSearch reaching the target without the
    probe (over every search, and over the searches the shipped probe lets through); per strategy: whether it
    reaches the target everywhere, its mean and slowest p50."""
    per = []
    for s in result["selectivities"]:
        shipped = _rows(result, "shipped", selectivity=s)
        row: dict[str, Any] = {"selectivity": s, "allowed": shipped[0]["allowed"], "strategy": shipped[0]["strategy"],
                               "ef_search": shipped[0]["ef_search"],
                               "fell_back": {r["mask"]: fell_back(r["decisions"]) for r in shipped},
                               **{name: _worst(_rows(result, name, selectivity=s)) for name in STRATEGIES}}
        graph = _rows(result, "graph", selectivity=s)
        row["graph"] |= {"strategy": graph[0]["strategy"], "ef_search": graph[0]["ef_search"],
                         "by_mask": {r["mask"]: r["recall@10"] for r in graph}}
        for key, field in (("fixed_needed", "recall@10"), ("fixed_needed_passed", "recall@10_probe_passed")):
            row[key] = None
            for ef in result["efs"]:
                at = [r for r in _rows(result, "graph_fixed", selectivity=s, ef_search=ef) if r[field] is not None]
                if at and all(r[field] >= target for r in at):
                    row[key] = {"ef_search": ef, "p50": max(r["p50"] for r in at)}
                    break
        per.append(row)
    strategies = {name: {"met": all(p[name]["recall"] >= target for p in per),
                         "worst_recall": min(p[name]["recall"] for p in per),
                         "worst_recall_pool": min(p[name]["recall_pool"] for p in per),
                         "slowest_p50": max(p[name]["p50"] for p in per),
                         "mean_p50": float(np.mean([r["p50"] for r in _rows(result, name)]))} for name in STRATEGIES}
    return {"target": target, "per_selectivity": per, "all_met": strategies["shipped"]["met"],
            "strategies": strategies}


# -- report -----------------------------------------------------------------------------------
def _strategy(row: dict[str, Any]) -> str:
    return {"exact": "exact", "scan": "scan"}.get(row["strategy"], f"probe, then HNSW ef {row['ef_search']}")


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def plot(result: dict[str, Any], ctx: Context) -> Path:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    sel = result["selectivities"]
    xs = [100 * s for s in sel]
    for kind in result["masks"]:
        line = left.plot(xs, [_rows(result, "shipped", mask=kind, selectivity=s)[0]["recall@10"] for s in sel],
                         marker="o", ms=3, label=f"shipped, {MASKS[kind]}")[0]
        left.plot(xs, [_rows(result, "graph", mask=kind, selectivity=s)[0]["recall@10"] for s in sel], ls="--",
                  color=line.get_color(), lw=0.9, marker="x", ms=3, label=f"graph without probe, {MASKS[kind]}")
    left.axhline(TARGET_RECALL, color="grey", lw=0.8, ls=":")
    left.set_ylabel("recall@10 vs exact filtered search")
    left.set_ylim(0.0, 1.03)  # room below the curves for the legend
    for config, style in (("shipped", "-"), ("scan", ":"), ("graph", "--")):
        right.plot(xs, [max(r["p50"] for r in _rows(result, config, selectivity=s)) for s in sel], marker="o", ms=3,
                   ls=style, label=STRATEGIES[config].split(" (")[0])
    right.axhline(result["unfiltered"]["p50"], color="grey", lw=0.8, ls=":", label="unfiltered HNSW")
    right.set_ylabel("p50 ms per query (worst kind of filter)")
    right.set_yscale("log")
    for ax, where in ((left, "lower right"), (right, "best")):
        ax.set_xscale("log")
        ax.set_xlabel("selectivity: % of rows the filter keeps (log)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc=where)
    fig.suptitle(f"Filtered search over {result['size']:,} vectors, {result['k']} candidates a query, 1 thread",
                 fontsize=9)
    path = plot_path(ctx, "filters.png")
    save_figure(fig, path)
    return path


def render(result: dict[str, Any], ctx: Context) -> str:
    consts, base, analysis = result["constants"], result["unfiltered"], analyse(result)
    kinds = ", ".join(f"{n} {q}" for q, n in result["query_kinds"].items())
    order = " / ".join(MASKS[m] for m in result["masks"])
    parts = [
        f"{result['size']:,} vectors ({result['dim']}-d, HNSW M=32, the search section's index"
        f"{'' if result['inputs']['reused_search_data'] else ', built here the same way'}); {result['queries']} "
        f"queries ({kinds}), each alone on 1 thread (FAISS and BLAS) asking for the service's {result['k']} "
        "candidates, with a new filter per query. `FaissHnswIndex.search` as shipped "
        "(`faiss_hnsw.filtered_strategy`): a filter keeping at most `EXACT_MAX_ROWS` = "
        f"{consts['EXACT_MAX_ROWS']:,} rows is gathered and scored exactly (**exact**); a wider one is scanned "
        "by FAISS's flat index with the filter as an `IDSelectorBitmap` (**scan**) when rows kept × "
        f"`SCAN_ROW_COST` ({consts['SCAN_ROW_COST']:g} µs) ≤ widened efSearch × `HNSW_STEP_COST` "
        f"({consts['HNSW_STEP_COST']:g} µs); else a probe, the unfiltered HNSW search (stored efSearch "
        f"{consts['ef_search']}), then, when at least `PROBE_MIN_PASSING` = {consts['PROBE_MIN_PASSING']} of its "
        f"results pass, HNSW with the bitmap at the efSearch widened by the selectivity (at most "
        f"`MAX_FILTERED_EF` = {consts['MAX_FILTERED_EF']:,}), or else the scan (**probe→scan**). Filters: "
        "**random rows**; **random categories** (whole article types of the row's source product, "
        f"{result['inputs']['category_count']} in all, in a random order, the last one cut by product: a category "
        "filter unrelated to the query); **far categories** (the same, the categories least like the query first: "
        "the shopper asks for what the filter excludes, the hardest case for a graph search). Recall@10 = share of "
        "the exact filtered top 10 among the first 10 returned; recall@pool the same over all "
        f"{result['k']}. Times are `FaissHnswIndex.search` (mask counting and bit packing included, making the "
        "mask not).",
        f"Baseline, same process and queries: unfiltered HNSW (efSearch {base['ef_search']}) p50 "
        f"**{ms(base['p50'])} ms**, p95 {ms(base['p95'])} ms, recall@10 {base['recall@10']:.4f} against exact "
        "unfiltered search.",
        acceptance(result),
        image_link(ctx, plot(result, ctx), "filtered recall and latency by selectivity"),
    ]
    headers = ["selectivity", "rows kept", "path picked", *(f"{MASKS[m]}: recall@10" for m in result["masks"]),
               f"p50 ms ({order})", "p95 ms", "vs unfiltered p50", "recall@pool", "probed, sent to the scan"]
    rows = []
    for p in analysis["per_selectivity"]:
        shipped = {r["mask"]: r for r in _rows(result, "shipped", selectivity=p["selectivity"])}
        w = p["shipped"]
        rows.append([f"{p['selectivity']:.2%}", f"{p['allowed']:,}", _strategy(p),
                     *(_recall_cell(shipped[m]["recall@10"]) for m in result["masks"]),
                     " / ".join(ms(shipped[m]["p50"]) for m in result["masks"]), ms(w["p95"]),
                     f"{w['p50'] / base['p50']:.1f}×", f"{w['recall_pool']:.4f}",
                     " / ".join(_share(p["fell_back"][m]) for m in result["masks"])])
    parts += [f"**As shipped** (bold: below the target {TARGET_RECALL}; p95, the ratio and recall@pool: the worst "
              f"kind of filter; \"probed, sent to the scan\": the share of the searches bound for the graph whose "
              f"probe found fewer than {consts['PROBE_MIN_PASSING']} of its results passing, {order}, – where the "
              "graph is not used)",
              table(headers, rows, right=tuple(range(1, len(headers))))]
    headers = ["selectivity", "scan everything: p50 ms", f"scan cost model: rows × {consts['SCAN_ROW_COST']:g} µs",
               "graph without probe: efSearch", f"graph without probe: recall@10 ({order})",
               "graph without probe: p50 ms", f"graph cost model: ef × {consts['HNSW_STEP_COST']:g} µs",
               "shipped p50 ms"]
    rows = []
    for p in analysis["per_selectivity"]:
        g = p["graph"]
        graph_ef = "exact (≤ k rows)" if g["strategy"] == "exact" else g["ef_search"]
        model = "–" if g["strategy"] == "exact" else ms(g["ef_search"] * consts["HNSW_STEP_COST"] / 1000)
        rows.append([f"{p['selectivity']:.2%}", ms(p["scan"]["p50"]), ms(p["allowed"] * consts["SCAN_ROW_COST"] / 1000),
                     graph_ef, " / ".join(_recall_cell(g["by_mask"][m], 3) for m in result["masks"]), ms(g["p50"]),
                     model, ms(p["shipped"]["p50"])])
    parts += ["**Alternatives**, same masks and queries, the module's constants monkeypatched in the bench (`layers/` "
              "unchanged): **scan everything** (`EXACT_MAX_ROWS` = 0, `HNSW_STEP_COST` huge: every filter keeping "
              f"more than {result['k']} rows by the flat scan, the exact answers' cost) and the **graph without the "
              "probe** (`EXACT_MAX_ROWS` = 0, `SCAN_ROW_COST` huge, `PROBE_MIN_PASSING` = 0, the probe's search "
              "skipped: HNSW with the bitmap at the widened efSearch whatever the filter keeps near the query, as "
              "the previous code did). p50 ms: the worst kind of filter; the cost models are what "
              "`filtered_strategy` weighs (in ms), against which the measured p50s can be read.",
              table(headers, rows, right=tuple(range(1, len(headers))))]
    headers = ["selectivity", *(f"ef {ef}" for ef in result["efs"]), "shipped HNSW ef"]
    rows = []
    for p in analysis["per_selectivity"]:
        cells = [f"{p['selectivity']:.2%}"]
        for ef in result["efs"]:
            at = _rows(result, "graph_fixed", selectivity=p["selectivity"], ef_search=ef)
            passed = [r["recall@10_probe_passed"] for r in at if r["recall@10_probe_passed"] is not None]
            cells.append(f"{min(r['recall@10'] for r in at):.3f} / "
                         + (f"{min(passed):.3f}" if passed else "–") + f" ({ms(max(r['p50'] for r in at))})")
        rows.append([*cells, p["ef_search"] if p["strategy"] == "hnsw" else "–"])
    parts += ["**The graph without the probe at a fixed efSearch** (`filtered_strategy` patched): worst recall@10 "
              "over the kinds of filter on every search / on the searches the shipped probe lets through to the "
              "graph (– where the shipped code does not use it), and (worst p50 ms). It says whether a wider beam "
              "alone could replace the probe, and which beam the searches the probe passes need.",
              table(headers, rows, right=tuple(range(1, len(headers))))]
    parts.append(verdict(result))
    return "\n\n".join(parts)


def _recall_cell(value: float, digits: int = 4) -> str:
    return f"**{value:.{digits}f}**" if value < TARGET_RECALL else f"{value:.{digits}f}"


def acceptance(result: dict[str, Any]) -> str:
    """The acceptance line, plainly: recall@10 >= the target at every selectivity under every kind of filter."""
    analysis = analyse(result)
    target, shipped = analysis["target"], _rows(result, "shipped")
    span = ", ".join(f"{s:.2%}" for s in result["selectivities"])
    kinds = ", ".join(MASKS[m] for m in result["masks"])
    if analysis["all_met"]:
        worst = min(shipped, key=lambda r: r["recall@10"])
        return (f"**Acceptance: recall@10 ≥ {target} at every selectivity ({span}) under every kind of filter "
                f"({kinds}): holds.** Worst {worst['recall@10']:.4f} ({worst['selectivity']:.2%}, "
                f"{MASKS[worst['mask']]}).")
    misses = "; ".join(f"{r['selectivity']:.2%} under {MASKS[r['mask']]}: {r['recall@10']:.4f}"
                       for r in shipped if r["recall@10"] < target)
    return (f"**Acceptance: recall@10 ≥ {target} at every selectivity ({span}) under every kind of filter "
            f"({kinds}): does not hold.** Below it: {misses}.")


def verdict(result: dict[str, Any]) -> str:
    analysis, base = analyse(result), result["unfiltered"]
    per, target = analysis["per_selectivity"], analysis["target"]
    lines = []
    rows = [[STRATEGIES[n], "yes" if s["met"] else "no", f"{s['worst_recall']:.4f}", f"{s['worst_recall_pool']:.3f}",
             ms(s["mean_p50"]), ms(s["slowest_p50"])] for n, s in analysis["strategies"].items()]
    lines.append(table(["strategy", f"recall@10 ≥ {target} everywhere", "worst recall@10", "worst recall@pool",
                        "p50 ms, mean over selectivities and kinds", "slowest p50 ms"], rows, right=(2, 3, 4, 5)))
    shipped, scan = analysis["strategies"]["shipped"], analysis["strategies"]["scan"]
    lines.append(f"\nShipped: p50 {ms(shipped['mean_p50'])} ms on average over the filters measured, "
                 f"{ms(shipped['slowest_p50'])} ms at the slowest ({shipped['slowest_p50'] / base['p50']:.0f}× the "
                 f"unfiltered search); scanning everything: {ms(scan['mean_p50'])} ms on average, "
                 f"{ms(scan['slowest_p50'])} ms at the slowest.")
    for p in per:
        if p["strategy"] != "hnsw":
            continue
        need, passed = p["fixed_needed"], p["fixed_needed_passed"]
        through = ", ".join(f"{MASKS[r['mask']]} {r['decisions'].get('hnsw', 0)} of {sum(r['decisions'].values())}"
                            + ("" if r["recall@10_probe_passed"] is None else
                               f" (recall@10 {r['recall@10_probe_passed']:.4f})")
                            for r in _rows(result, "shipped", selectivity=p["selectivity"]))
        lines.append(
            f"- {p['selectivity']:.2%} ({p['allowed']:,} rows), probe then HNSW ef {p['ef_search']}: the probe lets "
            f"through {through}. Without the probe, the widened beam gives recall@10 {p['graph']['recall']:.4f} "
            f"under {MASKS[p['graph']['mask']]}; "
            + (f"a fixed efSearch reaches {target} under every kind of filter from {need['ef_search']} "
               f"({ms(need['p50'])} ms)" if need else f"no fixed efSearch up to {result['efs'][-1]} reaches "
               f"{target} under every kind of filter")
            + (f"; on the searches the probe lets through, ef {passed['ef_search']} is enough "
               f"({ms(passed['p50'])} ms)" if passed else
               f"; on the searches the probe lets through, no fixed efSearch up to {result['efs'][-1]} is enough")
            + ".")
    return "\n".join(lines)


def headline(result: dict[str, Any]) -> list[str]:
    """The report's headline row: the slowest selectivity as shipped, and the worst recall."""
    analysis, base = analyse(result), result["unfiltered"]
    shipped = analysis["strategies"]["shipped"]
    worst = min(analysis["per_selectivity"], key=lambda p: p["shipped"]["recall"])
    p95 = max(p["shipped"]["p95"] for p in analysis["per_selectivity"])
    span = f"{min(result['selectivities']):.2%}–{max(result['selectivities']):.0%}"
    met = "**met**" if analysis["all_met"] else "**missed**"
    return [f"filtered search, {result['size']:,} vectors, selectivity {span}, {len(result['masks'])} kinds of filter "
            "(slowest, 1 thread)", f"{ms(shipped['slowest_p50'])} ms", f"{ms(p95)} ms",
            f"{shipped['slowest_p50'] / base['p50']:.1f}× the unfiltered time; recall@10 ≥ {TARGET_RECALL} {met} "
            f"(worst {worst['shipped']['recall']:.4f}: {worst['selectivity']:.2%}, {MASKS[worst['shipped']['mask']]})",
            f"unfiltered HNSW, same queries ({ms(base['p50'])} ms)"]


def main() -> None:
    parser = argparse.ArgumentParser(description="the filtered-search measurement, in a fresh one-thread process")
    parser.add_argument("--child", action="store_true")
    for name in ("index", "real", "categories", "queries", "kinds", "efs", "selectivities"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    args.result.write_text(json.dumps(_child(args)))


if __name__ == "__main__":
    main()
