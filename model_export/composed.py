"""Hybrid and relevance quality: composed queries over alpha, and how often good_match tells the truth.

Composed query: the photo of a product the model never trained on (time split) and a modifier a
shopper types beside it, over the whole feed as gallery:

- "in <colour>": relevant = the photo's gender and article type, in the asked colour (another colour
  than the photo's, with at least 10 such products in the feed);
- "for <gender>": relevant = the photo's article type for the asked gender (any colour).

Neither half alone can answer: text-only finds the colour or gender in any article type, photo-only
finds the photo's own colour and gender. Each fusion is measured at every alpha with exact search:
the seed's mix (`fusion.seed_vector`) and the service's soft AND over the neighbours of its candidate
vector (`fusion.candidate_vector`, `fusion.hybrid_order`: the same functions the service runs).

good_match: share of real shopper queries (the time split's attribute queries, all with relevant
products) that get good_match true, and of junk queries (random letters, things a fashion shop does
not sell; other ones than calibration's) that get false.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fashion_search.model.calibration import Calibration, relevance
from fashion_search.serve.fusion import GalleryStats, candidate_vector, hybrid_order, seed_vector
from model_export.starter.data import GENDER_WORD, Product, attribute_query, colour_word, time_split_indices

ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CANDIDATES = 256  # as serve.query.POOL
# Junk queries for the good_match measure: none is in calibrate.OUT_OF_CATALOG or made by its
# nonsense(); the fashion feed sells none of these things.
JUNK_QUERIES = (
    "qwzx plorf", "asdfgh jkl", "zzzzzz", "xkcd vbnm", "lorem ipsum dolor", "hjkl qwop", "blorft snee",
    "mmmmm nnnn", "prtkl zqq", "oiuy trewq",
    "laptop charger", "coffee table", "frozen pizza", "garden gnome", "car battery", "wifi router", "toaster",
    "cat litter", "bag of cement", "guitar strings", "dishwasher tablets", "printer paper", "paint roller",
    "aquarium filter",
)

EncodeTexts = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class ComposedQuery:
    row: int  # the photo's product, a row of the gallery (feed order)
    text: str
    kind: str  # "colour" or "gender"
    gender: str
    colour: str | None  # None: any colour
    article_type: str


def composed_queries(products: Sequence[Product], rows: np.ndarray, *, colours: int = 150, genders: int = 50,
                     min_relevant: int = 10, seed: int = 0) -> list[ComposedQuery]:
    """Seeded modifiers for photos of `rows`: `colours` "in <colour>" then `genders` "for <gender>" queries."""
    rng = np.random.default_rng(seed)
    triples = Counter(p.attributes for p in products)
    pairs = Counter((p.gender, p.article_type) for p in products)
    out: list[ComposedQuery] = []
    wanted = {"colour": colours, "gender": genders}
    for row in rng.permutation(rows):
        p = products[row]
        other_colours = sorted(c for (g, c, t), n in triples.items()
                               if g == p.gender and t == p.article_type and c != p.colour and n >= min_relevant
                               and colour_word(c) and c != "Multi")
        other_genders = sorted(g for (g, t), n in pairs.items()
                               if t == p.article_type and g != p.gender and g in GENDER_WORD and n >= min_relevant)
        kind = "colour" if wanted["colour"] else "gender"
        if kind == "colour" and other_colours:
            c = other_colours[rng.integers(len(other_colours))]
            out.append(ComposedQuery(int(row), f"in {colour_word(c)}", kind, p.gender, c, p.article_type))
        elif kind == "gender" and other_genders:
            g = other_genders[rng.integers(len(other_genders))]
            out.append(ComposedQuery(int(row), f"for {GENDER_WORD[g]}", kind, g, None, p.article_type))
        else:
            continue
        wanted[kind] -= 1
        if not any(wanted.values()):
            break
    return out


def relevant(query: ComposedQuery, products: Sequence[Product]) -> np.ndarray:
    return np.array([p.gender == query.gender and p.article_type == query.article_type
                     and (query.colour is None or p.colour == query.colour) for p in products])


def top_k(fusion: str, image: np.ndarray, text: np.ndarray, alpha: float, gallery: np.ndarray,
          stats: GalleryStats, k: int = 10) -> np.ndarray:
    """Gallery rows of the k best products for one query, by `fusion` ("seed mix" or "soft AND")."""
    if fusion == "seed mix":
        return np.argsort(-(gallery @ seed_vector(image, text, alpha)), kind="stable")[:k]
    candidates = np.argsort(-(gallery @ candidate_vector(image, text, alpha, stats)), kind="stable")[:CANDIDATES]
    return candidates[hybrid_order(image, text, alpha, stats, gallery[candidates])][:k]


def evaluate_composed(products: Sequence[Product], gallery: np.ndarray, encode_texts: EncodeTexts,
                      alphas: Sequence[float] = ALPHAS, k: int = 10) -> dict[str, object]:
    """P@k at each alpha for each fusion, over all composed queries and by modifier kind."""
    products = list(products)
    queries = composed_queries(products, time_split_indices(products)[1])
    stats = GalleryStats.of(gallery)
    texts = encode_texts([q.text for q in queries])
    masks = [relevant(q, products) for q in queries]
    out: dict[str, object] = {"queries": len(queries), "k": k,
                              "by_kind": dict(Counter(q.kind for q in queries)), "alphas": list(alphas)}
    for fusion in ("seed mix", "soft AND"):
        per_alpha: dict[str, dict[str, float]] = {}
        for alpha in alphas:
            hits = np.array([masks[i][top_k(fusion, gallery[q.row], texts[i], alpha, gallery, stats, k)].mean()
                             for i, q in enumerate(queries)])
            per_alpha[f"{alpha:.1f}"] = {"all": float(hits.mean()), **{
                kind: float(hits[[q.kind == kind for q in queries]].mean()) for kind in out["by_kind"]}}
        out[fusion] = per_alpha
    return out


def evaluate_good_match(calibration: Calibration, products: Sequence[Product], gallery: np.ndarray,
                        encode_texts: EncodeTexts, junk: Sequence[str] = JUNK_QUERIES) -> dict[str, object]:
    """Share of real queries with good_match true and of junk queries with good_match false; and the
    same for photos: each time-split photo (itself left out of the gallery)."""
    products = list(products)
    rows = time_split_indices(products)[1]
    triples = sorted({products[i].attributes for i in rows if colour_word(products[i].colour)})
    real = [attribute_query(t) for t in triples]

    def best(texts: Sequence[str]) -> np.ndarray:
        return relevance(calibration, text_cosine=(encode_texts(list(texts)) @ gallery.T).max(1))

    photo = gallery[rows] @ gallery.T
    photo[np.arange(len(rows)), rows] = -np.inf
    real_best, junk_best = best(real), best(junk)
    photo_best = relevance(calibration, image_cosine=photo.max(1))
    return {
        "text_threshold": calibration.text_threshold, "image_threshold": calibration.image_threshold,
        "real_queries": len(real), "junk_queries": len(junk),
        "real_good_match": float((real_best >= calibration.text_threshold).mean()),
        "junk_no_match": float((junk_best < calibration.text_threshold).mean()),
        "photo_queries": len(rows), "photo_good_match": float((photo_best >= calibration.image_threshold).mean()),
        "junk_top_relevance": {q: round(float(r), 4) for q, r in zip(junk, junk_best, strict=True)},
    }


def format_hybrid(report: dict, compare: dict | None = None, names: tuple[str, str] = ("this", "other")) -> list[str]:
    """Markdown: composed-query P@k by alpha for each fusion (and `compare`'s), then good_match rates."""
    lines: list[str] = []
    runs = [(names[0], report), *([(names[1], compare)] if compare else [])]
    runs = [(name, r["composed"]) for name, r in runs if r and "composed" in r]
    if runs:
        first = runs[0][1]
        columns = [(name, fusion) for name, _ in runs for fusion in ("seed mix", "soft AND")]
        kinds = ", ".join(f"{n} {kind}" for kind, n in first["by_kind"].items())
        lines += ["", f"composed queries ({first['queries']}: {kinds}), P@{first['k']} over the full gallery",
                  "", "| alpha | " + " | ".join(f"{name}: {fusion}" for name, fusion in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        by_name = dict(runs)
        for alpha in first["seed mix"]:
            cells = [f"{by_name[name][fusion][alpha]['all']:.3f}" for name, fusion in columns]
            lines.append(f"| {alpha} | " + " | ".join(cells) + " |")
    if "good_match" in report:
        g = report["good_match"]
        lines += ["", f"good_match: {g['real_good_match']:.1%} of {g['real_queries']} real text queries true, "
                      f"{g['junk_no_match']:.1%} of {g['junk_queries']} junk queries false, "
                      f"{g['photo_good_match']:.1%} of {g['photo_queries']} new photos true "
                      f"(thresholds: text {g['text_threshold']:.3f}, photo {g['image_threshold']:.3f})"]
    return lines
