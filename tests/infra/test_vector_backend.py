"""The deployment's vector backend switch (`-c vectorBackend=s3vectors`): the S3 Vectors vector bucket, the
builder's configuration and both roles' least-privilege grants on the versions' indexes; none of it by default."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.stack import BUILDER_CMD, SEARCH_CMD, VECTOR_INDEX_PREFIX
from tests.infra.support import Synth

pytestmark = pytest.mark.heavy

VECTOR_BUCKET = "AWS::S3Vectors::VectorBucket"


@pytest.fixture(scope="module")
def vectors(synth: Synth) -> Template:
    return Template.from_stack(synth(vectorBackend="s3vectors"))


def _function(template: Template, cmd: list[str]) -> dict[str, Any]:
    found = template.find_resources("AWS::Lambda::Function", {"Properties": {"ImageConfig": {"Command": cmd}}})
    assert len(found) == 1
    return next(iter(found.values()))


def _s3vectors_statements(template: Template, cmd: list[str]) -> list[dict[str, Any]]:
    role_id = _function(template, cmd)["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}})
    statements = [s for policy in policies.values() for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    return [s for s in statements if any(a.startswith("s3vectors:") for a in _actions(s))]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_faiss_is_the_default_and_makes_no_vector_bucket(template: Template) -> None:
    assert template.find_resources(VECTOR_BUCKET) == {}
    assert "s3vectors:" not in json.dumps(template.to_json())
    env = _function(template, BUILDER_CMD)["Properties"]["Environment"]["Variables"]
    assert "FASHION_SEARCH_VECTOR_BUCKET" not in env and "VectorBucketName" not in template.to_json()["Outputs"]


def test_s3vectors_makes_one_encrypted_retained_vector_bucket(vectors: Template) -> None:
    (bucket,) = vectors.find_resources(VECTOR_BUCKET).values()
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert bucket["Properties"]["EncryptionConfiguration"] == {"SseType": "AES256"}
    assert "VectorBucketName" not in bucket["Properties"]  # CloudFormation names it: a redeploy never collides


def _bucket_id(template: Template) -> str:
    (bucket_id,) = template.find_resources(VECTOR_BUCKET)
    return str(bucket_id)


def test_the_builder_is_told_the_bucket_and_the_index_prefix(vectors: Template) -> None:
    env = _function(vectors, BUILDER_CMD)["Properties"]["Environment"]["Variables"]
    arn = {"Fn::GetAtt": [_bucket_id(vectors), "VectorBucketArn"]}
    assert env["FASHION_SEARCH_VECTOR_BUCKET"] == {"Fn::Select": [1, {"Fn::Split": ["/", arn]}]}
    assert env["FASHION_SEARCH_VECTOR_INDEX_PREFIX"] == VECTOR_INDEX_PREFIX
    assert vectors.to_json()["Outputs"]["VectorBucketName"]["Value"] == env["FASHION_SEARCH_VECTOR_BUCKET"]
    # The search function learns the index from the version's manifest: no configuration of its own.
    search_env = _function(vectors, SEARCH_CMD)["Properties"]["Environment"]["Variables"]
    assert not any("VECTOR" in name for name in search_env)


@pytest.mark.parametrize(("cmd", "actions"), [
    (SEARCH_CMD, ["s3vectors:GetVectors", "s3vectors:QueryVectors"]),
    (BUILDER_CMD, ["s3vectors:CreateIndex", "s3vectors:DeleteIndex", "s3vectors:PutVectors"]),
])
def test_each_role_may_do_what_its_function_does_on_the_versions_indexes_only(vectors: Template, cmd: list[str],
                                                                               actions: list[str]) -> None:
    (statement,) = _s3vectors_statements(vectors, cmd)
    assert sorted(_actions(statement)) == actions and statement["Effect"] == "Allow"
    arn = {"Fn::GetAtt": [_bucket_id(vectors), "VectorBucketArn"]}
    assert statement["Resource"] == {"Fn::Join": ["", [arn, f"/index/{VECTOR_INDEX_PREFIX}-*"]]}


def test_nothing_else_may_touch_s3_vectors(vectors: Template) -> None:
    holders = [logical_id for logical_id, policy in vectors.find_resources("AWS::IAM::Policy").items()
               if "s3vectors:" in json.dumps(policy)]
    assert len(holders) == 2  # the search and builder roles' policies
