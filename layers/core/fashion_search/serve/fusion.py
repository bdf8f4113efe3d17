"""How a photo and a text become one ranking: pure functions over vectors and scores.

The seed mixed the two unit vectors, `alpha * image + (1 - alpha) * text`. That does not blend:
photo vectors sit much closer to each other than to text vectors (the modality gap CLIP has too),
so a photo's scores spread over the gallery about 1.5x wider than a text's, and the photo decides any
mix. Measured on composed queries (a new product's photo + "in <colour>" / "for <gender>",
`python -m model_export.evaluate`), for the starter bundle:

- the seed's mix peaks at alpha 0.3 and falls to about half of that at the default 0.5;
- scaling each modality to the same score spread (`candidate_vector`) moves the peak to 0.4-0.5;
- ranking by a weighted soft AND of the two standardised scores (`soft_and`) is best, and its best
  alpha sits in the middle: a product must match the photo *and* the text, in the shares alpha gives.

Standardised score: how many standard deviations above the gallery's average a product scores for
this query. For a linear score the gallery's mean and spread follow exactly from the gallery's mean
vector and covariance (`GalleryStats`), so no query is ever compared against the whole gallery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Soft-AND temperature in standard deviations: lower is a harder AND (flat in alpha), higher tends
# to the linear mix. Chosen on the hash split's composed queries (P@10 at alpha 0.5 for T = 0.5, 1,
# 1.5, 2, 3, 4: 0.427, 0.435, 0.439, 0.432, 0.427, 0.417); the time split is kept for the report.
SOFT_AND_TEMPERATURE = 1.5


@dataclass(frozen=True)
class GalleryStats:
    """Mean vector and covariance of an index's vectors: every query's score distribution over it."""

    mean: np.ndarray  # [dim] float64
    covariance: np.ndarray  # [dim, dim] float32: a matrix-vector product per spread, memory-bound
    _spreads: dict[bytes, float] = field(default_factory=dict, compare=False, repr=False)  # a query's 4 asks

    @classmethod
    def of(cls, vectors: np.ndarray) -> GalleryStats:
        vectors = np.asarray(vectors, dtype=np.float32)  # float32 products: ~2x faster, ample precision
        mean = vectors.mean(0, dtype=np.float64)
        centred = vectors - mean.astype(np.float32)
        return cls(mean, centred.T @ centred / np.float32(max(1, len(vectors) - 1)))

    def spread(self, query: np.ndarray) -> float:
        """Standard deviation of query · g over the gallery (remembered for the last few queries: a hybrid
        query asks it twice per modality)."""
        q = np.ascontiguousarray(query, dtype=np.float32)
        key = q.tobytes()
        if (known := self._spreads.get(key)) is None:
            if len(self._spreads) >= 64:
                self._spreads.clear()
            known = self._spreads[key] = float(np.sqrt(max(float(q @ (self.covariance @ q)), 1e-12)))
        return known

    def standardise(self, query: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Scores of `query` as standard deviations above its gallery average."""
        return (np.asarray(scores, dtype=np.float64) - float(np.asarray(query, np.float64) @ self.mean)) \
            / self.spread(query)


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def seed_vector(image: np.ndarray, text: np.ndarray, alpha: float) -> np.ndarray:
    """The seed's fusion, `alpha * image + (1 - alpha) * text`, normalised: what similarity_score uses."""
    return unit(alpha * image + (1.0 - alpha) * text)


def candidate_vector(image: np.ndarray, text: np.ndarray, alpha: float, stats: GalleryStats) -> np.ndarray:
    """The seed's formula on vectors scaled to the same score spread over this gallery: one vector
    whose nearest neighbours hold the soft AND's best products (it ranks by the linear sum of the
    same standardised scores)."""
    return unit(alpha * image / stats.spread(image) + (1.0 - alpha) * text / stats.spread(text))


def soft_and(z_image: np.ndarray, z_text: np.ndarray, alpha: float,
             temperature: float = SOFT_AND_TEMPERATURE) -> np.ndarray:
    """-T log(exp(-alpha z_image / T) + exp(-(1 - alpha) z_text / T)): close to the smaller of the two
    weighted standardised scores, so a product must match both; alpha 0 and 1 rank by one alone."""
    return -temperature * np.logaddexp(-alpha * np.asarray(z_image) / temperature,
                                       -(1.0 - alpha) * np.asarray(z_text) / temperature)


def hybrid_score(image: np.ndarray, text: np.ndarray, alpha: float, stats: GalleryStats,
                 vectors: np.ndarray) -> np.ndarray:
    """The soft AND of the candidate `vectors`' standardised scores for the photo and the text."""
    return soft_and(stats.standardise(image, vectors @ image), stats.standardise(text, vectors @ text), alpha)


def hybrid_order(image: np.ndarray, text: np.ndarray, alpha: float, stats: GalleryStats,
                 vectors: np.ndarray) -> np.ndarray:
    """Positions of candidate `vectors`, best first, by the soft AND of their standardised scores."""
    return np.argsort(-hybrid_score(image, text, alpha, stats, vectors), kind="stable")
