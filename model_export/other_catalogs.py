"""Retrieval quality on catalogs the model never trained on: DummyJSON (legacy 100 products, 20
categories, 4-5 photos each) and FakeStore (20 products, one photo each).

- DummyJSON text: shopper queries that name a category or a product kind, judged by category (P@5
  over a gallery of each product's main photo).
- DummyJSON photo: every *other* photo of a product as a query over the same gallery: the same
  product's R@1/R@5 and the category P@5.
- FakeStore text: hand-judged queries (hit@3, P@1 over the 20 products).
- FakeStore photo: each photo cropped, rescaled or re-encoded must find its own product (R@1).

The queries were written before any model was measured on them; none is a training caption.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_search.model.images import decode_image
from model_export.evaluate import exact_search

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DUMMYJSON_FEED = SHARED / "dummyjson" / "legacy_v1" / "feed.jsonl"
FAKESTORE_PRODUCTS = SHARED / "fakestore" / "products.json"

# query -> the DummyJSON categories whose products answer it.
DUMMYJSON_QUERIES: dict[str, frozenset[str]] = {q: frozenset(c) for q, c in {
    "smartphone": {"smartphones"}, "mobile phone": {"smartphones"}, "laptop": {"laptops"},
    "notebook computer": {"laptops"}, "perfume": {"fragrances"}, "fragrance": {"fragrances"},
    "face serum": {"skincare"}, "moisturizer cream": {"skincare"}, "groceries": {"groceries"},
    "food": {"groceries"}, "home decoration": {"home-decoration"}, "decorative ornament": {"home-decoration"},
    "furniture": {"furniture"}, "sofa": {"furniture"}, "women's top": {"tops"}, "dress": {"womens-dresses"},
    "red dress": {"womens-dresses"}, "high heels": {"womens-shoes"}, "women's shoes": {"womens-shoes"},
    "men's t-shirt": {"mens-shirts"}, "men's shoes": {"mens-shoes"}, "sneakers": {"mens-shoes", "womens-shoes"},
    "wristwatch": {"mens-watches", "womens-watches"}, "men's watch": {"mens-watches"},
    "handbag": {"womens-bags"}, "jewellery": {"womens-jewellery"}, "earrings": {"womens-jewellery"},
    "sunglasses": {"sunglasses"}, "car accessories": {"automotive"}, "motorcycle": {"motorcycle"},
    "ceiling lamp": {"lighting"}, "chandelier": {"lighting"},
}.items()}
# query -> FakeStore product ids that answer it (judged by reading the 20 products).
FAKESTORE_QUERIES: dict[str, frozenset[str]] = {q: frozenset(map(str, ids)) for q, ids in {
    "backpack": {1}, "men's t-shirt": {2}, "men's jacket": {3}, "gold bracelet": {5}, "ring": {6, 7},
    "earrings": {8}, "external hard drive": {9, 12}, "ssd": {10, 11}, "computer monitor": {13, 14},
    "winter coat for women": {15, 16, 17}, "women's leather jacket": {16}, "raincoat": {17},
    "women's t-shirt": {18, 19, 20},
}.items()}

EncodeTexts = Callable[[Sequence[str]], np.ndarray]
EncodeImages = Callable[[Sequence[Image.Image]], np.ndarray]


@dataclass(frozen=True)
class Photo:
    product_id: str
    category: str
    title: str
    path: Path
    main: bool  # the catalog's main image (the one an index holds)


def dummyjson_photos(feed: Path = DUMMYJSON_FEED) -> list[Photo]:
    """Every distinct photo of every product, main photo first."""
    out = []
    for line in feed.read_text().splitlines():
        row = json.loads(line)
        for i, rel in enumerate(dict.fromkeys([row["image"], *row.get("images", [])])):
            out.append(Photo(str(row["id"]), row["category"], row["title"], feed.parent / rel, i == 0))
    return out


def fakestore_photos(products: Path = FAKESTORE_PRODUCTS) -> list[Photo]:
    return [Photo(str(r["id"]), r["category"], r["title"], products.parent / "img" / r["image"].rsplit("/", 1)[1],
                  True) for r in json.loads(products.read_text())]


def load_images(photos: Sequence[Photo]) -> list[Image.Image]:
    return [decode_image(p.path.read_bytes()) for p in photos]


def evaluate_dummyjson(photos: Sequence[Photo], vectors: np.ndarray, encode_texts: EncodeTexts,
                       queries: dict[str, frozenset[str]] = DUMMYJSON_QUERIES) -> dict[str, object]:
    """Text P@5 by category over the main photos; other photos -> same product R@1/R@5, category P@5."""
    main = [i for i, p in enumerate(photos) if p.main]
    gallery = [photos[i] for i in main]
    search = exact_search(vectors[main])
    categories = np.array([p.category for p in gallery])
    texts = list(queries)
    text_top = search(encode_texts(texts), 5)
    per_query = {q: float(np.mean([categories[j] in queries[q] for j in row]))
                 for q, row in zip(texts, text_top, strict=True)}
    row_of = {p.product_id: r for r, p in enumerate(gallery)}
    others = [i for i, p in enumerate(photos) if not p.main]
    target = np.array([row_of[photos[i].product_id] for i in others])
    top = search(vectors[others], 5)
    return {
        "products": len(gallery), "queries": len(texts), "text_P@5": float(np.mean(list(per_query.values()))),
        "text_P@5_per_query": per_query,
        "photo_queries": len(others),
        "photo_R@1": float((top[:, 0] == target).mean()), "photo_R@5": float((top == target[:, None]).any(1).mean()),
        "photo_category_P@5": float((categories[top] == categories[target][:, None]).mean()),
        "top3": {q: [gallery[j].title for j in row[:3]] for q, row in zip(texts, text_top, strict=True)},
    }


def photo_variants(img: Image.Image) -> dict[str, Image.Image]:
    """What happens to a product photo on its way to a shopper's upload."""
    w, h = img.size
    out = {"centre crop 80%": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
           "scaled to 40%": img.resize((max(1, w * 2 // 5), max(1, h * 2 // 5)), Image.Resampling.BILINEAR)}
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=25)
    out["JPEG quality 25"] = decode_image(buf.getvalue())
    out["off-centre crop"] = img.crop((0, 0, w * 3 // 4, h * 3 // 4))
    return out


def evaluate_fakestore(photos: Sequence[Photo], vectors: np.ndarray, encode_texts: EncodeTexts,
                       encode_images: EncodeImages,
                       queries: dict[str, frozenset[str]] = FAKESTORE_QUERIES) -> dict[str, object]:
    """Hand-judged text queries (hit@3, P@1) and altered photos finding their own product (R@1)."""
    search = exact_search(vectors)
    texts = list(queries)
    top = search(encode_texts(texts), 3)
    ids = [p.product_id for p in photos]
    hit3 = [any(ids[j] in queries[q] for j in row) for q, row in zip(texts, top, strict=True)]
    p1 = [ids[row[0]] in queries[q] for q, row in zip(texts, top, strict=True)]
    variants: dict[str, list[bool]] = {}
    for row, img in enumerate(load_images(photos)):
        altered = photo_variants(img)
        found = search(encode_images(list(altered.values())), 1)[:, 0]
        for name, hit in zip(altered, found == row, strict=True):
            variants.setdefault(name, []).append(bool(hit))
    return {"products": len(photos), "queries": len(texts), "text_hit@3": float(np.mean(hit3)),
            "text_P@1": float(np.mean(p1)),
            "photo_R@1": float(np.mean([h for hits in variants.values() for h in hits])),
            "photo_R@1_by_change": {k: float(np.mean(v)) for k, v in variants.items()},
            "top3": {q: [photos[j].title for j in row] for q, row in zip(texts, top, strict=True)}}
