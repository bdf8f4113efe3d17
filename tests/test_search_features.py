"""Filters, facets, more like this, negative terms, paging and the keyword signal, through the HTTP API
(the Lambda handler over a real index), with what each refuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fashion_search.config import ServiceSettings
from fashion_search.http.api import LambdaHandler, create_handler
from fashion_search.serve.query import MAX_DEPTH, POOL, Query
from fashion_search.serve.service import SearchService
from tests.conftest import FASHION_FEED, build_store
from tests.test_api import b64, call, event, photo, search

DUMMYJSON_FEED = FASHION_FEED.parents[1] / "dummyjson" / "legacy_v1" / "feed.jsonl"
CLI = str(Path(sys.executable).parent / "fashion-search")


def product(service: SearchService, product_id: str) -> Any:
    found = service.product(product_id)
    assert found is not None
    return found


def attribute(service: SearchService, product_id: str, name: str) -> Any:
    record = product(service, product_id)
    return getattr(record, name) if name in ("category", "brand", "price", "rating") else record.attributes.get(name)


def refused(handler: LambdaHandler, body: dict[str, Any], status: int = 400) -> dict[str, Any]:
    got, payload, _ = call(handler, event("POST", "/api/v1/search", body))
    assert got == status, payload
    return payload["error"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> tuple[SearchService, LambdaHandler]:
    """DummyJSON's legacy catalog: prices, ratings, stock and brands."""
    store = tmp_path_factory.mktemp("dummyjson") / "store"
    build_store(DUMMYJSON_FEED, store, tiny_bundle)
    service = SearchService(ServiceSettings(store=str(store), model=tiny_bundle))
    return service, create_handler(service)


# -- filters ----------------------------------------------------------------------------------------------
def test_keyword_filters_keep_only_matching_products(handler: LambdaHandler, service: SearchService) -> None:
    payload = search(handler, text="shirt", filters={"gender": "Men", "baseColour": ["Blue", "navy blue"]},
                     top_k=20)
    assert payload["results"]
    for hit in payload["results"]:
        assert attribute(service, hit["product_id"], "gender") == "Men"
        assert attribute(service, hit["product_id"], "baseColour") in ("Blue", "Navy Blue")


def test_a_selective_filter_finds_its_exact_top_k(handler: LambdaHandler, service: SearchService,
                                                  vectors: np.ndarray) -> None:
    """A filter keeping a few products out of 400: exactly the best of those, as a scan would rank them."""
    live = service.live
    assert live is not None and live.columns is not None
    mask = live.columns.mask({"category": "Watches"})
    assert mask is not None and 0 < mask.sum() < 100
    payload = search(handler, text="black", filters={"category": "watches"}, top_k=5, keywords=False,
                     collapse_duplicates=False)
    query = service.embedder.encode_texts(["black"])[0]
    expected = np.sort(vectors[mask] @ query)[::-1][:5]
    np.testing.assert_allclose([r["similarity_score"] for r in payload["results"]], expected, atol=1e-5)


def test_number_filters_and_in_stock(shop: tuple[SearchService, LambdaHandler]) -> None:
    service, handler = shop
    payload = search(handler, text="phone", filters={"price": {"gte": 100, "lte": 600}, "in_stock": True}, top_k=30)
    assert payload["results"]
    for hit in payload["results"]:
        assert 100 <= hit["price"] <= 600
        assert product(service, hit["product_id"]).attributes["stock"] > 0
    assert search(handler, text="phone", filters={"price": {"gt": 1e9}})["results"] == []  # nothing passes


def test_fields_lists_what_can_be_filtered(shop: tuple[SearchService, LambdaHandler]) -> None:
    status, payload, _ = call(shop[1], event("GET", "/api/v1/fields"))
    fields = {f["name"]: f for f in payload["fields"]}
    assert status == 200 and fields["category"]["type"] == "keyword" and fields["category"]["values"] == 20
    assert fields["price"]["type"] == "number" and fields["price"]["min"] <= fields["price"]["max"]


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"text": "shirt", "filters": {"fabric": "silk"}}, "unknown_filter_field", "unknown field 'fabric'"),
    ({"text": "shirt", "filters": {"price": {"gte": 50, "lte": 10}}}, "invalid_request", "range is empty"),
    ({"text": "shirt", "filters": {"price": {"from": 1}}}, "invalid_request", "from"),
    ({"text": "shirt", "filters": {"price": "cheap"}}, "bad_filter", "'price' is a number field"),
    ({"text": "shirt", "filters": {"category": []}}, "invalid_request", "filters.category"),
    ({"text": "shirt", "facets": ["fabric"]}, "unknown_filter_field", "unknown field 'fabric'"),
])
def test_bad_filters_are_400_with_a_reason(shop: tuple[SearchService, LambdaHandler], body: dict[str, Any],
                                           code: str, words: str) -> None:
    error = refused(shop[1], body)
    assert error["code"] == code and words in error["message"], error


