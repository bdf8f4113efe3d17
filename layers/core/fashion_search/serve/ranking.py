"""From a query's vectors to one ordered list of candidates: the filter, the vector neighbours, the keyword
matches, the soft AND of a hybrid query, negative terms, and the fusion of the two signals.

Every query ranks a pool of at most POOL candidates (query.py): the nearest products to its vector that
pass its filters, plus its best keyword matches that pass them. Scores are compared in standard deviations
above the catalog's average for that query (fusion.GalleryStats), which is what makes a photo, a text and
a negative term commensurable:

- positive score: the text's or the photo's standardised cosine; for both, their soft AND (fusion.py);
- a negative term: a product loses one standard deviation for each standard deviation by which it
  matches the term better than the catalog's average does (products that do not look like the term
  lose nothing), and its keyword matches lose their keyword rank;
- catalog values the text names (attributes.py: "navy blue shirts for men" names colour, category and
  gender values of the catalog): the nearest products holding them join the pool, and a product gains
  (1 - alpha) * ATTRIBUTE_BONUS standard deviations times the share of the named fields it holds (a
  negative term's named values cost as much);
- keywords: the vector order and the BM25 order are merged by reciprocal rank fusion,
  1 / (60 + vector rank) + (1 - alpha) * KEYWORD_WEIGHT / (60 + keyword rank): the text's share of a
  hybrid query weighs its words too, so alpha 0 is exactly the text search and alpha 1 the photo search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..index import Where
from .fusion import candidate_vector, hybrid_score, seed_vector
from .live_index import LiveIndex
from .query import POOL

RRF_K = 60  # the usual constant of reciprocal rank fusion (Cormack et al. 2009): damps the top ranks' weight
KEYWORD_WEIGHT = 1.0
# Standard deviations of score a product gains when it has every catalog value the text names (attributes.py),
# in proportion to the share it has; as much is lost for each value a negative term names. Chosen on the
# hash split's composed queries at alpha 0.5 (P@10 for 0, 0.5, 1, 2, 4: 0.474, 0.572, 0.585, 0.587, 0.587:
# the smallest on the plateau); the time split is kept for the report.
ATTRIBUTE_BONUS = 1.0


@dataclass(frozen=True)
class Ranked:
    rows: np.ndarray  # candidates, best first
    vectors: np.ndarray  # their stored vectors
    scores: np.ndarray  # cosine with the query vector (the seed's fused vector for a hybrid query)
    image_cosine: np.ndarray | None  # with the photo (or the product searched like), for relevance
    text_cosine: np.ndarray | None


def probe_vector(live: LiveIndex, text: np.ndarray | None, image: np.ndarray | None, alpha: float) -> np.ndarray:
    """The vector whose neighbours are the candidates: the text, the photo, or for both the seed's mix on
    vectors scaled to equal score spread (fusion.candidate_vector)."""
    if text is not None and image is not None:
        return candidate_vector(image, text, alpha, live.stats)
    vector = text if text is not None else image
    assert vector is not None, "a query has text, a photo or both"
    return vector


def named(live: LiveIndex, keyword_text: str | None) -> dict[str, list[str]]:
    """The catalog values the query's words name (attributes.py); none without the lexical signals."""
    return live.attributes.named(keyword_text) if keyword_text and live.attributes is not None else {}


def candidates(live: LiveIndex, probe: np.ndarray, allow: np.ndarray | None, keyword_text: str | None,
               negative_text: tuple[str, ...] = (), values: dict[str, list[str]] | None = None,
               where: Where = ()) -> tuple[np.ndarray, np.ndarray]:
    """(vector neighbours of `probe`, then its nearest products holding the `values` the text names; keyword
    matches of `keyword_text` holding no negative term), each in its own order, all passing `allow` (computed
    from the filters `where`, which an index filtering in its own engine needs)."""
    _, ids = live.index.search(probe[None, :], POOL, allow, where)
    neighbours = ids[0][ids[0] >= 0]
    values = named(live, keyword_text) if values is None else values
    if values and live.columns is not None:
        holding = live.columns.mask(values)
        assert holding is not None
        _, ids = live.index.search(probe[None, :], POOL, holding if allow is None else holding & allow,
                                   (*where, values))
        neighbours, _ = union(neighbours, ids[0][ids[0] >= 0])
    matches = np.zeros(0, dtype=np.int64)
    if keyword_text and live.keywords is not None:
        matches, _ = live.keywords.search(keyword_text, POOL, allow, exclude=negative_text)
    return neighbours, matches


