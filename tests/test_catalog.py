"""Catalog sources against real data: the fashion feed, and replica DummyJSON / FakeStore servers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fashion_search.build.catalog import Catalog, load_catalog
from fashion_search.build.fetch import Fetcher, FetchError, FetchOptions
from tests.conftest import DATA, FASHION_FEED
from tests.replica import Fault, Replica

FAST = FetchOptions(timeout=1.0, retries=3, backoff=0.01)


def load(source: str, options: FetchOptions = FAST) -> Catalog:
    async def run() -> Catalog:
        async with Fetcher(options) as fetcher:
            return await load_catalog(source, fetcher)

    return asyncio.run(run())


def test_fashion_feed_loads_every_product_with_resolved_images() -> None:
    catalog = load(str(FASHION_FEED))
    assert catalog.kind == "feed" and catalog.rejected == []
    assert len(catalog.products) == 20_873
    first = catalog.products[0]
    assert first.id == "10000" and first.category == "Skirts"
    assert first.attributes["baseColour"] == "White" and first.attributes["gender"] == "Women"
    assert Path(first.image).is_absolute() and Path(first.image).is_file()
    assert Path(first.image) == (DATA / "fashion" / "images" / "10000.jpg").resolve()


def test_feed_problems_are_reported_not_fatal(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "title": "Red Dress", "image": "img/a.jpg", "images": ["img/a2.jpg", "https://x.test/b.jpg"],
         "price": 10, "attributes": {"colour": "red"}},
        "not json at all",
        [1, 2],
        {"id": "b", "image": "img/b.jpg"},
        {"id": "c", "title": "  ", "image": "img/c.jpg"},
        {"id": "d", "title": "No image"},
        {"id": "a", "title": "Duplicate", "image": "img/a.jpg"},
        {"id": 7, "title": "Numeric id", "image": "/abs/7.jpg", "price": "oops"},
    ]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    catalog = load(str(feed))
    assert [p.id for p in catalog.products] == ["a"]
    a = catalog.products[0]
    assert a.image == str(tmp_path / "img" / "a.jpg")
    assert a.images == (str(tmp_path / "img" / "a2.jpg"), "https://x.test/b.jpg")
    reasons = [(r.product_id, r.reason) for r in catalog.rejected]
    assert reasons == [(None, "invalid_product"), (None, "invalid_product"), ("b", "invalid_product"),
                       ("c", "invalid_product"), ("d", "invalid_product"), ("a", "duplicate_id"),
                       ("7", "invalid_product")]
    details = [r.detail for r in catalog.rejected]
    assert "line 2 is not valid JSON" in details[0] and "title" in details[2] and "price" in details[6]


def test_missing_feed_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(str(tmp_path / "nope.jsonl"))


def test_dummyjson_api_is_paged_to_the_end(dummyjson: Replica) -> None:
    catalog = load(dummyjson.products_url)
    assert catalog.kind == "dummyjson"
    assert [p.id for p in catalog.products] == [str(i) for i in range(1, 101)]
    first = catalog.products[0]
    assert first.title == "iPhone 9" and first.price == 549 and first.brand == "Apple"
    assert first.image == f"{dummyjson.url}/product-images/1/1.jpg"
    assert len(first.images) == 5 and first.attributes["stock"] == 94
    assert dummyjson.hits["/products"] >= 2  # the first page had 30; the rest came in pages


def test_dummyjson_category_endpoint(dummyjson: Replica) -> None:
    catalog = load(f"{dummyjson.url}/products/category/womens-dresses")
    assert len(catalog.products) == 5
    assert {p.category for p in catalog.products} == {"womens-dresses"}


def test_pages_capped_by_the_server_are_completed(dummyjson: Replica) -> None:
    dummyjson.max_page = 7  # asks for 100 per page, gets 7
    catalog = load(dummyjson.products_url)
    assert [p.id for p in catalog.products] == [str(i) for i in range(1, 101)]


def test_dummyjson_page_errors_are_retried(dummyjson: Replica) -> None:
    dummyjson.faults["/products"] = Fault("status", status=500, times=2)
    catalog = load(dummyjson.products_url)
    assert len(catalog.products) == 100


def test_fakestore_api_is_recognised(fakestore: Replica) -> None:
    catalog = load(fakestore.products_url)
    assert catalog.kind == "fakestore" and len(catalog.products) == 20
    bag = catalog.products[0]
    assert bag.id == "1" and bag.rating == 3.9 and bag.attributes["rating_count"] == 120
    assert bag.category == "men's clothing" and bag.image.startswith(fakestore.url + "/img/")


def test_an_api_that_keeps_failing_is_a_clear_error(fakestore: Replica) -> None:
    fakestore.faults["/products"] = Fault("status", status=503)
    with pytest.raises(FetchError, match="503"):
        load(fakestore.products_url)
    assert fakestore.hits["/products"] == 1 + FAST.retries


def test_a_slow_api_times_out_then_succeeds(fakestore: Replica) -> None:
    fakestore.faults["/products"] = Fault("slow", delay=1.5, times=1)
    assert len(load(fakestore.products_url).products) == 20


def test_unknown_response_shapes_are_refused(dummyjson: Replica) -> None:
    with pytest.raises(FetchError, match="neither a product list"):
        load(f"{dummyjson.url}/products/1")
