"""The build state machine in the synthesised template: plan -> Distributed Map of chunks -> merge, its
retries and concurrency, what happens when a chunk keeps failing, and its least-privilege role."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from fashion_search.build import staging
from fashion_search.store import versions
from infra.stack import BUILD_ITEMS_KEYS, BUILDER_CMD, CHUNK_ATTEMPTS, INDEX_PREFIX

pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parents[2]


def _one(template: Template, type_: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(type_, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {type_} matching {props}, found {len(found)}"
    return next(iter(found.items()))


def _token(part: Any) -> str:
    """A CloudFormation reference inside the definition, as a readable placeholder."""
    if "Ref" in part:
        return "${" + part["Ref"] + "}"
    logical_id, attribute = part["Fn::GetAtt"]
    return "${" + f"{logical_id}.{attribute}" + "}"


def definition(template: Template) -> dict[str, Any]:
    """The state machine's ASL, its references to other resources rendered as ${LogicalId[.Attr]}."""
    _, machine = _one(template, "AWS::StepFunctions::StateMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    parsed: dict[str, Any] = json.loads("".join(p if isinstance(p, str) else _token(p) for p in parts))
    return parsed


def builder_arn(template: Template) -> str:
    builder_id, _ = _one(template, "AWS::Lambda::Function", {"ImageConfig": {"Command": BUILDER_CMD}})
    return "${" + builder_id + ".Arn}"


def test_plan_then_chunks_then_merge(template: Template) -> None:
    asl = definition(template)
    states = asl["States"]
    assert asl["StartAt"] == "Plan" and asl["TimeoutSeconds"] == 24 * 3600
    assert (states["Plan"]["Next"], states["Chunks"]["Next"], states["Merge"].get("End")) == ("Chunks", "Merge", True)
    for name in ("Plan", "Merge", "Abort"):
        assert states[name]["Resource"].endswith(":states:::lambda:invoke")
        assert states[name]["Parameters"]["FunctionName"] == builder_arn(template)
    # The plan event is the execution's input ({} from the schedule) with the action added.
    assert states["Plan"]["Parameters"]["Payload.$"] == (
        "States.JsonMerge($, States.StringToJson('{\"action\":\"plan\"}'), false)")
    assert states["Plan"]["ResultSelector"] == {"version.$": "$.Payload.version", "chunks.$": "$.Payload.chunks",
                                                "items_key.$": "$.Payload.items_key"}
    assert states["Merge"]["Parameters"]["Payload"] == {"action": "merge", "version.$": "$.version"}


def test_chunks_are_a_distributed_map_over_the_plans_list(template: Template) -> None:
    index_bucket_id, _ = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    chunks = definition(template)["States"]["Chunks"]
    assert chunks["Type"] == "Map" and chunks["Label"] == "Chunks"
    # STANDARD child workflows: a chunk may run up to the builder's 15 minutes (EXPRESS stops at 5).
    assert chunks["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert chunks["MaxConcurrency"] == 10  # cdk.json buildConcurrency
    assert chunks["ToleratedFailurePercentage"] == 0  # one chunk that keeps failing fails the build
    reader = chunks["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:getObject")
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {"Bucket": "${" + index_bucket_id + "}", "Key.$": "$.items_key"}
    # Each item ({"chunk": k} in the plan's list) becomes the builder's chunk event.
    assert chunks["ItemSelector"] == {"action": "chunk", "version.$": "$.version",
                                      "chunk.$": "$$.Map.Item.Value.chunk"}
    assert chunks["ResultPath"] is None  # the merge reads the chunks' output from S3, not from the map


def test_a_failed_chunk_is_retried_with_backoff(template: Template) -> None:
    processor = definition(template)["States"]["Chunks"]["ItemProcessor"]
    assert processor["StartAt"] == "Chunk"
    chunk = processor["States"]["Chunk"]
    assert chunk["Parameters"] == {"FunctionName": builder_arn(template), "Payload.$": "$"}
    assert chunk["OutputPath"] == "$.Payload.chunk"  # one number per chunk: the map's result stays small
    service, anything = chunk["Retry"]
    assert "Lambda.ServiceException" in service["ErrorEquals"]  # throttles and service errors first
    assert anything == {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": CHUNK_ATTEMPTS - 1,
                        "BackoffRate": 3, "JitterStrategy": "FULL"}


def test_a_failed_build_discards_its_staging_and_fails(template: Template) -> None:
    states = definition(template)["States"]
    for name in ("Chunks", "Merge"):
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Abort"}]
    abort = states["Abort"]
    assert abort["Parameters"]["Payload"] == {"action": "abort", "version.$": "$.version"}
    assert abort["Next"] == "BuildFailed" and abort["ResultPath"] is None
    assert states["BuildFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_concurrency_and_chunk_size_come_from_context(cross_origin: Template) -> None:
    assert definition(cross_origin)["States"]["Chunks"]["MaxConcurrency"] == 50


def test_state_machine_role_is_least_privilege(template: Template) -> None:
    machine_id, machine = _one(template, "AWS::StepFunctions::StateMachine")
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    builder_id, _ = _one(template, "AWS::Lambda::Function", {"ImageConfig": {"Command": BUILDER_CMD}})
    index_bucket_id, _ = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    role = template.to_json()["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "states.amazonaws.com"}
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}})
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    builder_arn = {"Fn::GetAtt": [builder_id, "Arn"]}
    executions = [":execution:", {"Fn::Select": [6, {"Fn::Split": [":", {"Ref": machine_id}]}]}]
    assert len(statements) == 5, statements
    assert {"Action": "lambda:InvokeFunction", "Effect": "Allow",
            "Resource": [builder_arn, {"Fn::Join": ["", [builder_arn, ":*"]]}]} in statements  # the builder only
    assert {"Action": "s3:GetObject", "Effect": "Allow",  # the plans' chunk lists only
            "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [index_bucket_id, "Arn"]}, f"/{BUILD_ITEMS_KEYS}"]]}
            } in statements
    # The Distributed Map starts its child executions of this very state machine, and may stop or redrive them.
    assert {"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine_id}} in statements
    describe = next(s for s in statements if s["Action"] == ["states:DescribeExecution", "states:StopExecution"])
    assert describe["Resource"]["Fn::Join"][1][-3:] == [*executions, ":*"]
    redrive = next(s for s in statements if s["Action"] == "states:RedriveExecution")
    assert redrive["Resource"]["Fn::Join"][1][-3:] == [*executions, "/Chunks:*"]


def test_the_plans_chunk_list_is_where_the_role_may_read_it() -> None:
    """The builder's plan step answers items_key (its store's prefix + build/staging.py's layout); the state
    machine's ItemReader reads that key, which its one s3:GetObject statement must cover, and nothing else."""
    spec = importlib.util.spec_from_file_location("builder_handler", REPO / "functions" / "builder" / "handler.py")
    assert spec is not None and spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    version = versions.new_version_id()
    items_key = handler._bucket_key(f"s3://index-bucket/{INDEX_PREFIX}", staging.key(version, staging.ITEMS))
    assert items_key == f"{INDEX_PREFIX}/staging/{version}/chunks.json"
    assert fnmatch.fnmatchcase(items_key, BUILD_ITEMS_KEYS)
    for other in (f"{INDEX_PREFIX}/current.json", f"{INDEX_PREFIX}/versions/{version}/products.jsonl",
                  f"{INDEX_PREFIX}/staging/{version}/chunks/00000/input.jsonl"):
        assert not fnmatch.fnmatchcase(other, BUILD_ITEMS_KEYS)  # IAM's * spans "/" as fnmatch's does
