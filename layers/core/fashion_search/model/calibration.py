"""Relevance: a raw cosine turned into the probability that the product is what the shopper asked for.

Cosines of different bundles, and of text and photo queries of one bundle, live on different scales
(a good text match of the starter scores ~0.5, a good photo match ~0.9), so a badge showing the raw
cosine says nothing. Each bundle is calibrated once on held-out data (`fashion-search calibrate`,
model_export/calibrate.py): per modality, a logistic fit P(relevant | cosine) = sigmoid(a * cosine + b),
and, per modality, a threshold on the best result's relevance below which a query has no close match.

Two thresholds, because the best result of a real photo query scores lower on this scale than that
of a real text query: a photo is compared with photos of other products, a text names the product's
attributes. A hybrid result's relevance and threshold are weighted geometric means,
r_image^alpha * r_text^(1 - alpha): high only when the product matches the photo and the text in the
shares alpha gives them.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field


class Platt(BaseModel):
    """P(relevant | cosine) = sigmoid(slope * cosine + intercept)."""

    slope: float
    intercept: float

    def __call__(self, cosine: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * np.asarray(cosine, dtype=np.float64) + self.intercept)))


class Calibration(BaseModel):
    """bundle.json's `calibration`: it does not change vectors, so it is outside the bundle hash."""

    text: Platt
    image: Platt
    # The least relevance of the best result of a query that has a close match, per modality.
    text_threshold: float = Field(ge=0.0, le=1.0)
    image_threshold: float = Field(ge=0.0, le=1.0)
    notes: dict[str, object] = {}  # how it was fitted: feed, split, counts, figures

    def threshold(self, alpha: float) -> float:
        """The good-match threshold of a query whose photo weighs alpha (0: text, 1: photo)."""
        return self.image_threshold ** alpha * self.text_threshold ** (1.0 - alpha)


def relevance(calibration: Calibration, *, image_cosine: np.ndarray | None = None,
              text_cosine: np.ndarray | None = None, alpha: float = 0.5) -> np.ndarray:
    """Per-product relevance in [0, 1] of a photo, text or hybrid query (alpha = the photo's weight)."""
    if text_cosine is None:
        if image_cosine is None:
            raise ValueError("relevance needs the cosine of at least one modality")
        return calibration.image(image_cosine)
    if image_cosine is None:
        return calibration.text(text_cosine)
    log_r = alpha * np.log(np.maximum(calibration.image(image_cosine), 1e-300)) \
        + (1.0 - alpha) * np.log(np.maximum(calibration.text(text_cosine), 1e-300))
    return np.exp(log_r)


def fit_platt(cosines: np.ndarray, relevant: np.ndarray, iterations: int = 100) -> Platt:
    """Logistic regression on one feature by Newton's method (a tiny ridge keeps separable data finite)."""
    x = np.asarray(cosines, dtype=np.float64).ravel()
    y = np.asarray(relevant, dtype=np.float64).ravel()
    if not 0 < y.sum() < len(y):
        raise ValueError("calibration needs both relevant and irrelevant pairs")
    params = np.array([1.0, 0.0])
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ params)))
        w = p * (1.0 - p) + 1e-12
        gradient = design.T @ (p - y) + 1e-6 * params
        hessian = (design * w[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    slope, intercept = (float(v) for v in params)
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise ValueError("calibration did not converge")
    return Platt(slope=slope, intercept=intercept)


def best_threshold(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The cut that best separates the best-result relevance of real queries (positives) from that of
    nonsense and out-of-catalog queries (negatives): the largest true-positive rate minus false-positive
    rate (Youden's J), midway between the two scores it falls between."""
    scores = np.unique(np.concatenate([positives, negatives]))
    cuts = np.concatenate([[scores[0] - 1e-9], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-9]])
    j = [(positives >= c).mean() - (negatives >= c).mean() for c in cuts]
    return float(np.clip(cuts[int(np.argmax(j))], 0.0, 1.0))
