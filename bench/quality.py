"""Quality: title → image Recall@1/@10 and attribute-query P@10 on the starter model's held-out
split (model_export.evaluate), fp32 vs int8, and HNSW vs exact search over the same vectors.

The gallery vectors are the build section's (the runtime pipeline's own embeddings, fp32 image
tower); HNSW is that build's index.faiss. The int8 image tower is the encoders section's static
int8 bundle, its gallery encoded here (the dynamic int8 one is slower than fp32 on this CNN, so
no candidate, and not evaluated). The starter's text tower ships only as int8: its fp32 figures
come from the training run (bundle.json `info.quality_fp32_text`) and are labelled so.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import Context, log, table
from bench.encoders import starter_image_int8
from fashion_search import vector_index, versions
from fashion_search.bundle import read_bundle
from fashion_search.embedder import Embedder
from fashion_search.store import open_store

MAX_RECALL_LOSS = 0.01
METRICS = {  # label -> (report key, metric)
    "title → image R@1 (full gallery)": ("title_full", "R@1"),
    "title → image R@10 (full gallery)": ("title_full", "R@10"),
    "title → image R@1 (held-out gallery)": ("title_validation", "R@1"),
    "title → image R@10 (held-out gallery)": ("title_validation", "R@10"),
    "attribute P@10 (full gallery)": ("attribute_full", "P@10"),
    "attribute hits@10/min(10, relevant) (held-out gallery)": ("attribute_validation", "P@10_capped"),
}
# The same measures under the names the starter's export records (bundle.json info).
_TRAINING_KEYS = {"title → image R@1 (full gallery)": "title_R@1_full",
                  "title → image R@10 (full gallery)": "title_R@10_full",
                  "title → image R@1 (held-out gallery)": "title_R@1_validation",
                  "title → image R@10 (held-out gallery)": "title_R@10_validation",
                  "attribute P@10 (full gallery)": "attribute_P@10_full",
                  "attribute hits@10/min(10, relevant) (held-out gallery)": "attribute_P@10_validation_capped"}


def metrics(report: dict[str, Any]) -> dict[str, float]:
    return {label: float(report[key][metric]) for label, (key, metric) in METRICS.items()}


def hnsw_search(index: Any, to_feed: np.ndarray, ef: int | None) -> Callable[[np.ndarray, int], np.ndarray]:
    """evaluate's SearchFn over our index: index rows mapped back to feed order."""

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        _, rows = vector_index.search(index, queries, k, ef_search=ef)
        return to_feed[rows]

    return search


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    from model_export.evaluate import encode_gallery, evaluate_vectors
    from model_export.starter.data import VALIDATION_RULE, load_products, split_indices

    store = open_store(results["build"]["store"])
    pointer = versions.read_pointer(store)
    assert pointer is not None
    manifest = versions.read_manifest(store, pointer.version)
    embeddings = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy")))
    rows = [json.loads(line)["product_id"] for line in
            versions.read_file(store, manifest, "products.jsonl").decode().splitlines() if line]
    row_of = {pid: row for row, pid in enumerate(rows)}
    # The build indexed (at most) the feed's first N products.
    products = [p for p in load_products(ctx.feed)[: results["build"]["products"]] if p.id in row_of]
    order = np.array([row_of[p.id] for p in products])
    to_feed = np.empty(len(order), dtype=np.int64)
    to_feed[order] = np.arange(len(order))
    gallery = embeddings[order]
    index = vector_index.deserialize(versions.read_file(store, manifest, "index.faiss"))
    stored_ef = index.hnsw.efSearch
    shipped = Embedder(ctx.model, batch_size=64)

    log("quality: shipped bundle, exact search")
    variants = {"exact": metrics(evaluate_vectors(products, gallery, shipped.encode_texts))}
    log(f"quality: shipped bundle, HNSW at efSearch {stored_ef} (the index's default)")
    variants[f"hnsw_ef{stored_ef}"] = metrics(evaluate_vectors(products, gallery, shipped.encode_texts,
                                                               search=hnsw_search(index, to_feed, None)))
    picked = results.get("search", {}).get("pick", {}).get("chosen")
    if picked and picked != stored_ef:
        variants[f"hnsw_ef{picked}"] = metrics(evaluate_vectors(products, gallery, shipped.encode_texts,
                                                                search=hnsw_search(index, to_feed, picked)))
    log(f"quality: image tower static int8: encoding {len(products):,} photos")
    int8 = Embedder(starter_image_int8(ctx.model, ctx.work, "static", ctx.feed), batch_size=64)
    variants["image_int8"] = metrics(evaluate_vectors(products, encode_gallery(int8, products, log=False),
                                                      int8.encode_texts))
    info = read_bundle(ctx.model).info
    recorded = info.get("quality_fp32_text") if isinstance(info.get("quality_fp32_text"), dict) else None
    training = ({label: float(recorded[key]) for label, key in _TRAINING_KEYS.items() if key in recorded}
                if recorded else None)
    shipped_recorded = info.get("quality") if isinstance(info.get("quality"), dict) else None
    return {"variants": variants, "stored_ef": stored_ef, "picked_ef": picked, "products": len(products),
            "validation": len(split_indices(products)[1]), "rule": VALIDATION_RULE,
            "text_fp32_recorded": training,
            "text_int8_recorded": ({label: float(shipped_recorded[key]) for label, key in _TRAINING_KEYS.items()
                                    if key in shipped_recorded} if shipped_recorded else None)}


