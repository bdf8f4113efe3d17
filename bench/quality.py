"""Quality: title → image Recall@1/@10, attribute-query P@10 and photo → photo P@10 of the starter
model on two held-out splits (model_export.evaluate), HNSW vs exact search over the same vectors,
and the int8 image tower when the encoders section found one worth having.

The two splits, time split first: the **time split** (the newest 5% of ids, what a retailer adds
next week: the honest one) and the **hash split** (5% by id hash; it interleaves with training ids,
kept for comparison with earlier models). The gallery vectors are the build section's (the runtime
pipeline's own embeddings, shipped image tower); HNSW is that build's index.faiss. The int8 image
tower is the encoders section's static int8 bundle, its gallery encoded here, and only if the
encoders section kept it (made, and faster than the shipped image tower); otherwise the report says
why in one line. The starter's text tower ships only as int8: its fp32 figures come from the
training run (bundle.json `info.quality_fp32_text`, keyed like `evaluate.headline`) and are
labelled so.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import Context, log, table
from bench.encoders import starter_image_int8, weights_of
from fashion_search.index import FaissHnswIndex
from fashion_search.model.bundle import read_bundle
from fashion_search.model.embedder import Embedder
from fashion_search.store import open_store, versions

MAX_RECALL_LOSS = 0.01
SPLIT_NAMES = {"time_split": "Time split", "hash_split": "Hash split"}  # report order: the honest one first
CATALOG_NAMES = {"dummyjson": "DummyJSON", "fakestore": "FakeStore"}


def metrics(report: dict[str, Any]) -> dict[str, float]:
    """evaluate_vectors' report, flat: "time_split.title_full.R@10" -> value (evaluate.headline)."""
    from model_export.evaluate import headline

    return {key: float(value) for key, value in headline(report).items()}


def label(key: str) -> tuple[str, str]:
    """(split or catalog, measure) for a flat key: ("Time split", "title → image R@10 (full gallery)")."""
    from model_export.evaluate import LABELS

    head, _, measure = key.partition(".")
    if head in SPLIT_NAMES:
        return SPLIT_NAMES[head], LABELS.get(measure, measure)
    if head in CATALOG_NAMES:
        return CATALOG_NAMES[head], measure.replace("_", " ")
    return "–", key


def hnsw_search(index: Any, to_feed: np.ndarray, ef: int | None) -> Callable[[np.ndarray, int], np.ndarray]:
    """evaluate's SearchFn over our index: index rows mapped back to feed order."""

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        _, rows = index.search(queries, k, ef_search=ef)
        return to_feed[rows]

    return search


def _image_int8(ctx: Context, results: dict[str, Any]) -> tuple[Any, str]:
    """(the static int8 bundle, "") when the encoders section kept it, else (None, why not)."""
    decision = results.get("encoders", {}).get("image_int8", {}).get("static")
    if decision is None:
        return None, "the encoders section's results (which decide whether it is a candidate) are missing"
    if decision.get("failed"):
        return None, f"quantization failed ({decision['failed']})"
    if not decision["kept"]:
        return None, (f"not faster than the shipped image tower ({decision['p50']:.2f} vs "
                      f"{decision['shipped_p50']:.2f} ms at batch 1, 1 thread, section 1)")
    return starter_image_int8(ctx.model, ctx.work, "static", ctx.feed), ""


def _recorded(info: dict[str, Any], key: str) -> dict[str, float] | None:
    values = info.get(key)
    if not isinstance(values, dict):
        return None
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float)}


@dataclass(frozen=True)
class BuiltGallery:
    """The build section's index, in feed order: what the quality sections measure."""

    feed_products: int
    products: list[Any]  # model_export.starter.data.Product, the indexed ones in feed order
    vectors: np.ndarray  # their stored embeddings
    index: Any  # the build's FaissHnswIndex, rows in the index's order
    to_feed: np.ndarray  # index row -> position in `products`


