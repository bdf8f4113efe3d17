"""Retrieval quality of any model bundle on the fashion feed, measured through the runtime Embedder.

Metrics (the validation split is data.VALIDATION_RULE, ~5% of products held out by id):

- title -> image Recall@1/@10: each validation product's title must retrieve that product's image,
  over the full gallery (all products) and over the validation gallery alone (unseen images only);
- attribute P@10: shopper queries built from the (gender, colour, article type) triples of the
  validation products ("navy blue shirts for men"); relevant = same gender, colour and type.
  Over the full gallery, queries with at least 10 relevant products; over the validation gallery,
  hits@10 / min(10, #relevant) over all triples (few triples have 10 validation products);
- free-text examples: the top 5 of queries a shopper would type.

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

from fashion_search.embedder import Embedder
from fashion_search.images import decode_image
from model_export.starter.data import (
    DEFAULT_FEED,
    VALIDATION_RULE,
    Product,
    attribute_query,
    load_products,
    split_indices,
)

# (query vectors [n, dim], k) -> gallery row indices [n, k], best first.
SearchFn = Callable[[np.ndarray, int], np.ndarray]

FREE_TEXT_QUERIES = ("red dress", "black leather shoes for men", "gold watch for women", "crimson gown",
                     "white sneakers", "navy blue shirt for men")


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


def evaluate_vectors(products: Sequence[Product], gallery_vectors: np.ndarray,
                     encode_texts: Callable[[Sequence[str]], np.ndarray], *,
                     search: SearchFn | None = None,
                     free_text: Sequence[str] = FREE_TEXT_QUERIES) -> dict[str, object]:
    """All metrics from precomputed gallery vectors (one per product, feed order) and a text encoder.

    `search` replaces exact search over the full gallery (e.g. an HNSW index of the same vectors);
    the validation-gallery metrics always use exact search over the validation rows.
    """
    products = list(products)
    _, val = split_indices(products)
    val_products = [products[i] for i in val]
    full_search = search or exact_search(gallery_vectors)
    val_search = exact_search(gallery_vectors[val])
    titles = encode_texts([p.title for p in val_products])
    queries = AttributeQueries.from_products(val_products)
    query_vectors = encode_texts(queries.texts)
    all_attrs = [p.attributes for p in products]
    return {
        "validation_products": len(val),
        "gallery_products": len(products),
        "title_full": title_recall(titles, val, full_search),
        "title_validation": title_recall(titles, np.arange(len(val)), val_search),
        "attribute_full": attribute_precision(query_vectors, queries, all_attrs, full_search),
        "attribute_validation": attribute_precision(query_vectors, queries,
                                                    [p.attributes for p in val_products], val_search),
        "free_text": free_text_top(encode_texts(list(free_text)), free_text, full_search, products),
    }


def evaluate_bundle(bundle_dir: str | Path, feed: str | Path = DEFAULT_FEED, *, threads: int | None = None,
                    gallery_vectors: np.ndarray | None = None, search: SearchFn | None = None) -> dict[str, object]:
    """Load a bundle with the runtime Embedder and measure it (gallery encoded unless given)."""
    embedder = Embedder(bundle_dir, threads=threads, batch_size=64)
    products = load_products(feed)
    if gallery_vectors is None:
        gallery_vectors = encode_gallery(embedder, products)
    report = evaluate_vectors(products, gallery_vectors, embedder.encode_texts, search=search)
    return {"bundle": embedder.name, "bundle_hash": embedder.model_hash, "split": VALIDATION_RULE, **report}


def format_report(report: dict) -> str:
    """A short markdown summary of evaluate_vectors / evaluate_bundle output."""
    lines = [f"validation products: {report['validation_products']}, gallery: {report['gallery_products']}",
             "", "| measure | full gallery | validation gallery |", "|---|---|---|"]
    for key in ("R@1", "R@10"):
        lines.append(f"| title → image {key} | {report['title_full'][key]:.3f} "
                     f"| {report['title_validation'][key]:.3f} |")
    full, val = report["attribute_full"], report["attribute_validation"]
    lines.append(f"| attribute P@10 (queries with ≥10 relevant) | {full['P@10']:.3f} ({full['queries']} q) "
                 f"| {val['P@10']:.3f} ({val['queries']} q) |")
    lines.append(f"| attribute hits@10 / min(10, relevant) | {full['P@10_capped']:.3f} "
                 f"({full['queries_capped']} q) | {val['P@10_capped']:.3f} ({val['queries_capped']} q) |")
    for query, top in report["free_text"].items():
        lines += ["", f"**{query}**", *[f"{i}. {t}" for i, t in enumerate(top, 1)]]
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="model bundle folder")
    parser.add_argument("--feed", default=str(DEFAULT_FEED), help="fashion feed (JSONL)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    parser.add_argument("--json", help="also write the full report to this file")


def run(args: argparse.Namespace) -> int:
    report = evaluate_bundle(args.bundle, args.feed, threads=args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(format_report(report))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
