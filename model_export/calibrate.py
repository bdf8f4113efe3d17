"""`fashion-search calibrate`: fit a bundle's relevance and its no-close-match threshold, for any bundle.

Data: a fashion feed with attributes (gender, baseColour, category). Queries come from the hash split
(VALIDATION_RULE: never trained on by the starter; the time split stays untouched for evaluation),
the gallery is the whole feed.

- text relevance: queries about the held-out products' attributes, in six shapes from "navy blue
  shirts for men" to the modifiers a shopper types beside a photo ("in navy blue", "for men"); relevant
  = the product has every attribute the query names;
- photo relevance: each held-out photo over the gallery (itself left out); relevant = the same gender,
  colour and article type (a close match is the same kind of product in the same colour);
- thresholds, per modality, on the best result's relevance: the cut that best separates the real
  queries above from nonsense strings and out-of-catalog words (text) or noise images made here
  (photo) (calibration.best_threshold). The evaluation's nonsense and out-of-catalog queries are other ones.

The calibration lands in bundle.json (`calibration`); it does not change the bundle hash, so indexes
stay valid.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_search.model.bundle import read_bundle
from fashion_search.model.calibration import Calibration, best_threshold, fit_platt, relevance
from fashion_search.model.embedder import Embedder
from model_export.evaluate import encode_gallery
from model_export.starter.data import (
    DEFAULT_FEED,
    GENDER_WORD,
    VALIDATION_RULE,
    Product,
    attribute_query,
    colour_word,
    load_products,
    split_indices,
    type_plural,
)

# Things a fashion catalog does not sell (the evaluation's list, composed.JUNK_QUERIES, is another).
# The second half names them with fashion words ("shoe rack"): a text model matches words, so those
# are the junk queries that score highest, and the threshold must see them.
OUT_OF_CATALOG = ("laptop", "refrigerator", "garden hose", "car tyre", "dog food", "office chair", "microwave oven",
                  "power drill", "kitchen sink", "bicycle pump", "frozen vegetables", "fish tank", "lawn mower",
                  "electric kettle", "roof tiles", "board game", "vacuum cleaner", "hammer", "washing machine",
                  "bag of rice", "shoe rack", "watch battery", "belt sander", "ring binder", "tie rack",
                  "paper towels", "dress pattern sewing machine", "jacket potato", "boot of a car", "top soil",
                  "sandal wood furniture", "cap screws", "sock puppet", "pearl barley")


def nonsense(count: int, seed: int) -> list[str]:
    """Random lower-case letter strings of one to three 3-9 letter words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return [" ".join("".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(rng.integers(1, 4)))
            for _ in range(count)]


def noise_images(count: int, seed: int, size: int = 256) -> list[Image.Image]:
    """Uniform noise, smooth colour fields and stripes: photos of nothing."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            pixels = rng.integers(0, 256, (size, size, 3)).astype(np.float64)
        elif kind == 1:  # a gradient between two colours
            t = np.linspace(0, 1, size)[None, :, None]
            pixels = rng.integers(0, 256, 3) * (1 - t) + rng.integers(0, 256, 3) * t
        else:  # stripes of one colour on black
            stripes = (np.arange(size) // rng.integers(4, 32)) % 2
            pixels = stripes[None, :, None] * rng.integers(0, 256, 3).astype(np.float64)
        pixels = np.broadcast_to(pixels, (size, size, 3))
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return out


Named = tuple[str | None, str | None, str | None]  # (gender, colour, article type) a query names; None: any


def named_queries(products: Sequence[Product], rng: np.random.Generator, limit: int) -> list[tuple[str, Named]]:
    """Up to `limit` distinct queries about the products' attributes, in six shapes: "navy blue shirts for
    men", "navy blue shirts", "shirts for men", "shirts", and the modifiers "in navy blue", "for men"."""
    out: dict[str, Named] = {}
    for g, c, t in sorted({p.attributes for p in products}):
        colour, plural, gender = colour_word(c), type_plural(t), GENDER_WORD.get(g)
        shapes: list[tuple[str, Named]] = [(plural, (None, None, t))]
        if colour:
            shapes += [(attribute_query((g, c, t)), (g, c, t)), (f"{colour} {plural}", (None, c, t)),
                       (f"in {colour}", (None, c, None))]
        if gender:
            shapes += [(f"{plural} for {gender}", (g, None, t)), (f"for {gender}", (g, None, None))]
        for text, named in shapes:
            out.setdefault(text, named)
    items = sorted(out.items())
    return [items[i] for i in sorted(rng.permutation(len(items))[:limit])]


