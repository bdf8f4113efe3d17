"""Catalog values named by a shopper's words (serve/attributes.py), and how they move the ranking."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_search.index.columns import Columns
from fashion_search.serve.attributes import AttributeMatcher
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService

CATALOG = [{"category": "Shirts", "gender": "Men", "baseColour": "Navy Blue", "season": "Summer"},
           {"category": "Tshirts", "gender": "Women", "baseColour": "Blue", "season": "Winter"},
           {"category": "Casual Shoes", "gender": "Men", "baseColour": "Black", "season": "Summer"},
           {"category": "Dresses", "gender": "Women", "baseColour": "Red", "brand": "Dress Code"}]


@pytest.fixture(scope="module")
def matcher() -> AttributeMatcher:
    return AttributeMatcher(Columns.build(CATALOG))


@pytest.mark.parametrize(("text", "named"), [
    ("navy blue shirts for men", {"baseColour": ["Navy Blue"], "category": ["Shirts"], "gender": ["Men"]}),
    ("women's t-shirt", {"category": ["Shirts", "Tshirts"], "gender": ["Women"]}),  # the hyphen splits and joins
    ("Men's CASUAL shoes", {"category": ["Casual Shoes"], "gender": ["Men"]}),
    ("womenswear", {}),  # whole words only: "women" is not "men", "womenswear" neither
    ("dress", {"category": ["Dresses"]}),  # "dress" is no plural to cut
    ("", {}), ("qwzx plorf", {}),
])
def test_named_values_are_whole_phrases(matcher: AttributeMatcher, text: str, named: dict) -> None:
    assert matcher.named(text) == named


def test_share_held_counts_the_named_fields_a_product_has(matcher: AttributeMatcher) -> None:
    named = matcher.named("navy blue shirts for men")
    np.testing.assert_allclose(matcher.share_held(named, np.arange(4)), [1.0, 0.0, 1 / 3, 0.0])
    assert matcher.share_held({}, np.arange(4)).tolist() == [0.0] * 4


def test_named_values_rank_their_products_first(service: SearchService) -> None:
    """The tiny random model knows no colours: the catalog's own values put blue shirts for men first."""
    live = service.live
    assert live is not None and live.columns is not None
    holding = live.columns.mask({"category": "Tshirts", "gender": "Men", "baseColour": "Blue"})
    assert holding is not None and holding.sum() >= 5

    def holding_all(hits: list) -> int:
        return sum(h.product.category == "Tshirts" and h.product.attributes["gender"] == "Men"
                   and h.product.attributes["baseColour"] == "Blue" for h in hits)

    boosted = holding_all(service.search(Query(text="blue tshirts for men", top_k=10)).hits)
    plain = holding_all(service.search(Query(text="blue tshirts for men", top_k=10, keywords=False)).hits)
    # A boost of one standard deviation, not a filter: the tiny model's scores spread wider than the real one's.
    assert boosted >= plain + 3, (boosted, plain, holding.sum())
    # A named value in a negative term pushes its products down.
    unblue = service.search(Query(text="tshirts for men", negative_text=("blue",), top_k=5)).hits
    assert not any(h.product.attributes["baseColour"] == "Blue" for h in unblue)
