"""Retrieval quality of any model bundle, measured through the runtime Embedder.

On the fashion feed, for two held-out splits: the **time split** (data.TIME_SPLIT_RULE: the newest
5% by id, what a retailer adds next week; the honest one) and the older **hash split**
(data.VALIDATION_RULE: 5% by id hash, which interleaves with training ids, kept for comparison):

- title -> image Recall@1/@10: each held-out product's title must retrieve that product's image,
  over the full gallery (all products) and over the held-out gallery alone;
- attribute P@10: shopper queries built from the (gender, colour, article type) triples of the
  held-out products ("navy blue shirts for men"); relevant = same gender, colour and type.
  Over the full gallery, queries with at least 10 relevant products; over the held-out gallery,
  hits@10 / min(10, #relevant) over all triples (few triples have 10 held-out products);
- photo -> photo: the share of each held-out photo's 10 nearest other products (full gallery) of
  the same article type, and of the same colour;
- free-text examples: the top 5 of queries a shopper would type.

Then on catalogs no model here trained on (model_export.other_catalogs): DummyJSON and FakeStore.

The metric functions take vectors and a search function, so the benchmark can compare fp32 vs int8
bundles or an HNSW index vs exact search on equal terms.

    python -m model_export.evaluate --bundle models/fashion-starter
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashion_search.model.embedder import Embedder
from fashion_search.model.images import decode_image
from model_export.composed import evaluate_composed, evaluate_good_match, format_hybrid
from model_export.starter.data import (
    DEFAULT_FEED,
    TIME_SPLIT_RULE,
    VALIDATION_RULE,
    Product,
    attribute_query,
    load_products,
    split_indices,
    time_split_indices,
)

# (query vectors [n, dim], k) -> gallery row indices [n, k], best first.
SearchFn = Callable[[np.ndarray, int], np.ndarray]

FREE_TEXT_QUERIES = ("red dress", "black leather shoes for men", "gold watch for women", "crimson gown",
                     "white sneakers", "navy blue shirt for men", "oxblood dress", "smartphone",
                     "floral summer dress", "laptop bag")
SPLITS = {"time_split": TIME_SPLIT_RULE, "hash_split": VALIDATION_RULE}


def exact_search(gallery: np.ndarray) -> SearchFn:
    """Brute-force inner-product search over unit vectors: the reference any index is compared to."""
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)

    def search(queries: np.ndarray, k: int) -> np.ndarray:
        k = min(k, len(gallery))
        out = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), 1024):
            scores = queries[start : start + 1024] @ gallery.T
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            out[start : start + 1024] = np.take_along_axis(top, order, axis=1)
        return out

    return search


def title_recall(title_vectors: np.ndarray, targets: np.ndarray, search: SearchFn,
                 ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Share of titles whose own product's image is in the top k (targets: gallery rows)."""
    hits = search(title_vectors, max(ks)) == np.asarray(targets)[:, None]
    return {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


@dataclass(frozen=True)
class AttributeQueries:
    """Distinct (gender, colour, type) triples and their shopper phrasing."""

    attributes: list[tuple[str, str, str]]
    texts: list[str]

    @classmethod
    def from_products(cls, products: Sequence[Product]) -> AttributeQueries:
        triples = sorted({p.attributes for p in products if p.colour not in ("", "NA")})
        return cls(triples, [attribute_query(t) for t in triples])


def attribute_precision(query_vectors: np.ndarray, queries: AttributeQueries,
                        gallery_attributes: Sequence[tuple[str, str, str]], search: SearchFn,
                        k: int = 10) -> dict[str, float]:
    """P@k over queries with at least k relevant products, and hits@k / min(k, #relevant) over all
    queries with any relevant product (the fair measure on a small gallery)."""
    counts = Counter(gallery_attributes)
    label_of = {attrs: i for i, attrs in enumerate(counts)}
    top = np.array([label_of[a] for a in gallery_attributes])[search(query_vectors, k)]
    strict, capped = [], []
    for row, attrs in enumerate(queries.attributes):
        relevant = counts.get(attrs, 0)
        if not relevant:
            continue
        hits = int((top[row] == label_of[attrs]).sum())
        capped.append(hits / min(k, relevant))
        if relevant >= k:
            strict.append(hits / k)
    return {f"P@{k}": float(np.mean(strict)) if strict else float("nan"), "queries": len(strict),
            f"P@{k}_capped": float(np.mean(capped)) if capped else float("nan"), "queries_capped": len(capped)}


def photo_precision(gallery_vectors: np.ndarray, rows: np.ndarray, products: Sequence[Product], search: SearchFn,
                    k: int = 10) -> dict[str, float]:
    """Share of each query photo's k nearest *other* products with its article type / its colour."""
    found = search(gallery_vectors[rows], k + 1)
    neighbours = np.array([[j for j in row if j != q][:k] for q, row in zip(rows, found, strict=True)])
    types = np.array([p.article_type for p in products])
    colours = np.array([p.colour for p in products])
    return {f"type_P@{k}": float((types[neighbours] == types[rows][:, None]).mean()),
            f"colour_P@{k}": float((colours[neighbours] == colours[rows][:, None]).mean())}


def free_text_top(query_vectors: np.ndarray, queries: Sequence[str], search: SearchFn,
                  gallery: Sequence[Product], k: int = 5) -> dict[str, list[str]]:
    """Each query's top k as "title (gender colour type)" lines."""
    rows = search(query_vectors, k)
    return {q: [f"{gallery[i].title} ({' / '.join(gallery[i].attributes)})" for i in r]
            for q, r in zip(queries, rows, strict=True)}


def encode_gallery(embedder: Embedder, products: Sequence[Product], batch: int = 256,
                   log: bool = True) -> np.ndarray:
    """All product images through the runtime path: bytes -> decode_image -> Embedder."""
    out = []
    start = time.monotonic()
    for i in range(0, len(products), batch):
        images = [decode_image(p.image.read_bytes()) for p in products[i : i + batch]]
        out.append(embedder.encode_images(images))
        if log and (i // batch) % 20 == 0:
            print(f"  images {i + len(images)}/{len(products)} ({time.monotonic() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    return np.concatenate(out)


def split_report(products: Sequence[Product], gallery_vectors: np.ndarray,
                 encode_texts: Callable[[Sequence[str]], np.ndarray], rows: np.ndarray,
                 full_search: SearchFn) -> dict[str, object]:
    """Every fashion measure for one held-out split (rows), over the full and the held-out gallery."""
    held = [products[i] for i in rows]
    held_search = exact_search(gallery_vectors[rows])
    titles = encode_texts([p.title for p in held])
    queries = AttributeQueries.from_products(held)
    query_vectors = encode_texts(queries.texts)
    return {
        "held_out": len(rows),
        "title_full": title_recall(titles, rows, full_search),
        "title_held_out": title_recall(titles, np.arange(len(rows)), held_search),
        "attribute_full": attribute_precision(query_vectors, queries, [p.attributes for p in products], full_search),
        "attribute_held_out": attribute_precision(query_vectors, queries, [p.attributes for p in held], held_search),
        "photo_full": photo_precision(gallery_vectors, rows, products, full_search),
    }


def evaluate_vectors(products: Sequence[Product], gallery_vectors: np.ndarray,
                     encode_texts: Callable[[Sequence[str]], np.ndarray], *,
                     search: SearchFn | None = None,
                     free_text: Sequence[str] = FREE_TEXT_QUERIES) -> dict[str, object]:
    """All fashion metrics from precomputed gallery vectors (one per product, feed order) and a text encoder.

    `search` replaces exact search over the full gallery (e.g. an HNSW index of the same vectors);
    the held-out-gallery metrics always use exact search over the held-out rows.
    """
    products = list(products)
    full_search = search or exact_search(gallery_vectors)
    rows = {"time_split": time_split_indices(products)[1], "hash_split": split_indices(products)[1]}
    return {
        "gallery_products": len(products),
        **{name: split_report(products, gallery_vectors, encode_texts, rows[name], full_search) for name in SPLITS},
        "free_text": free_text_top(encode_texts(list(free_text)), free_text, full_search, products),
    }


def evaluate_other_catalogs(embedder: Embedder) -> dict[str, object]:
    """DummyJSON and FakeStore through the runtime Embedder (skipped when their data is absent)."""
    from model_export import other_catalogs as oc

    out: dict[str, object] = {}
    if oc.DUMMYJSON_FEED.is_file():
        photos = oc.dummyjson_photos()
        out["dummyjson"] = oc.evaluate_dummyjson(photos, embedder.encode_images(oc.load_images(photos)),
                                                 embedder.encode_texts)
    if oc.FAKESTORE_PRODUCTS.is_file():
        photos = oc.fakestore_photos()
        out["fakestore"] = oc.evaluate_fakestore(photos, embedder.encode_images(oc.load_images(photos)),
                                                 embedder.encode_texts, embedder.encode_images)
    return out


def evaluate_bundle(bundle_dir: str | Path, feed: str | Path = DEFAULT_FEED, *, threads: int | None = None,
                    gallery_vectors: np.ndarray | None = None, search: SearchFn | None = None) -> dict[str, object]:
    """Load a bundle with the runtime Embedder and measure it (gallery encoded unless given)."""
    embedder = Embedder(bundle_dir, threads=threads, batch_size=64)
    products = load_products(feed)
    if gallery_vectors is None:
        gallery_vectors = encode_gallery(embedder, products)
    report = evaluate_vectors(products, gallery_vectors, embedder.encode_texts, search=search)
    report["composed"] = evaluate_composed(products, gallery_vectors, embedder.encode_texts)
    if embedder.spec.calibration:
        report["good_match"] = evaluate_good_match(embedder.spec.calibration, products, gallery_vectors,
                                                   embedder.encode_texts)
    return {"bundle": embedder.name, "bundle_hash": embedder.model_hash, "splits": SPLITS, **report,
            **evaluate_other_catalogs(embedder)}


def headline(report: dict) -> dict[str, float]:
    """The measures people compare, flat: "time_split.title_full.R@10" -> value."""
    out: dict[str, float] = {}
    for split in SPLITS:
        r = report[split]
        out |= {f"{split}.title_full.R@1": r["title_full"]["R@1"], f"{split}.title_full.R@10": r["title_full"]["R@10"],
                f"{split}.title_held_out.R@10": r["title_held_out"]["R@10"],
                f"{split}.attribute_full.P@10": r["attribute_full"]["P@10"],
                f"{split}.attribute_held_out.hits@10": r["attribute_held_out"]["P@10_capped"],
                f"{split}.photo_full.type_P@10": r["photo_full"]["type_P@10"],
                f"{split}.photo_full.colour_P@10": r["photo_full"]["colour_P@10"]}
    if "dummyjson" in report:
        d = report["dummyjson"]
        out |= {"dummyjson.text_P@5": d["text_P@5"], "dummyjson.photo_R@1": d["photo_R@1"],
                "dummyjson.photo_R@5": d["photo_R@5"], "dummyjson.photo_category_P@5": d["photo_category_P@5"]}
    if "fakestore" in report:
        f = report["fakestore"]
        out |= {"fakestore.text_hit@3": f["text_hit@3"], "fakestore.text_P@1": f["text_P@1"],
                "fakestore.photo_R@1": f["photo_R@1"]}
    return out


LABELS = {
    "title_full.R@1": "title → image R@1 (full gallery)", "title_full.R@10": "title → image R@10 (full gallery)",
    "title_held_out.R@10": "title → image R@10 (held-out gallery)",
    "attribute_full.P@10": "attribute P@10 (full gallery)",
    "attribute_held_out.hits@10": "attribute hits@10/min(10, relevant) (held-out gallery)",
    "photo_full.type_P@10": "photo → photo, same type P@10",
    "photo_full.colour_P@10": "photo → photo, same colour P@10",
}


def format_report(report: dict, compare: dict | None = None, names: tuple[str, str] = ("this", "other")) -> str:
    """Markdown tables of evaluate_bundle output; with `compare`, a column for it and the difference."""
    flat, other = headline(report), headline(compare) if compare else {}
    lines = [f"gallery: {report['gallery_products']:,} products; held out: time split "
             f"{report['time_split']['held_out']:,}, hash split {report['hash_split']['held_out']:,}", ""]
    header = ["measure", *(f"{split.replace('_', ' ')}: {names[0]}" for split in SPLITS)]
    if compare:
        header += [f"{split.replace('_', ' ')}: {names[1]}" for split in SPLITS]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for key, label in LABELS.items():
        cells = [f"{flat[f'{s}.{key}']:.3f}" for s in SPLITS]
        if compare:
            cells += [f"{other[f'{s}.{key}']:.3f} ({flat[f'{s}.{key}'] - other[f'{s}.{key}']:+.3f})" for s in SPLITS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    catalog_rows = [(k, k.replace("dummyjson.", "DummyJSON ").replace("fakestore.", "FakeStore ").replace("_", " "))
                    for k in flat if k.startswith(("dummyjson.", "fakestore."))]
    if catalog_rows:
        header = ["other catalogs", names[0], *([names[1], "difference"] if compare else [])]
        lines += ["", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for key, label in catalog_rows:
            cells = [f"{flat[key]:.3f}"]
            if compare and key in other:
                cells += [f"{other[key]:.3f}", f"{flat[key] - other[key]:+.3f}"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += format_hybrid(report, compare, names)
    for query, top in report["free_text"].items():
        lines += ["", f"**{query}**", *[f"{i}. {t}" for i, t in enumerate(top, 1)]]
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="model bundle folder")
    parser.add_argument("--feed", default=str(DEFAULT_FEED), help="fashion feed (JSONL)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    parser.add_argument("--json", help="also write the full report to this file")
    parser.add_argument("--compare", help="a second bundle to measure in the same run (e.g. the previous starter)")


def run(args: argparse.Namespace) -> int:
    report = evaluate_bundle(args.bundle, args.feed, threads=args.threads)
    other = evaluate_bundle(args.compare, args.feed, threads=args.threads) if args.compare else None
    if args.json:
        Path(args.json).write_text(json.dumps({"report": report, "compare": other}, indent=2, ensure_ascii=False)
                                   + "\n")
    print(format_report(report, other, (Path(args.bundle).name, Path(args.compare).name if args.compare else "")))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
