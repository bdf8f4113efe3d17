"""Assertions on the synthesised CloudFormation template: one test per acceptance point of the
infrastructure issue, against the default deployment (cdk.json) and a cross-origin production one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Match, Template

from infra.stack import BUILDER_CMD, INDEX_PREFIX, MODEL_DIR, SEARCH_CMD
from tests.infra.support import Synth

pytestmark = pytest.mark.heavy


def _one(template: Template, type_: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    found = template.find_resources(type_, {"Properties": props} if props else None)
    assert len(found) == 1, f"expected one {type_} matching {props}, found {len(found)}"
    return next(iter(found.items()))


def _function(template: Template, cmd: list[str]) -> tuple[str, dict[str, Any]]:
    return _one(template, "AWS::Lambda::Function", {"ImageConfig": {"Command": cmd}})


def _statements(template: Template) -> list[tuple[str, dict[str, Any]]]:
    """Every statement of every identity and resource policy, with the logical id that holds it."""
    found = []
    for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy"):
        for logical_id, resource in template.find_resources(type_).items():
            found += [(logical_id, s) for s in resource["Properties"]["PolicyDocument"]["Statement"]]
    for logical_id, resource in template.find_resources("AWS::IAM::Role").items():
        for policy in resource["Properties"].get("Policies", []):
            found += [(logical_id, s) for s in policy["PolicyDocument"]["Statement"]]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------ functions


def test_search_is_an_image_function_with_the_configured_memory(template: Template) -> None:
    _, search = _function(template, SEARCH_CMD)
    props = search["Properties"]
    assert props["PackageType"] == "Image"
    assert props["MemorySize"] == 2048
    assert props["Timeout"] == 15
    assert props["Architectures"] == ["x86_64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    env = props["Environment"]["Variables"]
    assert env["FASHION_SEARCH_MODEL"] == MODEL_DIR
    assert set(env) == {
        "FASHION_SEARCH_STORE", "FASHION_SEARCH_MODEL", "FASHION_SEARCH_ALLOWED_ORIGINS",
        "FASHION_SEARCH_THUMBNAIL_BASE_URL", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
        "LOG_LEVEL",
    }
    index_bucket_id, _ = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    assert env["FASHION_SEARCH_STORE"] == {"Fn::Join": ["", ["s3://", {"Ref": index_bucket_id}, f"/{INDEX_PREFIX}"]]}


def test_memory_and_concurrency_come_from_context(cross_origin: Template) -> None:
    _, search = _function(cross_origin, SEARCH_CMD)
    assert search["Properties"]["MemorySize"] == 3008
    assert search["Properties"]["ReservedConcurrentExecutions"] == 20
    _, builder = _function(cross_origin, BUILDER_CMD)
    assert builder["Properties"]["MemorySize"] == 10240
    cross_origin.has_resource_properties(
        "AWS::Lambda::Alias",
        {"Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2}},
    )


def test_default_has_no_reserved_or_provisioned_concurrency(template: Template) -> None:
    _, search = _function(template, SEARCH_CMD)
    assert "ReservedConcurrentExecutions" not in search["Properties"]
    _, alias = _one(template, "AWS::Lambda::Alias")
    assert "ProvisionedConcurrencyConfig" not in alias["Properties"]


def test_both_functions_run_one_image(template: Template) -> None:
    _, search = _function(template, SEARCH_CMD)
    _, builder = _function(template, BUILDER_CMD)
    assert search["Properties"]["Code"] == builder["Properties"]["Code"]
    assert "ImageUri" in search["Properties"]["Code"]


def test_builder_runs_the_pipeline_for_up_to_15_minutes(template: Template) -> None:
    _, builder = _function(template, BUILDER_CMD)
    props = builder["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Timeout"] == 900
    assert props["MemorySize"] == 3008
    env = props["Environment"]["Variables"]
    assert env["FASHION_SEARCH_CATALOG"] == "https://dummyjson.com/products"
    assert env["FASHION_SEARCH_KEEP_VERSIONS"] == "5"
    assert env["FASHION_SEARCH_MODEL"] == MODEL_DIR
    assert env["FASHION_SEARCH_CHUNK_SIZE"] == "10000"
    assert "FASHION_SEARCH_LIMIT" not in env


def test_builder_catalog_is_configuration(cross_origin: Template) -> None:
    _, builder = _function(cross_origin, BUILDER_CMD)
    env = builder["Properties"]["Environment"]["Variables"]
    assert env["FASHION_SEARCH_CATALOG"] == "https://fakestoreapi.com/products"
    assert env["FASHION_SEARCH_LIMIT"] == "100"
    assert env["FASHION_SEARCH_CHUNK_SIZE"] == "5000"


def test_functions_log_to_their_own_log_groups_with_retention(template: Template) -> None:
    for cmd in (SEARCH_CMD, BUILDER_CMD):
        _, function = _function(template, cmd)
        log_group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert template.to_json()["Resources"][log_group]["Properties"]["RetentionInDays"] == 30


# ------------------------------------------------------------------ schedule


def test_schedule_starts_the_build_state_machine(template: Template) -> None:
    machine_id, _ = _one(template, "AWS::StepFunctions::StateMachine")
    _, rule = _one(template, "AWS::Events::Rule", {
        "ScheduleExpression": "rate(1 day)",
        "State": "ENABLED",
        "Targets": [Match.object_like({"Arn": {"Ref": machine_id}})],
    })
    (target,) = rule["Properties"]["Targets"]
    assert target["Input"] == "{}"  # not the scheduled event: the plan step reads "catalog" and "limit" from it
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2}
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    _, policy = _one(template, "AWS::IAM::Policy", {"Roles": [{"Ref": role_id}]})
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine_id}}
    ]
    # The schedule no longer invokes the builder directly.
    assert not template.find_resources("AWS::Lambda::Permission", {"Properties": {"Principal": "events.amazonaws.com"}})


def test_schedule_comes_from_context(cross_origin: Template) -> None:
    cross_origin.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "cron(0 3 * * ? *)"})


# ------------------------------------------------------------------ API


def test_http_api_routes_api_v1_to_the_search_alias(template: Template) -> None:
    alias_id, _ = _one(template, "AWS::Lambda::Alias")
    integration_id, _ = _one(template, "AWS::ApiGatewayV2::Integration", {
        "IntegrationType": "AWS_PROXY",
        "IntegrationUri": {"Ref": alias_id},
        "PayloadFormatVersion": "2.0",
    })
    routes = template.find_resources("AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "GET /api/v1/{proxy+}", "POST /api/v1/{proxy+}"
    }
    for route in routes.values():
        assert route["Properties"]["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration_id}]]}


def test_stage_is_throttled_and_access_logged(template: Template) -> None:
    _, stage = _one(template, "AWS::ApiGatewayV2::Stage")
    props = stage["Properties"]
    assert props["StageName"] == "$default"
    assert props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 100}
    destination = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"]
    assert template.to_json()["Resources"][destination[0]]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(props["AccessLogSettings"]["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert fields["status"] == "$context.status"


def test_throttling_comes_from_context(cross_origin: Template) -> None:
    cross_origin.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "DefaultRouteSettings": {"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40}
    })


def test_cross_origin_cors_allows_the_site_and_configured_extras_only(cross_origin: Template) -> None:
    distribution_id, _ = _one(cross_origin, "AWS::CloudFront::Distribution")
    _, api = _one(cross_origin, "AWS::ApiGatewayV2::Api")
    cors = api["Properties"]["CorsConfiguration"]
    assert cors["AllowOrigins"] == [
        {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]},
        "https://shop.example.com",
        "http://localhost:5173",
    ]
    assert sorted(cors["AllowMethods"]) == ["GET", "OPTIONS", "POST"]
    assert cors["AllowHeaders"] == ["content-type"]
    assert "AllowCredentials" not in cors


def test_same_origin_api_needs_no_cors_and_refuses_other_origins(template: Template) -> None:
    """The page calls /api/* on its own origin through CloudFront; with no extra origins the API
    has no CORS rules, so API Gateway sends no CORS headers and browsers refuse other pages."""
    _, api = _one(template, "AWS::ApiGatewayV2::Api")
    assert "CorsConfiguration" not in api["Properties"]


def test_same_origin_api_allows_configured_extras(synth: Synth) -> None:
    extras = Template.from_stack(synth(allowedOrigins='["https://shop.example.com"]'))
    extras.has_resource_properties("AWS::ApiGatewayV2::Api", {
        "CorsConfiguration": Match.object_like({"AllowOrigins": ["https://shop.example.com"]})
    })


def test_functions_know_the_allowed_origins_and_thumbnail_url(cross_origin: Template) -> None:
    distribution_id, _ = _one(cross_origin, "AWS::CloudFront::Distribution")
    _, search = _function(cross_origin, SEARCH_CMD)
    env = search["Properties"]["Environment"]["Variables"]
    domain = {"Fn::GetAtt": [distribution_id, "DomainName"]}
    assert env["FASHION_SEARCH_ALLOWED_ORIGINS"] == {
        "Fn::Join": ["", ["https://", domain, ",https://shop.example.com,http://localhost:5173"]]
    }
    assert env["FASHION_SEARCH_THUMBNAIL_BASE_URL"] == {"Fn::Join": ["", ["https://", domain, "/thumbnails/"]]}


# ------------------------------------------------------------------ site


def _behaviors(template: Template) -> tuple[dict[str, Any], dict[str, Any]]:
    _, distribution = _one(template, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    return config, {b["PathPattern"]: b for b in config.get("CacheBehaviors", [])}


def test_cloudfront_uses_oac_and_redirects_to_https(template: Template) -> None:
    config, behaviors = _behaviors(template)
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behaviors["/thumbnails/*"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behaviors["/api/*"]["ViewerProtocolPolicy"] == "https-only"  # no redirect for POSTs
    s3_origins = [o for o in config["Origins"] if "S3OriginConfig" in o]
    assert len(s3_origins) == 2
    for origin in s3_origins:
        assert "OriginAccessControlId" in origin
        assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}  # no legacy OAI
    oacs = template.find_resources("AWS::CloudFront::OriginAccessControl")
    assert len(oacs) == 2
    for oac in oacs.values():
        oac_config = oac["Properties"]["OriginAccessControlConfig"]
        assert (oac_config["OriginAccessControlOriginType"], oac_config["SigningBehavior"],
                oac_config["SigningProtocol"]) == ("s3", "always", "sigv4")
    assert config["DefaultRootObject"] == "index.html"


def test_cloudfront_serves_thumbnails_from_the_index_prefix(template: Template) -> None:
    index_bucket_id, _ = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    config, behaviors = _behaviors(template)
    origin = next(o for o in config["Origins"] if o["Id"] == behaviors["/thumbnails/*"]["TargetOriginId"])
    assert origin["DomainName"] == {"Fn::GetAtt": [index_bucket_id, "RegionalDomainName"]}
    assert origin["OriginPath"] == f"/{INDEX_PREFIX}"


def test_cloudfront_reads_only_thumbnails_of_the_index_bucket(template: Template) -> None:
    index_bucket_id, _ = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    distribution_id, _ = _one(template, "AWS::CloudFront::Distribution")
    _, policy = _one(template, "AWS::S3::BucketPolicy", {"Bucket": {"Ref": index_bucket_id}})
    grants = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert len(grants) == 1
    (grant,) = grants
    assert grant["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert grant["Action"] == "s3:GetObject"
    assert _dumps(grant["Resource"]).endswith(f'"/{INDEX_PREFIX}/thumbnails/*"]]}}')
    assert _dumps(grant["Condition"]["StringEquals"]["AWS:SourceArn"]).endswith(
        _dumps({"Ref": distribution_id}) + "]]}"
    )


def test_api_behaviour_forwards_everything_but_host_and_caches_nothing(template: Template) -> None:
    api_id, _ = _one(template, "AWS::ApiGatewayV2::Api")
    config, behaviors = _behaviors(template)
    api = behaviors["/api/*"]
    assert api["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # Managed-CachingDisabled
    assert api["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"  # AllViewerExceptHostHeader
    assert "POST" in api["AllowedMethods"]
    origin = next(o for o in config["Origins"] if o["Id"] == api["TargetOriginId"])
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert _dumps({"Ref": api_id}) in _dumps(origin["DomainName"])


def test_cross_origin_mode_has_no_api_behaviour(cross_origin: Template) -> None:
    _, behaviors = _behaviors(cross_origin)
    assert set(behaviors) == {"/thumbnails/*"}


def test_security_headers_on_every_behaviour(template: Template) -> None:
    policy_id, policy = _one(template, "AWS::CloudFront::ResponseHeadersPolicy")
    headers = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["ContentTypeOptions"] == {"Override": True}
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    assert headers["ReferrerPolicy"]["ReferrerPolicy"] == "strict-origin-when-cross-origin"
    csp = headers["ContentSecurityPolicy"]["ContentSecurityPolicy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "connect-src 'self';" in csp
    config, behaviors = _behaviors(template)
    for behavior in [config["DefaultCacheBehavior"], *behaviors.values()]:
        assert behavior["ResponseHeadersPolicyId"] == {"Ref": policy_id}


def test_site_deployment_uploads_frontend_and_generated_config(cross_origin: Template) -> None:
    distribution_id, _ = _one(cross_origin, "AWS::CloudFront::Distribution")
    site_bucket_id, _ = _one(cross_origin, "AWS::S3::Bucket", {"Tags": Match.array_with([
        {"Key": "aws-cdk:auto-delete-objects", "Value": "true"}
    ])})
    api_id, _ = _one(cross_origin, "AWS::ApiGatewayV2::Api")
    _, deployment = _one(cross_origin, "Custom::CDKBucketDeployment")
    props = deployment["Properties"]
    assert props["DestinationBucketName"] == {"Ref": site_bucket_id}
    assert props["DistributionId"] == {"Ref": distribution_id}
    assert props["DistributionPaths"] == ["/*"]
    assert len(props["SourceObjectKeys"]) == 2  # frontend/ and config.json
    # config.json's apiBaseUrl is a deploy-time value: the API's endpoint.
    assert _dumps({"Fn::GetAtt": [api_id, "ApiEndpoint"]}) in _dumps(props["SourceMarkers"])


def test_same_origin_config_points_the_page_at_its_own_origin(synth: Synth) -> None:
    """config.json is an asset of its own, written to a temporary folder that only staging keeps;
    find it through the assembly's asset manifest."""
    stack = synth(stage_assets=True)
    app = stack.node.root
    assert isinstance(app, App)
    assembly = app.synth()
    manifest = json.loads((Path(assembly.directory) / f"{stack.artifact_id}.assets.json").read_text())
    configs = []
    for asset in manifest["files"].values():
        config = Path(assembly.directory, asset["source"]["path"], "config.json")
        if config.is_file():
            configs.append(json.loads(config.read_text()))
    assert configs == [{"apiBaseUrl": ""}]


# ------------------------------------------------------------------ storage


def test_buckets_are_private_encrypted_and_tls_only(template: Template) -> None:
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in template.find_resources("AWS::S3::BucketPolicy").values()}
    for bucket_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        statements = policies[bucket_id]["Properties"]["PolicyDocument"]["Statement"]
        assert {
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": [{"Fn::GetAtt": [bucket_id, "Arn"]},
                         {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}],
        } in statements
        assert any(s["Effect"] == "Deny" and "s3:TlsVersion" in _dumps(s.get("Condition")) for s in statements)


def test_index_bucket_is_versioned_retained_and_expires_old_versions(template: Template) -> None:
    _, bucket = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    assert bucket["DeletionPolicy"] == "Retain"
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    assert rule["ExpiredObjectDeleteMarker"] is True


# ------------------------------------------------------------------ IAM


def test_no_statement_grants_wildcard_actions(template: Template, cross_origin: Template) -> None:
    for tpl in (template, cross_origin):
        for logical_id, statement in _statements(tpl):
            if statement["Effect"] != "Allow":
                continue  # the TLS-only policies deny s3:*; denying everything is the point
            for action in _as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), f"{logical_id} grants {action}"


# Where a `*` resource remains, and why (also listed in infra/README.md).
WILDCARD_RESOURCE_ACTIONS = {
    # X-Ray has no resource-level permissions: AWS requires `*` (added by active tracing).
    "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    # CDK's BucketDeployment grants its invalidation on `*` (CDK's choice, not an AWS requirement).
    "cloudfront:CreateInvalidation", "cloudfront:GetInvalidation",
}


def test_wildcard_resources_only_where_listed(template: Template, cross_origin: Template) -> None:
    for tpl in (template, cross_origin):
        for logical_id, statement in _statements(tpl):
            if statement["Effect"] == "Allow" and "*" in _as_list(statement.get("Resource")):
                actions = set(_as_list(statement["Action"]))
                assert actions <= WILDCARD_RESOURCE_ACTIONS, f"{logical_id}: {actions} on *"


def _role_statements(template: Template, cmd: list[str]) -> list[dict[str, Any]]:
    _, function = _function(template, cmd)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = template.to_json()["Resources"][role_id]
    assert "ManagedPolicyArns" not in role["Properties"]  # no AWSLambdaBasicExecutionRole (logs on *)
    _, policy = _one(template, "AWS::IAM::Policy", {"Roles": [{"Ref": role_id}]})
    return policy["Properties"]["PolicyDocument"]["Statement"]


@pytest.mark.parametrize(("cmd", "object_actions"), [
    (SEARCH_CMD, ["s3:GetObject"]),
    (BUILDER_CMD, ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]),
])
def test_function_roles_are_least_privilege(template: Template, cmd: list[str], object_actions: list[str]) -> None:
    index_bucket_id, _ = _one(template, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    bucket_arn = {"Fn::GetAtt": [index_bucket_id, "Arn"]}
    statements = _role_statements(template, cmd)
    by_action = {_dumps(sorted(_as_list(s["Action"]))): s for s in statements}
    assert set(by_action) == {
        _dumps(["logs:CreateLogStream", "logs:PutLogEvents"]),
        _dumps(object_actions),
        _dumps(["s3:ListBucket"]),
        _dumps(["xray:PutTelemetryRecords", "xray:PutTraceSegments"]),
    }
    assert by_action[_dumps(object_actions)]["Resource"] == {
        "Fn::Join": ["", [bucket_arn, f"/{INDEX_PREFIX}/*"]]
    }
    assert by_action[_dumps(["s3:ListBucket"])]["Resource"] == bucket_arn
    logs = by_action[_dumps(["logs:CreateLogStream", "logs:PutLogEvents"])]["Resource"]
    _, function = _function(template, cmd)
    assert logs == {"Fn::GetAtt": [function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"], "Arn"]}


# ------------------------------------------------------------------ outputs


def test_outputs_name_the_api_site_and_buckets(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    assert {"ApiUrl", "SiteUrl", "IndexBucketName", "SiteBucketName", "StoreUri", "BuilderFunctionName"} <= set(outputs)
    assert _dumps(outputs["SiteUrl"]["Value"]).startswith('{"Fn::Join": ["", ["https://"')
    assert _dumps(outputs["ApiUrl"]["Value"]).endswith('"/api/v1/"]]}')


def test_stack_name_follows_the_stage(synth: Synth) -> None:
    assert synth(stage="qa").stack_name == "FashionSearch-qa"