def matches(named: Named, genders: np.ndarray, colours: np.ndarray, types: np.ndarray) -> np.ndarray:
    """Which products have every attribute the query names."""
    out = np.ones(len(genders), dtype=bool)
    for wanted, column in zip(named, (genders, colours, types), strict=True):
        if wanted is not None:
            out &= column == wanted
    return out


def calibrate(embedder: Embedder, products: Sequence[Product], gallery: np.ndarray, *, max_queries: int = 500,
              seed: int = 0, feed_name: str = "feed.jsonl") -> Calibration:
    """Fit relevance and thresholds with `gallery` = the products' image vectors (feed order)."""
    products = list(products)
    rng = np.random.default_rng(seed)
    attributes = [p.attributes for p in products]
    held = split_indices(products)[1]
    held = np.sort(rng.permutation(held)[:max_queries])
    # Text: what shoppers type about the held-out products, from full attribute queries to one word.
    queries = named_queries([products[i] for i in held], rng, max_queries)
    genders, colours, types = (np.array(column) for column in zip(*attributes, strict=True))
    text_scores = embedder.encode_texts([text for text, _ in queries]) @ gallery.T
    text_relevant = np.stack([matches(named, genders, colours, types) for _, named in queries])
    text_fit = fit_platt(text_scores, text_relevant)
    # Photos: each held-out photo against every other product.
    photo_scores = gallery[held] @ gallery.T
    label = {a: i for i, a in enumerate(Counter(attributes))}
    gallery_labels = np.array([label[a] for a in attributes])
    photo_relevant = gallery_labels[held][:, None] == gallery_labels[None]
    keep = np.ones_like(photo_scores, dtype=bool)
    keep[np.arange(len(held)), held] = False
    photo_fit = fit_platt(photo_scores[keep], photo_relevant[keep])
    # Thresholds on the best result's relevance, per modality.
    placeholder = Calibration(text=text_fit, image=photo_fit, text_threshold=0.5, image_threshold=0.5)
    photo_scores[~keep] = -np.inf
    real_text = relevance(placeholder, text_cosine=text_scores.max(1))
    real_photo = relevance(placeholder, image_cosine=photo_scores.max(1))
    junk_text = nonsense(60, seed) + list(OUT_OF_CATALOG)
    junk_text_best = relevance(placeholder, text_cosine=(embedder.encode_texts(junk_text) @ gallery.T).max(1))
    junk_photo_best = relevance(placeholder, image_cosine=(embedder.encode_images(noise_images(30, seed))
                                                          @ gallery.T).max(1))
    text_threshold = best_threshold(real_text, junk_text_best)
    image_threshold = best_threshold(real_photo, junk_photo_best)
    notes = {
        "feed": feed_name, "gallery": len(products), "split": VALIDATION_RULE,
        "text_queries": len(queries), "photo_queries": len(held),
        "junk": f"{len(junk_text)} nonsense and out-of-catalog texts, 30 noise images",
        "relevance": "logistic fit of P(relevant | cosine), per modality; text: the product has every attribute "
                     "the query names (gender, colour, article type: 'navy blue shirts for men' ... 'in navy "
                     "blue'); photo: the same gender, colour and article type",
        "thresholds": "per modality, the best-result relevance cut with the largest true-positive minus "
                      "false-positive rate between real and junk queries",
        "text_real_above": round(float((real_text >= text_threshold).mean()), 4),
        "text_junk_below": round(float((junk_text_best < text_threshold).mean()), 4),
        "photo_real_above": round(float((real_photo >= image_threshold).mean()), 4),
        "photo_junk_below": round(float((junk_photo_best < image_threshold).mean()), 4),
    }
    return Calibration(text=text_fit, image=photo_fit, text_threshold=text_threshold,
                       image_threshold=image_threshold, notes=notes)


def write_calibration(bundle_dir: str | Path, calibration: Calibration) -> None:
    """Store the calibration in bundle.json, leaving files and hash as they are."""
    path = Path(bundle_dir) / "bundle.json"
    spec = read_bundle(bundle_dir).model_copy(update={"calibration": calibration})
    path.write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="model bundle folder (bundle.json is updated)")
    parser.add_argument("--feed", default=str(DEFAULT_FEED), help="fashion feed (JSONL) with attributes")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads")


def run(args: argparse.Namespace) -> int:
    embedder = Embedder(args.bundle, threads=args.threads, batch_size=64)
    products = load_products(args.feed)
    calibration = calibrate(embedder, products, encode_gallery(embedder, products), feed_name=Path(args.feed).name)
    write_calibration(args.bundle, calibration)
    print(json.dumps(calibration.model_dump(mode="json"), indent=2), file=sys.stderr)
    return 0
