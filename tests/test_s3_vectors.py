"""The S3 Vectors backend: writing, reading and deleting an index on moto; the exact QueryVectors requests (filters
translated from ours, topK capped) and the reading of their answers with botocore's Stubber; the version
lifecycle (build, publish, prune, a failed or aborted build) and a search service over it, with QueryVectors
answered by tests/s3vectors.py's stand-in; and an opt-in run against real S3 Vectors (`-m aws`)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import numpy as np
import pytest
from botocore.stub import Stubber

from fashion_search.build.pipeline import BuildOptions, abort_build, build_index, prune
from fashion_search.cli import main
from fashion_search.config import ServiceSettings
from fashion_search.index import IndexUnavailable, IndexUnusable, S3VectorsIndex, S3VectorsParams, drop_index
from fashion_search.index import s3_vectors as s3v
from fashion_search.index.columns import Columns
from fashion_search.model.embedder import Embedder
from fashion_search.serve.query import Query
from fashion_search.serve.service import SearchService
from fashion_search.store import open_store, versions
from tests.conftest import write_feed
from tests.s3vectors import BUCKET, REGION, QueryStandIn, index_names, matches, moto_vectors

VERSION = "20261130T101010000000Z-abc123"
NAME = f"fashion-search-{VERSION.lower()}"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryStandIn]:
    with moto_vectors(monkeypatch) as client:
        yield client


def unit(rows: int, dim: int = 8, seed: int = 3) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# A catalog's filterable fields, with what our filters compare case-insensitively, numbers a float32 column
# holds inexactly (19.99), stock unknown for some, a field mixing numbers and words, booleans.
PRODUCTS: list[dict[str, Any]] = [
    {"category": ["Tops", "tops", "Dresses", "Shoes"][i % 4], "brand": "Acme" if i % 3 else None,
     "price": [10, 19.99, 49.5, 120][i % 4], "stock": None if i % 5 == 0 else i % 3, "size": ["M", 10, "XL"][i % 3],
     "sale": i % 2 == 0}
    for i in range(40)
]


# ------------------------------------------------------------------ writing and reading, on moto


def test_a_build_writes_every_row_with_its_filterable_fields(aws: QueryStandIn) -> None:
    vectors = unit(40)
    columns = Columns.build(PRODUCTS)
    index = S3VectorsParams(BUCKET).build(vectors, VERSION, columns)
    assert index_names(aws) == [NAME]
    described = aws.get_index(vectorBucketName=BUCKET, indexName=NAME)["index"]
    assert (described["dimension"], described["distanceMetric"], described["dataType"]) == (8, "cosine", "float32")
    stored = {int(v["key"]): v for v in aws.get_vectors(vectorBucketName=BUCKET, indexName=NAME,
                                                        keys=[str(r) for r in range(40)], returnData=True,
                                                        returnMetadata=True)["vectors"]}
    assert sorted(stored) == list(range(40))
    np.testing.assert_array_equal(np.array([stored[r]["data"]["float32"] for r in range(40)], np.float32), vectors)
    # Keyword values casefolded; numbers as the float32 column holds them; no key where a product has no value.
    assert stored[1]["metadata"] == {"category": "tops", "brand": "acme", "price": float(np.float32(19.99)),
                                     "stock": 1.0, "size": "10", "sale": "false"}
    assert stored[0]["metadata"] == {"category": "tops", "price": 10.0, "size": "m", "sale": "true"}
    assert index.fields == {"brand": "keyword", "category": "keyword", "price": "number", "sale": "keyword",
                            "size": "keyword", "stock": "number"}


def test_vectors_go_in_batches_of_500_and_come_back_in_batches_of_100(aws: QueryStandIn,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, list[int]] = {"put_vectors": [], "get_vectors": []}

    class Counting:
        def __getattr__(self, name: str) -> Any:
            method = getattr(aws, name)
            if name not in calls:
                return method

            def counted(**request: Any) -> Any:
                calls[name].append(len(request.get("vectors") or request.get("keys")))
                return method(**request)
            return counted

    vectors = unit(1234)
    index = S3VectorsParams(BUCKET, client=Counting).build(vectors, VERSION)
    assert sorted(calls["put_vectors"]) == [234, 500, 500]
    rows = np.array([5, 1233, 5, *range(300, 550)])  # repeats and any order
    np.testing.assert_array_equal(index.vectors(rows), vectors[rows])
    assert sorted(calls["get_vectors"]) == [52, 100, 100]  # 252 distinct rows
    assert index.vectors(np.array([], dtype=np.int64)).shape == (0, 8)


def test_drop_deletes_the_index_once_and_then_has_nothing_to_do(aws: QueryStandIn) -> None:
    params = S3VectorsParams(BUCKET)
    params.build(unit(3), VERSION)
    assert index_names(aws) == [NAME]
    drop_index(params.describe(VERSION))
    drop_index(params.describe(VERSION))  # already gone: no error
    drop_index(S3VectorsParams("no-such-bucket").describe(VERSION))  # its bucket too
    assert index_names(aws) == []


def test_drop_reports_what_stops_it(stubbed: tuple[S3VectorsIndex, Stubber]) -> None:
    index, stubber = stubbed
    stubber.add_client_error("delete_index", service_error_code="AccessDeniedException", service_message="denied",
                             http_status_code=403, expected_params={"vectorBucketName": BUCKET, "indexName": NAME})
    with pytest.raises(IndexUnusable, match=f"deleting index {NAME} of vector bucket {BUCKET}: .*AccessDenied"):
        S3VectorsIndex.drop({"bucket": BUCKET, "index": NAME}, index.client)


def test_a_build_that_fails_deletes_the_index_it_created(aws: QueryStandIn) -> None:
    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(aws, name)

        def put_vectors(self, **request: Any) -> Any:
            if request["vectors"][0]["key"] == "500":
                aws.put_vectors(vectorBucketName=BUCKET, indexName="no-such-index", vectors=request["vectors"])
            return aws.put_vectors(**request)

    with pytest.raises(IndexUnusable, match=r"putting vectors 500-999 into index .*could not be found"):
        S3VectorsParams(BUCKET, client=Failing).build(unit(1200), VERSION)
    assert index_names(aws) == []


def test_names_follow_aws_rules() -> None:
    assert S3VectorsParams(BUCKET).describe(VERSION) == {"type": "S3Vectors", "metric": "cosine", "bucket": BUCKET,
                                                        "index": NAME}
    for bucket in ("Shop_Vectors", "ab", "-vectors", "a" * 64):
        with pytest.raises(ValueError, match="vector bucket"):
            S3VectorsParams(bucket)
    with pytest.raises(ValueError, match="prefix"):
        S3VectorsParams(BUCKET, prefix="x" * 34)
    with pytest.raises(ValueError, match="makes no S3 Vectors index name"):
        S3VectorsParams(BUCKET).build(unit(2), "")


def test_metadata_keeps_within_aws_limits_whole_fields_at_a_time() -> None:
    """50 keys and (with a margin) 2 KB a vector: the most common fields first; a field that would overflow any
    product's budget is left out for all, not just there (the service would then drop products that match)."""
    wide: list[dict[str, Any]] = [{"a": "x" * 900, "b": "y" * 900, "c": 1, "rare": "z" * 700} for _ in range(3)]
    del wide[1]["rare"], wide[2]["rare"]
    # a (903 B) fits; b would take the total past the budget everywhere, rare in the one product that has it.
    assert s3v.metadata_fields(Columns.build(wide)) == {"a": "keyword", "c": "number"}
    many = [{f"f{n:02d}": n for n in range(60)} for _ in range(3)]
    many[0]["common"] = many[1]["common"] = "common"
    chosen = s3v.metadata_fields(Columns.build(many))
    assert len(chosen) == s3v.METADATA_KEYS and "common" not in chosen  # the fields every product has go first