# -- facets -----------------------------------------------------------------------------------------------
def test_facets_count_the_candidates_and_stay_choosable(handler: LambdaHandler, service: SearchService) -> None:
    unfiltered = search(handler, text="shoes", facets=["category", "gender"])
    counts = {f["value"]: f["count"] for f in unfiltered["facets"]["category"]}
    assert sum(counts.values()) <= 2 * POOL  # the nearest POOL, and up to POOL keyword matches
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    chosen = next(iter(counts))
    filtered = search(handler, text="shoes", filters={"category": chosen}, facets=["category", "gender"])
    assert all(attribute(service, h["product_id"], "category") == chosen for h in filtered["results"])
    # The filtered field is counted without its own filter: the other categories can still be picked...
    assert len(filtered["facets"]["category"]) > 1
    # ...while the other fields count the filtered candidates only.
    live = service.live
    assert live is not None and live.columns is not None
    in_category = live.columns.mask({"category": chosen})
    assert in_category is not None
    assert sum(f["count"] for f in filtered["facets"]["gender"]) <= in_category.sum() < 400


# -- more like this ---------------------------------------------------------------------------------------
def test_more_like_this_is_a_search_by_the_products_own_photo(handler: LambdaHandler) -> None:
    like = search(handler, product_id="10017", top_k=10, collapse_duplicates=False)
    by_photo = search(handler, image=b64(photo("10017")), top_k=11, collapse_duplicates=False)
    ids = [r["product_id"] for r in like["results"]]
    assert "10017" not in ids and like["search_type"] == "image"
    assert ids == [r["product_id"] for r in by_photo["results"] if r["product_id"] != "10017"][:10]
    blended = search(handler, product_id="10017", text="in red", alpha=0.5)
    assert blended["search_type"] == "hybrid" and "10017" not in [r["product_id"] for r in blended["results"]]


def test_more_like_this_refusals(handler: LambdaHandler) -> None:
    assert refused(handler, {"product_id": "no-such-product"}, 404)["code"] == "not_found"
    error = refused(handler, {"product_id": "10017", "image": b64(photo("10017"))})
    assert "not both" in error["message"]


# -- negative terms ---------------------------------------------------------------------------------------
def test_a_negative_term_pushes_its_matches_down(service: SearchService) -> None:
    live = service.live
    assert live is not None
    black = service.embedder.encode_texts(["black"])[0]

    def blackness(query: Query) -> float:
        hits = service.search(query).hits
        return float(np.mean(live.vectors(np.array([live.rows[h.product.product_id] for h in hits])) @ black))

    plain = Query(text="shoes", top_k=20, keywords=False)
    assert blackness(Query(text="shoes", top_k=20, keywords=False, negative_text=("black",))) < blackness(plain)
    # A negative term that nothing resembles more than the average changes nothing.
    same = service.search(Query(text="shoes", top_k=20, keywords=False, negative_text=("   ",)))
    assert [h.product.product_id for h in same.hits] == [h.product.product_id for h in service.search(plain).hits]


def test_negative_keyword_matches_are_dropped(shop: tuple[SearchService, LambdaHandler]) -> None:
    service, handler = shop
    with_apple = [r["product_id"] for r in search(handler, text="iPhone", top_k=5)["results"]]
    without = search(handler, text="iPhone", negative_text="X", top_k=5)["results"]
    x = [pid for pid in with_apple if "X" in product(service, pid).title.split()]
    assert x and not set(x) & {r["product_id"] for r in without[:2]}
    assert refused(handler, {"negative_text": "leather"})["code"] == "empty_query"


