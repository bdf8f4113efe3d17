"""The query-side pure functions: gallery statistics, the soft AND, relevance calibration, duplicates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fashion_search.model.bundle import read_bundle
from fashion_search.model.calibration import Calibration, Platt, best_threshold, fit_platt, relevance
from fashion_search.serve.duplicates import first_of_each
from fashion_search.serve.fusion import GalleryStats, candidate_vector, hybrid_order, soft_and, unit
from model_export.calibrate import OUT_OF_CATALOG, nonsense, write_calibration
from model_export.composed import JUNK_QUERIES, composed_queries, relevant
from model_export.starter.data import load_products, time_split_indices
from tests.conftest import FASHION_FEED


def gallery(n: int = 500, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([unit(v) for v in rng.normal(size=(n, dim)) + 2.0 * rng.normal(size=dim)])


def test_standardised_scores_are_exact_without_scoring_the_gallery():
    vectors = gallery()
    stats = GalleryStats.of(vectors)
    q = unit(np.random.default_rng(1).normal(size=vectors.shape[1]))
    scores = vectors @ q
    np.testing.assert_allclose(stats.standardise(q, scores), (scores - scores.mean()) / scores.std(ddof=1),
                               atol=1e-5)


def test_candidate_vector_ranks_by_the_weighted_sum_of_standardised_scores():
    """Its scores are alpha z_image + (1 - alpha) z_text up to scale and shift, whatever each
    modality's own spread: the linear ranking the soft AND's candidates come from."""
    vectors = gallery()
    stats = GalleryStats.of(vectors)
    rng = np.random.default_rng(2)
    image, text = unit(rng.normal(size=16)), unit(rng.normal(size=16))
    z = 0.3 * stats.standardise(image, vectors @ image) + 0.7 * stats.standardise(text, vectors @ text)
    assert np.corrcoef(vectors @ candidate_vector(image, text, 0.3, stats), z)[0, 1] == pytest.approx(1.0)


def test_soft_and_weighs_and_requires_both():
    z_image = np.array([4.0, 0.0, 2.0, 3.0])
    z_text = np.array([0.0, 4.0, 2.0, -1.0])
    # Equal weights: the balanced product beats the ones strong in a single modality.
    assert int(np.argmax(soft_and(z_image, z_text, 0.5))) == 2
    # Alpha 0 and 1 rank by one modality alone.
    assert list(np.argsort(-soft_and(z_image, z_text, 0.0))) == list(np.argsort(-z_text))
    assert list(np.argsort(-soft_and(z_image, z_text, 1.0))) == list(np.argsort(-z_image))
    # Raising alpha moves the ranking towards the photo's.
    assert soft_and(z_image, z_text, 0.8)[0] > soft_and(z_image, z_text, 0.8)[1]
    assert soft_and(z_image, z_text, 0.2)[0] < soft_and(z_image, z_text, 0.2)[1]


def test_hybrid_order_is_the_soft_and_of_standardised_scores():
    vectors = gallery()
    stats = GalleryStats.of(vectors)
    rng = np.random.default_rng(3)
    image, text = unit(rng.normal(size=16)), unit(rng.normal(size=16))
    order = hybrid_order(image, text, 0.4, stats, vectors)
    expected = soft_and(stats.standardise(image, vectors @ image), stats.standardise(text, vectors @ text), 0.4)
    assert list(order) == list(np.argsort(-expected, kind="stable"))


def test_platt_fit_recovers_a_known_curve():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, 20000)
    y = rng.uniform(size=x.size) < 1 / (1 + np.exp(-(6 * x - 1)))
    fit = fit_platt(x, y)
    assert fit.slope == pytest.approx(6, rel=0.1) and fit.intercept == pytest.approx(-1, abs=0.15)
    with pytest.raises(ValueError, match="both relevant and irrelevant"):
        fit_platt(x, np.ones_like(x))


def test_hybrid_relevance_and_threshold_are_weighted_geometric_means():
    c = Calibration(text=Platt(slope=10, intercept=-5), image=Platt(slope=20, intercept=-15),
                    text_threshold=0.6, image_threshold=0.3)
    t, i = np.array([0.6]), np.array([0.8])
    assert relevance(c, text_cosine=t)[0] == pytest.approx(1 / (1 + np.exp(-1)))
    assert relevance(c, image_cosine=i)[0] == pytest.approx(1 / (1 + np.exp(-1)))
    hybrid = relevance(c, image_cosine=i, text_cosine=np.array([0.2]), alpha=0.25)[0]
    assert hybrid == pytest.approx(c.image(i)[0] ** 0.25 * c.text(np.array([0.2]))[0] ** 0.75)
    assert (c.threshold(0.0), c.threshold(1.0)) == (pytest.approx(0.6), pytest.approx(0.3))
    assert c.threshold(0.5) == pytest.approx(np.sqrt(0.18))


def test_best_threshold_separates_real_from_junk():
    real, junk = np.array([0.7, 0.8, 0.9, 0.95]), np.array([0.1, 0.2, 0.65])
    cut = best_threshold(real, junk)
    assert 0.65 < cut <= 0.7


def test_calibration_stays_outside_the_bundle_hash(tmp_path: Path, tiny_bundle: Path):
    """Recalibrating must not invalidate indexes built with the bundle."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = read_bundle(bundle)
    assert before.calibration is not None and before.calibration.notes["text_queries"] > 0
    changed = before.calibration.model_copy(update={"text_threshold": 0.123})
    write_calibration(bundle, changed)
    after = read_bundle(bundle, verify=True)
    assert after.hash == before.hash and after.calibration.text_threshold == 0.123
    assert json.loads((bundle / "bundle.json").read_text())["calibration"]["text_threshold"] == 0.123


def test_first_of_each_collapses_shared_images_and_near_identical_vectors():
    rng = np.random.default_rng(5)
    v = np.stack([unit(x) for x in rng.normal(size=(5, 8))])
    v[3] = unit(v[1] + 0.001 * rng.normal(size=8))  # a re-encoded copy of product 1's photo
    keys = ["a", "b", "a", "c", "d"]  # product 2 shares product 0's image
    asked: list[int] = []

    def key(i: int) -> str:
        asked.append(i)
        return keys[i]

    assert first_of_each(key, v, limit=10) == [0, 1, 4]
    asked.clear()
    assert first_of_each(key, v, limit=2) == [0, 1] and asked == [0, 1]  # keys only of the positions looked at
    assert first_of_each(lambda i: None, v, limit=10) == [0, 1, 2, 4]  # no key: vectors alone


def test_evaluation_junk_is_not_calibration_junk():
    assert not set(JUNK_QUERIES) & (set(OUT_OF_CATALOG) | set(nonsense(60, 0)))
    assert len(JUNK_QUERIES) >= 20


@pytest.mark.skipif(not FASHION_FEED.is_file(), reason="shared fashion data not present")
def test_composed_queries_need_both_halves():
    """Each modifier asks for what the photo is not, and enough products answer it."""
    products = load_products(FASHION_FEED)
    newest = time_split_indices(products)[1]
    queries = composed_queries(products, newest)
    assert [q.kind for q in queries].count("colour") == 150 and [q.kind for q in queries].count("gender") == 50
    assert {q.row for q in queries} <= set(newest.tolist())
    for q in queries:
        p = products[q.row]
        assert p.article_type == q.article_type
        assert (q.colour != p.colour and q.gender == p.gender) if q.kind == "colour" else q.gender != p.gender
        answers = relevant(q, products)
        assert answers.sum() >= 10 and not answers[q.row]