# ------------------------------------------------------------------ our filters, as the service applies them


FILTERS: list[list[dict[str, Any]]] = [
    [{"category": "TOPS"}], [{"category": ["tops", "Dresses"]}], [{"brand": "acme"}], [{"price": 19.99}],
    [{"price": [10, 19.99]}], [{"price": {"gte": 19.99}}], [{"price": {"gt": 10, "lte": 50}}], [{"in_stock": True}],
    [{"in_stock": False}], [{"sale": True}], [{"size": 10}], [{"size": ["m", 10]}],
    [{"category": "tops", "price": {"lt": 100}, "in_stock": True}],
    [{"category": ["tops", "shoes"]}, {"category": "Shoes", "size": "xl"}],  # filters, then the values a text names
]


@pytest.mark.parametrize("where", FILTERS, ids=json.dumps)
def test_the_filter_document_keeps_exactly_the_rows_our_filters_keep(aws: QueryStandIn,
                                                                       where: list[dict[str, Any]]) -> None:
    """Evaluated over what the index stores, as AWS documents its operators (tests/s3vectors.matches)."""
    columns = Columns.build(PRODUCTS)
    index = S3VectorsParams(BUCKET).build(unit(40), VERSION, columns)
    document = index.filter_document(where)
    assert document is not None
    stored = aws.list_vectors(vectorBucketName=BUCKET, indexName=NAME, returnMetadata=True)["vectors"]
    passing = {int(v["key"]) for v in stored if matches(document, v.get("metadata", {}))}
    expected = np.ones(40, dtype=bool)
    for filters in where:
        mask = columns.mask(filters)
        assert mask is not None
        expected &= mask
    assert passing == set(np.flatnonzero(expected).tolist()) and passing