# -- paging -----------------------------------------------------------------------------------------------
def test_pages_are_stable_and_follow_each_other(handler: LambdaHandler) -> None:
    whole = search(handler, text="dress", top_k=30)
    pages = [search(handler, text="dress", top_k=10, offset=offset) for offset in (0, 10, 20)]
    assert [r["product_id"] for p in pages for r in p["results"]] == [r["product_id"] for r in whole["results"]]
    assert all(p["has_more"] for p in pages) and pages[1]["offset"] == 10
    last = search(handler, text="dress", top_k=10, offset=MAX_DEPTH - 10)
    assert last["offset"] == MAX_DEPTH - 10 and not last["has_more"]


@pytest.mark.parametrize(("body", "words"), [
    ({"text": "dress", "offset": -1}, "offset"),
    ({"text": "dress", "offset": MAX_DEPTH, "top_k": 1}, f"at most {MAX_DEPTH}"),
    ({"text": "dress", "offset": 150, "top_k": 100}, f"at most {MAX_DEPTH}"),
])
def test_paging_refusals(handler: LambdaHandler, body: dict[str, Any], words: str) -> None:
    assert words in refused(handler, body)["message"]


# -- keywords ---------------------------------------------------------------------------------------------
def test_keywords_find_brand_and_model_names(shop: tuple[SearchService, LambdaHandler]) -> None:
    """The tiny random model knows no words: only the keyword signal can put the named products first."""
    handler = shop[1]
    for text, word in (("iPhone", "iPhone"), ("Huawei P30", "P30"), ("Samsung", "Samsung")):
        on = search(handler, text=text, top_k=3)
        assert word.casefold() in on["results"][0]["title"].casefold(), (text, on["results"])
        assert on["good_match"] is True  # every word of the query is in the first product's name
        off = search(handler, text=text, top_k=3, keywords=False)
        assert [r["product_id"] for r in off["results"]] != [r["product_id"] for r in on["results"]]


# -- the command line -------------------------------------------------------------------------------------
def test_the_cli_does_each(fashion_store: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    def query(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, "query", "--store", str(fashion_store), "--model", str(tiny_bundle), *args],
                              capture_output=True, text=True, timeout=120)

    run = query("--text", "shirt", "--filter", "gender=Men", "--filter", "baseColour=Blue,Navy Blue",
                "--facet", "category", "--negative", "black", "--offset", "2", "--top-k", "3", "--no-keywords")
    assert run.returncode == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["offset"] == 2 and len(payload["results"]) <= 3 and payload["facets"]["category"]
    like = json.loads(query("--like", "10017").stdout)
    assert like["results"] and "10017" not in [r["product_id"] for r in like["results"]]
    for args, words in ((["--text", "x", "--filter", "fabric=silk"], "unknown field 'fabric'"),
                        (["--text", "x", "--filter", "price=9..1"], "range is empty"),
                        (["--text", "x", "--offset", "-1"], "offset"),
                        (["--like", "nope"], "no product with id 'nope'")):
        failed = query(*args)
        assert failed.returncode != 0 and words in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    batch = tmp_path / "queries.jsonl"
    batch.write_text(json.dumps({"id": "a", "text": "dress", "filters": {"gender": "Women"}, "facets": ["usage"]})
                     + "\n" + json.dumps({"id": "b", "text": "dress", "filters": {"gender": {"gte": 1}}}) + "\n")
    lines = [json.loads(line) for line in query("--queries", str(batch)).stdout.splitlines()]
    assert lines[0]["results"] and lines[0]["facets"]["usage"] and "keyword field" in lines[1]["error"]


def test_the_cli_finds_the_bundle_an_index_was_built_with(fashion_store: Path, tiny_bundle: Path,
                                                          tmp_path: Path) -> None:
    """No --model: the bundle whose hash the manifest records, from the models folder; else a clear refusal."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken").mkdir()  # a folder that is no bundle is passed over
    shutil.copytree(tiny_bundle, models / "tiny")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASHION_SEARCH_")}
    run = subprocess.run([CLI, "query", "--store", str(fashion_store), "--text", "shirt"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and json.loads(run.stdout)["results"], run.stderr
    assert "serving it with models/tiny" in run.stderr
    shutil.rmtree(models / "tiny")
    run = subprocess.run([CLI, "query", "--store", str(fashion_store), "--text", "shirt"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "models/fashion-starter is not a model bundle" in run.stderr, run.stderr