def rank(live: LiveIndex, text: np.ndarray | None, image: np.ndarray | None, alpha: float,
         allow: np.ndarray | None = None, *, keyword_text: str | None = None, negatives: tuple[np.ndarray, ...] = (),
         negative_text: tuple[str, ...] = (), where: Where = ()) -> Ranked:
    """The query's candidates in order (module docstring); `allow` is computed from the filters `where`."""
    values = named(live, keyword_text)
    neighbours, matches = candidates(live, probe_vector(live, text, image, alpha), allow, keyword_text,
                                     negative_text, values, where)
    rows, at = union(neighbours, matches)
    vectors = live.vectors(rows)
    image_cos = vectors @ image if image is not None else None
    text_cos = vectors @ text if text is not None else None
    stats = live.stats
    if image is not None and text is not None and image_cos is not None and text_cos is not None:
        cosine = vectors @ seed_vector(image, text, alpha)
        # The ends of the slider are exactly the single searches (the soft AND there is only monotone in one).
        score = (hybrid_score(image, text, alpha, stats, vectors) if 0.0 < alpha < 1.0
                 else stats.standardise(text, text_cos) if alpha <= 0.0 else stats.standardise(image, image_cos))
    else:
        vector, cosine = (text, text_cos) if text is not None else (image, image_cos)
        assert vector is not None and cosine is not None
        # Standardising is monotone: a query nothing else moves keeps its cosine order (and skips the spread's
        # matrix product, the costliest step of a plain query).
        moved = bool(negatives) or bool(values) or bool(negative_text and keyword_text)
        score = stats.standardise(vector, cosine) if moved else np.asarray(cosine, dtype=np.float64)
    for negative in negatives:
        score = score - np.maximum(0.0, stats.standardise(negative, vectors @ negative))
    if live.attributes is not None and keyword_text:
        score = score + (1.0 - alpha) * ATTRIBUTE_BONUS * live.attributes.share_held(values, rows)
        for term in negative_text:
            score = score - ATTRIBUTE_BONUS * live.attributes.share_held(live.attributes.named(term), rows)
    order = np.argsort(-score, kind="stable")
    if len(matches) and alpha < 1.0:
        order = fuse_ranks(order, at, (1.0 - alpha) * KEYWORD_WEIGHT)
    return Ranked(rows[order], vectors[order], cosine[order],
                  None if image_cos is None else image_cos[order], None if text_cos is None else text_cos[order])


def union(neighbours: np.ndarray, matches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the neighbours then the matches that are not among them, each match's position in that list)."""
    by_row = np.argsort(neighbours, kind="stable")
    sorted_rows = neighbours[by_row]
    at = np.searchsorted(sorted_rows, matches).clip(max=max(len(neighbours) - 1, 0))
    known = sorted_rows[at] == matches if len(neighbours) else np.zeros(len(matches), dtype=bool)
    positions = np.where(known, by_row[at] if len(neighbours) else 0, 0)
    positions[~known] = len(neighbours) + np.arange(int((~known).sum()))
    return np.concatenate([neighbours, matches[~known]]), positions


def fuse_ranks(order: np.ndarray, matches_at: np.ndarray, weight: float = KEYWORD_WEIGHT) -> np.ndarray:
    """Positions of the candidates, best first, by reciprocal rank fusion of the vector `order` (positions,
    best first) and the keyword matches (`matches_at`: their positions, best first). Ties keep the vector order."""
    fused = np.zeros(len(order))
    fused[order] = 1.0 / (RRF_K + 1 + np.arange(len(order)))
    fused[matches_at] += weight / (RRF_K + 1 + np.arange(len(matches_at)))
    vector_rank = np.empty(len(order), dtype=np.int64)
    vector_rank[order] = np.arange(len(order))
    return np.lexsort((vector_rank, -fused))