# ------------------------------------------------------------------ QueryVectors requests, with Stubber

FIELDS = {"category": "keyword", "price": "number", "stock": "number", "size": "keyword"}


@pytest.fixture
def stubbed() -> Iterator[tuple[S3VectorsIndex, Stubber]]:
    """An index over a botocore client whose answers we script; every request is validated against the
    service model before it would be sent."""
    client = botocore.session.get_session().create_client(
        "s3vectors", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield S3VectorsIndex(client, BUCKET, NAME, 4, 500, FIELDS), stubber
        stubber.assert_no_pending_responses()


QUERY = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)


def expect(stubber: Stubber, top_k: int, hits: list[tuple[str, float]], document: dict[str, Any] | None = None,
           ) -> None:
    request: dict[str, Any] = {"vectorBucketName": BUCKET, "indexName": NAME, "topK": top_k,
                               "queryVector": {"float32": [1.0, 0.0, 0.0, 0.0]}, "returnDistance": True}
    if document is not None:
        request["filter"] = document
    answer = {"vectors": [{"key": key, "distance": distance} for key, distance in hits], "distanceMetric": "cosine"}
    stubber.add_response("query_vectors", answer, request)


F32 = float(np.float32(19.99))


@pytest.mark.parametrize(("where", "document"), [
    ([{"category": "Tops"}], {"category": {"$eq": "tops"}}),
    ([{"category": ["Tops", "DRESSES", "tops"]}], {"category": {"$in": ["tops", "dresses"]}}),
    ([{"size": 10}], {"size": {"$eq": "10"}}),
    ([{"price": 19.99}], {"price": {"$eq": F32}}),
    ([{"price": [10, 19.99]}], {"price": {"$in": [10.0, F32]}}),
    ([{"price": {"gte": 10, "lt": 19.99}}], {"$and": [{"price": {"$gte": 10.0}}, {"price": {"$lt": F32}}]}),
    ([{"price": {"gt": 5}}], {"price": {"$gt": 5.0}}),
    ([{"price": {"lte": 5}}], {"price": {"$lte": 5.0}}),
    ([{"in_stock": True}], {"stock": {"$gt": 0.0}}),
    ([{"in_stock": False}], {"stock": {"$lte": 0.0}}),
    ([{"category": "tops", "in_stock": True}, {"category": ["Shoes"]}],
     {"$and": [{"category": {"$eq": "tops"}}, {"stock": {"$gt": 0.0}}, {"category": {"$eq": "shoes"}}]}),
    # A field the index does not hold is left to the mask.
    ([{"colour": "red", "category": "tops"}], {"category": {"$eq": "tops"}}),
])
def test_each_of_our_filters_becomes_its_s3_vectors_filter(stubbed: tuple[S3VectorsIndex, Stubber],
                                                           where: list[dict[str, Any]],
                                                           document: dict[str, Any]) -> None:
    index, stubber = stubbed
    expect(stubber, 10, [("7", 0.25)], document)
    scores, rows = index.search(QUERY, 10, where=where)
    assert rows[0, 0] == 7 and scores[0, 0] == pytest.approx(0.75)