def built_gallery(ctx: Context, results: dict[str, Any]) -> BuiltGallery:
    from model_export.starter.data import load_products

    store = open_store(results["build"]["store"])
    pointer = versions.read_pointer(store)
    assert pointer is not None
    manifest = versions.read_manifest(store, pointer.version)
    embeddings = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy")))
    rows = [json.loads(line)["product_id"] for line in
            versions.read_file(store, manifest, "products.jsonl").decode().splitlines() if line]
    row_of = {pid: row for row, pid in enumerate(rows)}
    # The build indexed (at most) the feed's first N products.
    feed = load_products(ctx.feed)
    products = [p for p in feed[: results["build"]["products"]] if p.id in row_of]
    order = np.array([row_of[p.id] for p in products])
    to_feed = np.empty(len(order), dtype=np.int64)
    to_feed[order] = np.arange(len(order))
    index = FaissHnswIndex.from_bytes(versions.read_file(store, manifest, "index.faiss"))
    return BuiltGallery(len(feed), products, embeddings[order], index, to_feed)


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    from model_export.evaluate import SPLITS, encode_gallery, evaluate_vectors

    built = built_gallery(ctx, results)
    products, gallery, index, to_feed = built.products, built.vectors, built.index, built.to_feed
    stored_ef = index.ef_search
    shipped = Embedder(ctx.model, batch_size=64)

    log("quality: shipped bundle, exact search")
    exact = evaluate_vectors(products, gallery, shipped.encode_texts)
    variants = {"exact": metrics(exact)}
    log(f"quality: shipped bundle, HNSW at efSearch {stored_ef} (the index's default)")
    variants[f"hnsw_ef{stored_ef}"] = metrics(evaluate_vectors(products, gallery, shipped.encode_texts,
                                                               search=hnsw_search(index, to_feed, None)))
    picked = results.get("search", {}).get("pick", {}).get("chosen")
    if picked and picked != stored_ef:
        variants[f"hnsw_ef{picked}"] = metrics(evaluate_vectors(products, gallery, shipped.encode_texts,
                                                                search=hnsw_search(index, to_feed, picked)))
    int8_bundle, int8_skipped = _image_int8(ctx, results)
    if int8_bundle is not None:
        log(f"quality: image tower static int8: encoding {len(products):,} photos")
        int8 = Embedder(int8_bundle, batch_size=64)
        variants["image_int8"] = metrics(evaluate_vectors(products, encode_gallery(int8, products, log=False),
                                                          int8.encode_texts))
    else:
        log(f"quality: image tower static int8 not evaluated: {int8_skipped}")
    info = read_bundle(ctx.model).info
    return {"variants": variants, "stored_ef": stored_ef, "picked_ef": picked, "products": len(products),
            "feed_products": built.feed_products,
            "splits": {name: {"rule": rule, "held_out": exact[name]["held_out"]} for name, rule in SPLITS.items()},
            "weights": {tower: weights_of(ctx.model / f"{tower}.onnx") for tower in ("text", "image")},
            "image_int8_skipped": int8_skipped,
            "text_fp32_recorded": _recorded(info, "quality_fp32_text"),
            "text_int8_recorded": _recorded(info, "quality")}


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def checks(result: dict[str, Any]) -> list[tuple[str, float, bool]]:
    """(variant, worst metric change vs exact, within MAX_RECALL_LOSS) for every HNSW variant."""
    exact = result["variants"]["exact"]
    out = []
    for name, values in result["variants"].items():
        if name.startswith("hnsw"):
            worst = min((values[m] - exact[m] for m in exact if m in values and _finite(values[m], exact[m])),
                        default=0.0)
            out.append((name, worst, worst >= -MAX_RECALL_LOSS))
    return out


def _cell(value: float, exact: float | None = None) -> str:
    if not math.isfinite(value):
        return "–"
    if exact is None or not math.isfinite(exact):
        return f"{value:.4f}"
    return f"{value:.4f} ({value - exact:+.4f})"


