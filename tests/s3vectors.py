"""S3 Vectors without AWS: moto for what it supports (vector buckets, indexes, PutVectors, GetVectors, ListVectors,
DeleteIndex) and, for the QueryVectors moto lacks, an exact stand-in over moto's stored vectors.

The stand-in checks every request against botocore's service model (as the real client would before sending
it), evaluates the filter document with the operators AWS documents (s3-vectors-metadata-filtering: $eq, $in,
$gt, $gte, $lt, $lte, $and; anything else fails the test, so we notice emitting it) and answers with cosine
distances, nearest first. The exact requests our index sends and how it reads answers are pinned separately,
with botocore's Stubber (tests/test_s3_vectors.py).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.validate import ParamValidator
from moto import mock_aws

BUCKET = "fashion-vectors-test"
REGION = "us-east-1"
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt,
                                                     "$lte": operator.le}


def matches(document: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Whether a vector's metadata passes an S3 Vectors filter document (a missing key passes no comparison)."""
    for key, condition in document.items():
        if key == "$and":
            if not all(matches(part, metadata) for part in condition):
                return False
            continue
        assert not key.startswith("$"), f"an operator the stand-in does not know: {key}"
        ((op, argument),) = (condition if isinstance(condition, dict) else {"$eq": condition}).items()
        if key not in metadata:
            return False
        value = metadata[key]
        if op == "$eq":
            passed = value == argument
        elif op == "$in":
            assert isinstance(argument, list) and argument, "$in takes a non-empty list"
            passed = value in argument
        else:
            assert op in COMPARISONS, f"an operator the stand-in does not know: {op}"
            assert isinstance(argument, int | float) and isinstance(value, int | float)
            passed = COMPARISONS[op](value, argument)
        if not passed:
            return False
    return True


def validate(client: Any, operation: str, request: dict[str, Any]) -> None:
    """Fail as botocore would on a request its service model refuses."""
    shape = client.meta.service_model.operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


class QueryStandIn:
    """moto's s3vectors client plus QueryVectors, computed exactly over the stored vectors."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.queries: list[dict[str, Any]] = []  # every QueryVectors request, as sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query_vectors(self, **request: Any) -> dict[str, Any]:
        validate(self._client, "QueryVectors", request)
        self.queries.append(request)
        pages = self._client.get_paginator("list_vectors").paginate(
            vectorBucketName=request["vectorBucketName"], indexName=request["indexName"], returnData=True,
            returnMetadata=True)
        stored = [v for page in pages for v in page["vectors"]
                  if "filter" not in request or matches(request["filter"], v.get("metadata", {}))]
        query = np.asarray(request["queryVector"]["float32"], dtype=np.float64)
        matrix = np.array([v["data"]["float32"] for v in stored], dtype=np.float64).reshape(len(stored), len(query))
        distances = 1.0 - matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
        order = np.argsort(distances, kind="stable")[: request["topK"]]
        return {"vectors": [{"key": stored[i]["key"], "distance": float(distances[i])} for i in order],
                "distanceMetric": "cosine"}


@contextmanager
def moto_vectors(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryStandIn]:
    """moto's S3 Vectors with an empty vector bucket BUCKET; every client the index code makes is the stand-in."""
    from fashion_search.index import s3_vectors

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = QueryStandIn(boto3.client("s3vectors", region_name=REGION))
        client.create_vector_bucket(vectorBucketName=BUCKET)
        monkeypatch.setattr(s3_vectors, "make_client", lambda: client)
        yield client


def index_names(client: Any) -> list[str]:
    return sorted(i["indexName"] for i in client.list_indexes(vectorBucketName=BUCKET)["indexes"])