def checks(result: dict[str, Any]) -> list[tuple[str, float, bool]]:
    """(variant, worst metric change vs exact, within MAX_RECALL_LOSS) for every HNSW variant."""
    exact = result["variants"]["exact"]
    out = []
    for name, values in result["variants"].items():
        if name.startswith("hnsw"):
            worst = min(values[m] - exact[m] for m in exact)
            out.append((name, worst, worst >= -MAX_RECALL_LOSS))
    return out


def render(result: dict[str, Any], ctx: Context) -> str:
    v = result["variants"]
    exact = v["exact"]
    names = [n for n in v if n.startswith("hnsw")]
    headers = ["measure", "exact (shipped: text int8, image fp32)",
               *(f"HNSW efSearch {n.removeprefix('hnsw_ef')}" for n in names), "image tower static int8, exact"]
    rows = []
    for label in METRICS:
        rows.append([label, f"{exact[label]:.4f}", *(f"{v[n][label]:.4f} ({v[n][label] - exact[label]:+.4f})"
                                                     for n in names),
                     f"{v['image_int8'][label]:.4f} ({v['image_int8'][label] - exact[label]:+.4f})"])
    verdicts = "; ".join(f"efSearch {n.removeprefix('hnsw_ef')}: worst change {worst:+.4f} → "
                         + ("**passes**" if ok else "**fails**") for n, worst, ok in checks(result))
    parts = [
        f"`model_export.evaluate` over the {result['products']:,} indexed products (held-out split: "
        f"{result['validation']:,} products; {result['rule']}). Full gallery = all products; held-out gallery "
        "= the held-out products only (images the model never saw). Exact = brute-force inner product "
        "(the baseline); HNSW = the build's own index.faiss, queried through `vector_index.search`; the "
        "held-out-gallery columns always use exact search (evaluate's design), so HNSW can only move the "
        "full-gallery rows. The last column swaps in the static int8 image tower (section 1) for the "
        "gallery (dynamic int8 is slower than fp32 on this CNN, so it is no candidate and is not evaluated). "
        "In parentheses: the change from exact.",
        table(headers, rows, right=range(1, len(headers))),
        f"Rule: the index may cost at most {MAX_RECALL_LOSS} of any measure against exact search — {verdicts}.",
    ]
    fp32, int8 = result["text_fp32_recorded"], result["text_int8_recorded"]
    if fp32 and int8:
        rows = [[label, f"{int8[label]:.4f}", f"{fp32[label]:.4f}", f"{int8[label] - fp32[label]:+.4f}"]
                for label in fp32 if label in int8]
        parts += ["Text tower fp32 vs int8 (shipped) — **recorded by the training run** (bundle.json "
                  "`info.quality`, `info.quality_fp32_text`), not re-measured here: the fp32 text tower is "
                  "not shipped.", table(["measure", "text int8 (shipped)", "text fp32", "int8 − fp32"], rows,
                                        right=(1, 2, 3))]
    else:
        parts.append("Text tower fp32 vs int8: the bundle records no fp32 figures, so there is nothing to compare.")
    return "\n\n".join(parts)