def render(result: dict[str, Any], ctx: Context) -> str:
    v = result["variants"]
    exact = v["exact"]
    names = [n for n in v if n.startswith("hnsw")]
    int8 = v.get("image_int8")
    weights = result.get("weights", {"text": "int8", "image": "fp32"})
    headers = ["measure", f"exact (shipped: text {weights['text']}, image {weights['image']})",
               *(f"HNSW efSearch {n.removeprefix('hnsw_ef')}" for n in names),
               *(["image tower static int8, exact"] if int8 else [])]
    splits = result["splits"]
    parts = [
        f"`model_export.evaluate` over the {result['products']:,} indexed products, on two held-out splits, "
        f"the honest one first. **Time split** ({splits['time_split']['held_out']:,} held-out products): "
        f"{splits['time_split']['rule']} — what a retailer adds next week. **Hash split** "
        f"({splits['hash_split']['held_out']:,} held-out products): {splits['hash_split']['rule']}; it "
        "interleaves with the ids the model trained on (near-twins of its products were trained on) and is "
        "kept for comparison with earlier models. Full gallery = all products; held-out gallery = the split's "
        "products only. Photo → photo: the share of each held-out photo's 10 nearest other products (full "
        "gallery) with its article type / colour. Exact = brute-force inner product (the baseline); HNSW = the "
        "build's own index.faiss, queried through `FaissHnswIndex.search`; the held-out-gallery rows always use "
        "exact search (evaluate's design), so HNSW can only move the full-gallery rows. "
        + (f"**Only {result['products']:,} of the feed's {result['feed_products']:,} products are indexed here**, "
           "and both splits are drawn from those, so their held-out products are not the ones the model was "
           "trained without: these figures test the plumbing, not the model. "
           if result["products"] < result.get("feed_products", result["products"]) else "")
        + ("The last column swaps in the static int8 image tower (section 1) for the gallery. " if int8 else "")
        + "In parentheses: the change from exact.",
    ]
    for split, title in SPLIT_NAMES.items():
        keys = [k for k in exact if k.startswith(f"{split}.")]
        rows = [[label(k)[1], _cell(exact[k]), *(_cell(v[n][k], exact[k]) for n in names),
                 *([_cell(int8[k], exact[k])] if int8 else [])] for k in keys]
        parts += [f"**{title}** ({splits[split]['held_out']:,} held-out products)",
                  table(headers, rows, right=range(1, len(headers)))]
    if not int8:
        parts.append(f"Image tower static int8: not evaluated for this bundle — {result['image_int8_skipped']}.")
    verdicts = "; ".join(f"efSearch {n.removeprefix('hnsw_ef')}: worst change {worst:+.4f} → "
                         + ("**passes**" if ok else "**fails**") for n, worst, ok in checks(result))
    parts.append(f"Rule: the index may cost at most {MAX_RECALL_LOSS} of any measure (either split) against "
                 f"exact search — {verdicts}.")
    fp32, int8_text = result["text_fp32_recorded"], result["text_int8_recorded"]
    shared = [k for k in (int8_text or {}) if k in (fp32 or {})]
    if shared:
        rows = [[*label(k), _cell(int8_text[k]), _cell(fp32[k]),
                 f"{int8_text[k] - fp32[k]:+.4f}" if _finite(int8_text[k], fp32[k]) else "–"] for k in shared]
        parts += ["Text tower fp32 vs int8 (shipped) — **recorded by the training run** over the whole feed "
                  "(bundle.json `info.quality`, `info.quality_fp32_text`), not re-measured here: the fp32 text "
                  "tower is not shipped. DummyJSON and FakeStore are catalogs the model never trained on.",
                  table(["split / catalog", "measure", "text int8 (shipped)", "text fp32", "int8 − fp32"], rows,
                        right=(2, 3, 4))]
    else:
        parts.append("Text tower fp32 vs int8: the bundle records no fp32 figures, so there is nothing to compare.")
    return "\n\n".join(parts)