def test_without_conditions_the_request_has_no_filter(stubbed: tuple[S3VectorsIndex, Stubber]) -> None:
    index, stubber = stubbed
    expect(stubber, 3, [("1", 0.0), ("2", 0.5), ("3", 1.0)])
    expect(stubber, 3, [("1", 0.0)])
    index.search(QUERY, 3)
    index.search(QUERY, 3, where=[{}, {"colour": "red"}])


def test_top_k_is_capped_at_100_and_answers_are_read_best_first(stubbed: tuple[S3VectorsIndex, Stubber]) -> None:
    """The ranking asks POOL = 256: the service gives 100. Fewer than k come back padded with row -1; a
    cosine distance d is a similarity 1 - d (FAISS's inner product of unit vectors)."""
    index, stubber = stubbed
    expect(stubber, 100, [("4", 0.5), ("9", 0.1), ("2", 1.5)])  # not in order
    scores, rows = index.search(QUERY, 256)
    assert rows.shape == (1, 100)
    assert rows[0, :4].tolist() == [9, 4, 2, -1] and (rows[0, 3:] == -1).all()
    np.testing.assert_allclose(scores[0, :3], [0.9, 0.5, -0.5], atol=1e-6)
    assert np.isneginf(scores[0, 3:]).all()


def test_a_mask_is_applied_to_the_100_nearest(stubbed: tuple[S3VectorsIndex, Stubber]) -> None:
    """More like this leaves the product out (a mask, not a filter): the service is asked for its 100 nearest, so
    the product's own place is filled, and the mask decides what comes back."""
    index, stubber = stubbed
    allow = np.ones(500, dtype=bool)
    allow[9] = False
    expect(stubber, 100, [("9", 0.0), ("4", 0.1), ("2", 0.2), ("3", 0.3)], {"category": {"$eq": "tops"}})
    scores, rows = index.search(QUERY, 2, allow, where=[{"category": "tops"}])
    assert rows.tolist() == [[4, 2]]
    np.testing.assert_allclose(scores, [[0.9, 0.8]], atol=1e-6)
    assert index.search(QUERY, 2, np.zeros(500, dtype=bool))[1].shape == (1, 0)  # nothing allowed: no request


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailableException", "AccessDeniedException"])
def test_an_aws_error_is_a_public_503_with_the_details_kept_for_the_log(stubbed: tuple[S3VectorsIndex, Stubber],
                                                                        code: str,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    index, stubber = stubbed
    stubber.add_client_error("query_vectors", service_error_code=code, service_message="secret detail",
                             http_status_code=400)
    with pytest.raises(IndexUnavailable) as caught:
        index.search(QUERY, 5)
    assert (caught.value.status, caught.value.code) == (503, "vector_search_unavailable")
    assert "secret" not in caught.value.public_message and NAME not in caught.value.public_message
    assert code in str(caught.value.__cause__)
    assert code in caplog.text and NAME in caplog.text


def test_an_answer_that_is_not_of_our_index_is_refused(stubbed: tuple[S3VectorsIndex, Stubber]) -> None:
    index, stubber = stubbed
    expect(stubber, 5, [("product-7", 0.1)])
    with pytest.raises(IndexUnusable, match="not row numbers"):
        index.search(QUERY, 5)
    expect(stubber, 5, [("500", 0.1)])
    with pytest.raises(IndexUnusable, match="beyond its 500 vectors"):
        index.search(QUERY, 5)


# ------------------------------------------------------------------ versions: build, publish, prune, fail


def _build(feed: Path, store: Path, bundle: Path, **options: Any) -> dict[str, Any]:
    summary = asyncio.run(build_index(str(feed), open_store(store), Embedder(bundle),
                                      BuildOptions(index=S3VectorsParams(BUCKET), **options)))
    return versions.read_manifest(open_store(store), summary.version).model_dump()


def test_a_version_names_its_own_index_and_pruning_deletes_it(aws: QueryStandIn, tmp_path: Path,
                                                              tiny_bundle: Path) -> None:
    feed, store = write_feed(tmp_path / "feed.jsonl", 30), tmp_path / "store"
    first = _build(feed, store, tiny_bundle, keep_versions=2)
    name = first["index"]["index"]
    assert first["index"] == {"type": "S3Vectors", "metric": "cosine", "bucket": BUCKET,
                              "index": f"fashion-search-{first['version'].lower()}"}
    assert "s3vectors.json" in first["files"] and "index.faiss" not in first["files"]
    info = json.loads((store / "versions" / first["version"] / "s3vectors.json").read_text())
    assert (info["index"], info["count"], info["dimension"]) == (name, 30, 32)
    second = _build(feed, store, tiny_bundle, keep_versions=2)
    assert index_names(aws) == sorted([name, second["index"]["index"]])
    third = _build(feed, store, tiny_bundle, keep_versions=2)
    assert index_names(aws) == sorted([second["index"]["index"], third["index"]["index"]])
    assert sorted(versions.list_versions(open_store(store))) == [second["version"], third["version"]]
    with pytest.raises(ValueError, match="keep at least 2 versions"):
        BuildOptions(index=S3VectorsParams(BUCKET), keep_versions=1)


def test_a_build_that_fails_to_publish_leaves_no_index(aws: QueryStandIn, tmp_path: Path, tiny_bundle: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(versions, "publish", refuse)
    with pytest.raises(OSError, match="disk full"):
        _build(write_feed(tmp_path / "feed.jsonl", 10), tmp_path / "store", tiny_bundle)
    assert index_names(aws) == [] and versions.read_pointer(open_store(tmp_path / "store")) is None


def test_abort_drops_an_unpublished_build_s_index_never_a_published_one(aws: QueryStandIn, tmp_path: Path,
                                                                        tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    published = _build(write_feed(tmp_path / "feed.jsonl", 10), tmp_path / "store", tiny_bundle)
    params = S3VectorsParams(BUCKET)
    params.build(unit(3, 32), "20261130T111111000000Z-dead00")  # a merge that died before publishing
    abort_build(store, "20261130T111111000000Z-dead00", params)
    abort_build(store, published["version"], params)  # a merge that published, then failed (say, pruning)
    assert index_names(aws) == [published["index"]["index"]]


def test_prune_finds_a_dead_build_s_index(aws: QueryStandIn, tmp_path: Path, tiny_bundle: Path) -> None:
    """A build killed after its merge made the index: no manifest names it, the deployment's params do."""
    store = open_store(tmp_path / "store")
    published = _build(write_feed(tmp_path / "feed.jsonl", 10), tmp_path / "store", tiny_bundle)
    dead = "20261130T111111000000Z-dead00"
    S3VectorsParams(BUCKET).build(unit(3, 32), dead)
    store.put(versions.staging_key(dead, "plan.json"), b"{}")
    prune(store, 2, S3VectorsParams(BUCKET), grace_seconds=0)
    assert index_names(aws) == [published["index"]["index"]]


def test_the_cli_builds_on_s3_vectors_and_says_what_it_needs(aws: QueryStandIn, tmp_path: Path, tiny_bundle: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    feed, store = write_feed(tmp_path / "feed.jsonl", 10), tmp_path / "store"
    base = ["build", "--catalog", str(feed), "--store", str(store), "--model", str(tiny_bundle), "--quiet"]
    assert main([*base, "--index", "s3vectors"]) == 2
    assert "--index s3vectors needs --vector-bucket" in capsys.readouterr().err
    assert main([*base, "--index", "s3vectors", "--vector-bucket", BUCKET, "--keep", "1"]) == 2
    assert "keep at least 2 versions" in capsys.readouterr().err
    assert main([*base, "--index", "s3vectors", "--vector-bucket", BUCKET]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    assert index_names(aws) == [f"fashion-search-{version.lower()}"]


# ------------------------------------------------------------------ a search service over S3 Vectors


@pytest.fixture
def service(aws: QueryStandIn, tmp_path: Path, tiny_bundle: Path) -> SearchService:
    _build(write_feed(tmp_path / "feed.jsonl", 120), tmp_path / "store", tiny_bundle)
    return SearchService(ServiceSettings(store=str(tmp_path / "store"), model=tiny_bundle))


def test_the_service_searches_the_version_s_index_with_our_filters(service: SearchService,
                                                                   aws: QueryStandIn) -> None:
    assert service.health()["status"] == "ok" and service.live is not None
    assert service.live.index.kind == "S3Vectors"
    before = len(aws.queries)
    result = service.search(Query(text="shirt", filters={"gender": "MEN"}, top_k=10))
    assert result.hits and all(h.product.attributes["gender"] == "Men" for h in result.hits)
    sent = aws.queries[before:]  # the neighbours', and the holders' of the values "shirt" names
    assert sent and all({"gender": {"$eq": "men"}} in q["filter"].get("$and", [q["filter"]]) for q in sent)
    assert all(q["topK"] == 100 for q in sent)  # the pool asks 256; the service gives 100


def test_more_like_this_leaves_the_product_out_and_fills_its_place(service: SearchService) -> None:
    assert service.live is not None
    liked = service.live.products[0].product_id
    result = service.search(Query(product_id=liked, top_k=10, collapse_duplicates=False))
    assert len(result.hits) == 10 and liked not in {h.product.product_id for h in result.hits}


# ------------------------------------------------------------------ real S3 Vectors (opt in)

LIVE_BUCKET = os.environ.get("FASHION_SEARCH_TEST_VECTOR_BUCKET")


# Credentials are looked for (which may ask the instance metadata service) only when a bucket is named.
@pytest.mark.aws
@pytest.mark.skipif(not (LIVE_BUCKET and boto3.session.Session().get_credentials()),
                    reason="needs AWS credentials and FASHION_SEARCH_TEST_VECTOR_BUCKET, a vector bucket to use")
def test_on_real_s3_vectors_an_index_is_built_queried_filtered_and_deleted() -> None:
    """README, "Vector backends": builds a 600-vector index in the bucket named, queries it, deletes it."""
    assert LIVE_BUCKET
    params = S3VectorsParams(LIVE_BUCKET, prefix="fashion-search-test")
    version = versions.new_version_id()
    vectors = unit(600, dim=16, seed=11)
    columns = Columns.build(PRODUCTS * 15)
    index = params.build(vectors, version, columns)
    try:
        np.testing.assert_allclose(index.vectors(np.array([0, 599])), vectors[[0, 599]], atol=1e-6)
        scores, rows = index.search(vectors[:5], 10)
        assert (rows[:, 0] == np.arange(5)).all() and np.allclose(scores[:, 0], 1.0, atol=1e-3)
        where = [{"category": "Tops", "price": {"lte": 50}}]
        mask = columns.mask(where[0])
        assert mask is not None
        _, rows = index.search(vectors[:5], 20, where=where)
        assert (rows >= 0).sum() > 0 and mask[rows[rows >= 0]].all()
    finally:
        drop_index(params.describe(version))
    assert params.index_name(version) not in {
        i["indexName"] for i in boto3.client("s3vectors").list_indexes(vectorBucketName=LIVE_BUCKET,
                                                                         prefix="fashion-search-test")["indexes"]}
