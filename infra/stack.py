"""The whole fashion-search deployment as one CloudFormation stack.

Data flow: EventBridge -> build state machine (plan -> Distributed Map of chunks -> merge, each a
builder Lambda invocation) -> S3 index (staging/ while building; versions/, thumbnails/, current.json);
browser -> CloudFront -> {site bucket, /thumbnails/* from the index bucket, /api/* -> HTTP API ->
search Lambda -> S3 index}. Both Lambdas run the same container image (see infra/README.md). With
`vectorBackend=s3vectors` the merge writes each version's vectors into an index of an S3 Vectors vector
bucket, which the search Lambda queries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    Annotations,
    Aws,
    CfnOutput,
    Duration,
    Fn,
    RemovalPolicy,
    Size,
    Stack,
)
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_s3vectors as s3vectors
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.settings import DeploySettings

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "functions/search/Dockerfile"
FRONTEND_DIR = REPO_ROOT / "frontend"
# Where the image bakes the model bundle (Dockerfile: COPY models/fashion-starter/ .../model/).
MODEL_DIR = "/var/task/model"
# The store lives under this key prefix of the index bucket; CloudFront serves its thumbnails/.
INDEX_PREFIX = "index"
# With vectorBackend=s3vectors, a version's vector index is <VECTOR_INDEX_PREFIX>-<version> in the vector bucket
# (the builder is told so): the roles may touch those indexes only.
VECTOR_INDEX_PREFIX = "fashion-search"
SEARCH_CMD = ["handler.handler"]
BUILDER_CMD = ["builder_handler.handler"]
API_ROUTE = "/api/v1/{proxy+}"
# Where the builder's plan step stages the chunk list the Distributed Map reads (build/staging.py's
# staging/<version>/chunks.json under the store's prefix); the state machine may read nothing else.
BUILD_ITEMS_KEYS = f"{INDEX_PREFIX}/staging/*/chunks.json"
# Each chunk runs at most this many times (the first run and its retries) before the build fails.
CHUNK_ATTEMPTS = 3
BUILD_TIMEOUT = Duration.hours(24)
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# CloudFront cannot update the policy of an imported bucket; we write the narrower statement ourselves.
_IMPORTED_BUCKET_WARNING = "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac"


class FashionSearchStack(Stack):
    """Storage, the two Lambdas, the reindex schedule, the HTTP API and the CloudFront site."""

    # kwargs: Stack's own keyword properties (env, description, ...), forwarded as they are.
    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        self.index_bucket = self._index_bucket()
        self.vector_bucket = self._vector_bucket() if settings.vector_backend == "s3vectors" else None
        self.site_bucket = self._private_bucket(
            "SiteBucket", removal_policy=RemovalPolicy.DESTROY, auto_delete_objects=True
        )
        store_uri = f"s3://{self.index_bucket.bucket_name}/{INDEX_PREFIX}"

        self.http_api = self._http_api()
        self.distribution = self._distribution()
        site_origin = f"https://{self.distribution.distribution_domain_name}"
        # The site's origin needs CORS only when the page calls the execute-api URL. With the /api/*
        # behaviour the distribution depends on the API, so naming the site's origin in the API's
        # CORS rules would also close a dependency cycle.
        cors_origins = [*([] if settings.same_origin_api else [site_origin]), *settings.allowed_origins]
        if cors_origins:
            self._cors(self.http_api, cors_origins)

        self.search_function = self._search_function(store_uri, site_origin)
        self.builder_function = self._builder_function(store_uri)
        self.build_state_machine = self._build_state_machine(self.builder_function)
        self._route_api(self.search_function)
        self._schedule_reindex()
        self._deploy_site()
        self._outputs(store_uri, site_origin)

    # ---------------------------------------------------------------- storage

    def _private_bucket(self, construct_id: str, **props: Any) -> s3.Bucket:
        """No public access, SSE-S3, TLS 1.2+ only (enforced by the bucket policy), no ACLs; `props` are
        further s3.Bucket properties (they differ in type, so they are passed through unchecked)."""
        return s3.Bucket(
            self,
            construct_id,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            **props,
        )

    def _index_bucket(self) -> s3.Bucket:
        """Index versions and thumbnails. Retained on `cdk destroy`: rebuilding them takes hours of
        embedding for a big catalog, so deleting them is a deliberate manual step (README)."""
        return self._private_bucket(
            "IndexBucket",
            versioned=True,  # an overwritten current.json or a pruned version can be recovered
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-object-versions",
                    # The builder prunes index versions itself (keep N); what it deletes or
                    # overwrites stays recoverable for a week, then goes.
                    noncurrent_version_expiration=Duration.days(7),
                    expired_object_delete_marker=True,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )

    def _vector_bucket(self) -> s3vectors.CfnVectorBucket:
        """The S3 Vectors vector bucket, one index a version in it. Named by CloudFormation (a name of ours
        would block redeploying a stage whose retained bucket is still there); retained on `cdk destroy`, as
        the index bucket is, and CloudFormation cannot delete a vector bucket that still holds indexes."""
        bucket = s3vectors.CfnVectorBucket(
            self,
            "VectorBucket",
            encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(sse_type="AES256"),
        )
        bucket.apply_removal_policy(RemovalPolicy.RETAIN)
        return bucket

    def _vector_indexes(self) -> str:
        """The ARN pattern of the versions' vector indexes (one bucket holds nothing else)."""
        assert self.vector_bucket is not None
        return f"{self.vector_bucket.attr_vector_bucket_arn}/index/{VECTOR_INDEX_PREFIX}-*"

    def _vector_bucket_name(self) -> str:
        """The generated name, from the ARN (arn:...:bucket/<name>)."""
        assert self.vector_bucket is not None
        return Fn.select(1, Fn.split("/", self.vector_bucket.attr_vector_bucket_arn))

    # ---------------------------------------------------------------- functions

    def _function_image(self, cmd: list[str]) -> lambda_.DockerImageCode:
        """The shared image. Same directory, Dockerfile and build args give the same asset hash, so
        CDK builds and pushes it once; only the CMD (a Lambda image config setting) differs."""
        return lambda_.DockerImageCode.from_image_asset(
            str(REPO_ROOT), file=DOCKERFILE, platform=ecr_assets.Platform.LINUX_AMD64, cmd=cmd
        )

    def _function_role(self, construct_id: str, log_group: logs.LogGroup) -> iam.Role:
        """A role without AWSLambdaBasicExecutionRole (whose logs actions apply to `*`): it may only
        write to its own log group. Active tracing makes CDK add xray:PutTraceSegments and
        xray:PutTelemetryRecords on `*`: X-Ray has no resource-level permissions."""
        role = iam.Role(self, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        return role

    def _log_group(self, construct_id: str) -> logs.LogGroup:
        return logs.LogGroup(
            self, construct_id, retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )

    def _grant_index(self, role: iam.Role, actions: list[str]) -> None:
        """Object actions on the index prefix only, plus ListBucket on the bucket.

        ListBucket is not narrowed by an s3:prefix condition on purpose: S3 answers a GET or HEAD
        of a missing key with 404 only if the caller may list the bucket (else 403), and the store
        relies on 404 to tell "no index yet" or "thumbnail not made yet". The bucket holds nothing
        but the index, so listing it reveals only key names under the prefix.
        """
        role.add_to_policy(
            iam.PolicyStatement(actions=actions, resources=[self.index_bucket.arn_for_objects(f"{INDEX_PREFIX}/*")])
        )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.index_bucket.bucket_arn]))

    def _powertools_env(self, service: str) -> dict[str, str]:
        return {
            "POWERTOOLS_SERVICE_NAME": service,
            "POWERTOOLS_METRICS_NAMESPACE": "FashionSearch",
            "LOG_LEVEL": "INFO",
        }

    def _search_function(self, store_uri: str, site_origin: str) -> lambda_.Alias:
        """Read-only search; the API invokes the `live` alias, which carries provisioned concurrency."""
        settings = self.settings
        log_group = self._log_group("SearchLogs")
        role = self._function_role("SearchRole", log_group)
        self._grant_index(role, ["s3:GetObject"])
        if self.vector_bucket is not None:  # queries, and the stored vectors of their candidates
            role.add_to_policy(iam.PolicyStatement(actions=["s3vectors:GetVectors", "s3vectors:QueryVectors"],
                                                   resources=[self._vector_indexes()]))
        function = lambda_.DockerImageFunction(
            self,
            "SearchFunction",
            description=f"fashion-search {settings.stage}: search API (text, photo or both)",
            code=self._function_image(SEARCH_CMD),
            architecture=lambda_.Architecture.X86_64,
            memory_size=settings.search_memory_mb,
            timeout=Duration.seconds(settings.search_timeout_s),
            reserved_concurrent_executions=settings.reserved_concurrency,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                "FASHION_SEARCH_STORE": store_uri,
                "FASHION_SEARCH_MODEL": MODEL_DIR,
                "FASHION_SEARCH_ALLOWED_ORIGINS": ",".join([site_origin, *settings.allowed_origins]),
                # Absolute, so that pages on the extra allowed origins get working image URLs too.
                "FASHION_SEARCH_THUMBNAIL_BASE_URL": f"{site_origin}/thumbnails/",
                **self._powertools_env("fashion-search"),
            },
        )
        return lambda_.Alias(
            self,
            "SearchLive",
            alias_name="live",
            version=function.current_version,
            provisioned_concurrent_executions=settings.provisioned_concurrency or None,
        )

    def _builder_function(self, store_uri: str) -> lambda_.DockerImageFunction:
        """Reads the catalog, embeds it, writes a new index version and prunes old ones."""
        settings = self.settings
        log_group = self._log_group("BuilderLogs")
        role = self._function_role("BuilderRole", log_group)
        self._grant_index(role, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
        if self.vector_bucket is not None:  # a version's index: made and filled by the merge, deleted by prune
            role.add_to_policy(iam.PolicyStatement(
                actions=["s3vectors:CreateIndex", "s3vectors:DeleteIndex", "s3vectors:PutVectors"],
                resources=[self._vector_indexes()]))
        environment = {
            "FASHION_SEARCH_STORE": store_uri,
            "FASHION_SEARCH_CATALOG": settings.catalog_url,
            "FASHION_SEARCH_MODEL": MODEL_DIR,
            "FASHION_SEARCH_KEEP_VERSIONS": str(settings.keep_versions),
            "FASHION_SEARCH_CHUNK_SIZE": str(settings.build_chunk_size),
            **self._powertools_env("fashion-search-builder"),
        }
        if settings.catalog_limit is not None:
            environment["FASHION_SEARCH_LIMIT"] = str(settings.catalog_limit)
        if self.vector_bucket is not None:
            environment["FASHION_SEARCH_VECTOR_BUCKET"] = self._vector_bucket_name()
            environment["FASHION_SEARCH_VECTOR_INDEX_PREFIX"] = VECTOR_INDEX_PREFIX
        return lambda_.DockerImageFunction(
            self,
            "BuilderFunction",
            description=f"fashion-search {settings.stage}: index builder",
            code=self._function_image(BUILDER_CMD),
            architecture=lambda_.Architecture.X86_64,
            memory_size=settings.builder_memory_mb,
            timeout=Duration.minutes(settings.builder_timeout_min),
            # Room to stage a big index version before upload; /tmp beyond 512 MB costs ~nothing.
            ephemeral_storage_size=Size.gibibytes(2),
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            # A failed build leaves the live version untouched; one retry covers a flaky catalog API.
            retry_attempts=1,
            max_event_age=Duration.hours(6),
            environment=environment,
        )

    def _build_state_machine(self, builder: lambda_.IFunction) -> sfn.StateMachine:
        """Plan -> Distributed Map over the plan's chunk list (one builder invocation per chunk, at most
        buildConcurrency at once) -> Merge. A failed chunk is run again with backoff (chunks are
        idempotent); one that fails CHUNK_ATTEMPTS times fails the map, which tolerates no failure, and
        Abort then discards the build's staging folder: nothing is published, the live version stays."""
        settings = self.settings
        plan = tasks.LambdaInvoke(
            self,
            "Plan",
            comment="Read the catalog once and stage it in chunks: {version, chunks, items_key}",
            lambda_function=builder,
            # The execution's input ({} from the schedule; "catalog"/"limit" to override), as a plan event.
            payload=sfn.TaskInput.from_json_path_at(
                sfn.JsonPath.json_merge(sfn.JsonPath.object_at("$"), sfn.JsonPath.string_to_json('{"action":"plan"}'))
            ),
            result_selector={
                "version.$": "$.Payload.version",
                "chunks.$": "$.Payload.chunks",
                "items_key.$": "$.Payload.items_key",
            },
        )
        chunk = tasks.LambdaInvoke(
            self,
            "Chunk",
            comment="Fetch, decode and encode one chunk; stage its vectors and rows",
            lambda_function=builder,
            # Each child's output is its chunk number: the map's result stays tiny (MAX_CHUNKS of them).
            output_path="$.Payload.chunk",
        )
        # After CDK's own retries of Lambda service errors: any failure (a timeout, a crash, a store
        # error) runs the chunk again, with exponential backoff and jitter.
        chunk.add_retry(
            errors=[sfn.Errors.ALL],
            interval=Duration.seconds(10),
            max_attempts=CHUNK_ATTEMPTS - 1,
            backoff_rate=3,
            jitter_strategy=sfn.JitterType.FULL,
        )
        chunks = _StrictDistributedMap(
            self,
            "Chunks",
            comment="One builder invocation per chunk of the plan's list",
            item_reader=sfn.S3JsonItemReader(
                # The bucket by name, not as an IBucket: CDK would then grant s3:GetObject on the whole
                # bucket; the statement below grants the chunk lists alone.
                bucket_name_path=self.index_bucket.bucket_name,
                key=sfn.JsonPath.string_at("$.items_key"),
            ),
            item_selector={
                "action": "chunk",
                "version": sfn.JsonPath.string_at("$.version"),
                "chunk": sfn.JsonPath.number_at("$$.Map.Item.Value.chunk"),
            },
            max_concurrency=settings.build_concurrency,
            map_execution_type=sfn.StateMachineType.STANDARD,  # a chunk may run 15 minutes; EXPRESS stops at 5
            label="Chunks",
            result_path=sfn.JsonPath.DISCARD,  # the merge reads the chunks' output from S3
        )
        chunks.item_processor(chunk)
        merge = tasks.LambdaInvoke(
            self,
            "Merge",
            comment="Build the index from every chunk's output and publish the version (refused if one is missing)",
            lambda_function=builder,
            payload=sfn.TaskInput.from_object({"action": "merge", "version": sfn.JsonPath.string_at("$.version")}),
            result_selector={
                "version.$": "$.Payload.version",
                "products_indexed.$": "$.Payload.products_indexed",
                "skipped.$": "$.Payload.skipped",
                "encoded.$": "$.Payload.encoded",
                "reused_embeddings.$": "$.Payload.reused_embeddings",
                "seconds.$": "$.Payload.seconds",
            },
        )
        abort = tasks.LambdaInvoke(
            self,
            "Abort",
            comment="Discard the failed build's staging folder",
            lambda_function=builder,
            payload=sfn.TaskInput.from_object({"action": "abort", "version": sfn.JsonPath.string_at("$.version")}),
            result_path=sfn.JsonPath.DISCARD,
        ).next(sfn.Fail(self, "BuildFailed", error_path="$.error.Error", cause_path="$.error.Cause"))
        chunks.add_catch(abort, result_path="$.error")
        merge.add_catch(abort, result_path="$.error")
        machine = sfn.StateMachine(
            self,
            "BuildStateMachine",
            comment=f"fashion-search {settings.stage}: build and publish an index version (plan -> chunks -> merge)",
            definition_body=sfn.DefinitionBody.from_chainable(plan.next(chunks).next(merge)),
            timeout=BUILD_TIMEOUT,
        )
        items = self.index_bucket.arn_for_objects(BUILD_ITEMS_KEYS)
        machine.add_to_role_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=[items]))
        return machine

    def _schedule_reindex(self) -> events.Rule:
        return events.Rule(
            self,
            "ReindexSchedule",
            description=f"fashion-search {self.settings.stage}: rebuild the index from the catalog",
            schedule=events.Schedule.expression(self.settings.reindex_schedule),
            # An empty input: the schedule's event would otherwise be the execution's input, and the
            # plan step reads "catalog" and "limit" from it.
            targets=[targets.SfnStateMachine(self.build_state_machine, input=events.RuleTargetInput.from_object({}),
                                             retry_attempts=2)],
        )

    # ---------------------------------------------------------------- API

    def _http_api(self) -> apigwv2.HttpApi:
        """The API and its $default stage (throttled, access-logged). Routes come later, once the
        search function exists; CORS only in cross-origin mode (see __init__)."""
        api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"fashion-search-{self.settings.stage}",
            description="fashion-search API: /api/v1/* -> search Lambda",
            create_default_stage=False,
        )
        access_logs = self._log_group("ApiAccessLogs")
        apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=self.settings.throttle_rate, burst_limit=self.settings.throttle_burst
            ),
            access_log_settings=_AccessLogSettings(access_logs),
        )
        return api

    def _cors(self, api: apigwv2.HttpApi, allowed: list[str]) -> None:
        """Set CORS on the API resource. HttpApi takes CORS only at construction, before the site's
        origin exists, hence the escape hatch. API Gateway then answers preflights itself (and
        ignores CORS headers from the function); without CORS rules it sends none, so browsers
        refuse every cross-origin read."""
        cfn_api = api.node.default_child
        assert isinstance(cfn_api, apigwv2.CfnApi)
        cfn_api.cors_configuration = apigwv2.CfnApi.CorsProperty(
            allow_origins=allowed,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["content-type"],
            max_age=7200,  # Chromium's cap; a preflight per origin every two hours
        )

    def _route_api(self, search: lambda_.Alias) -> None:
        self.http_api.add_routes(
            path=API_ROUTE,
            methods=[apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST],
            integration=integrations.HttpLambdaIntegration(
                "SearchIntegration", search, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
            ),
        )

    # ---------------------------------------------------------------- site

    def _security_headers(self) -> cloudfront.ResponseHeadersPolicy:
        """HSTS, nosniff, no framing, a strict referrer policy and a CSP that allows this origin's
        scripts only (the page must not use inline scripts) and product images from anywhere."""
        connect = "'self'" if self.settings.same_origin_api else f"'self' https://*.execute-api.{Aws.REGION}.amazonaws.com"
        csp = "; ".join([
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob: https:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ])
        return cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment=f"fashion-search {self.settings.stage}: security headers",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN,
                    override=True,
                ),
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=csp, override=True
                ),
            ),
        )

    def _thumbnails_origin(self) -> cloudfront.IOrigin:
        """OAC origin for <index prefix>/thumbnails/* only.

        S3BucketOrigin.with_origin_access_control would grant the distribution s3:GetObject on the
        whole bucket (index versions included). Handing it an imported reference of the bucket
        stops that grant, and the statement below grants the thumbnails alone.
        """
        reference = s3.Bucket.from_bucket_attributes(
            self,
            "IndexBucketForCloudFront",
            bucket_name=self.index_bucket.bucket_name,
            bucket_regional_domain_name=self.index_bucket.bucket_regional_domain_name,
        )
        Annotations.of(self).acknowledge_warning(
            _IMPORTED_BUCKET_WARNING, "the index bucket policy grants CloudFront the thumbnails prefix itself"
        )
        return origins.S3BucketOrigin.with_origin_access_control(reference, origin_path=f"/{INDEX_PREFIX}")

    def _distribution(self) -> cloudfront.Distribution:
        headers = self._security_headers()
        https = cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS
        behaviors = {
            # Content-addressed and written with Cache-Control: immutable, which CachingOptimized
            # honours for up to a year.
            "/thumbnails/*": cloudfront.BehaviorOptions(
                origin=self._thumbnails_origin(),
                viewer_protocol_policy=https,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
            ),
        }
        if self.settings.same_origin_api:
            behaviors["/api/*"] = cloudfront.BehaviorOptions(
                origin=origins.HttpOrigin(
                    f"{self.http_api.api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}",
                    protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                ),
                # A redirect would turn a POST into a GET, so plain HTTP is refused instead.
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                # API Gateway routes on its own Host name, so the viewer's must not be forwarded.
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                response_headers_policy=headers,
            )
        distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"fashion-search {self.settings.stage}",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.site_bucket),
                viewer_protocol_policy=https,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
            ),
            additional_behaviors=behaviors,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            # North America and Europe edges only: the cheapest class; widen for other markets.
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
        )
        self.index_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudFrontReadsThumbnails",
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["s3:GetObject"],
                resources=[self.index_bucket.arn_for_objects(f"{INDEX_PREFIX}/thumbnails/*")],
                conditions={"StringEquals": {"AWS:SourceArn": distribution.distribution_arn}},
            )
        )
        return distribution

    def _deploy_site(self) -> s3deploy.BucketDeployment:
        """Upload frontend/ plus a generated config.json, then invalidate the CDN cache.

        apiBaseUrl is empty when CloudFront routes /api/* (the page calls its own origin), else
        the HTTP API's URL, resolved at deploy time.
        """
        api_base = "" if self.settings.same_origin_api else self.http_api.api_endpoint
        return s3deploy.BucketDeployment(
            self,
            "DeploySite",
            sources=[
                s3deploy.Source.asset(str(FRONTEND_DIR), exclude=[".gitkeep"]),
                s3deploy.Source.json_data("config.json", {"apiBaseUrl": api_base}),
            ],
            destination_bucket=self.site_bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
        )

    # ---------------------------------------------------------------- outputs

    def _outputs(self, store_uri: str, site_origin: str) -> None:
        CfnOutput(self, "SiteUrl", value=f"{site_origin}/", description="The search page")
        CfnOutput(self, "ApiUrl", value=f"{self.http_api.api_endpoint}/api/v1/",
                  description="The HTTP API (execute-api URL; the site reaches it under /api/ too)")
        CfnOutput(self, "IndexBucketName", value=self.index_bucket.bucket_name,
                  description="Index versions and thumbnails (retained on destroy)")
        CfnOutput(self, "SiteBucketName", value=self.site_bucket.bucket_name)
        CfnOutput(self, "StoreUri", value=store_uri)
        CfnOutput(self, "BuilderFunctionName", value=self.builder_function.function_name,
                  description="The builder (every step of a build; invoked without an action, a whole build)")
        CfnOutput(self, "BuildStateMachineArn", value=self.build_state_machine.state_machine_arn,
                  description="Start an execution to build the index now")
        CfnOutput(self, "SearchFunctionName", value=self.search_function.lambda_.function_name)
        if self.vector_bucket is not None:
            CfnOutput(self, "VectorBucketName", value=self._vector_bucket_name(),
                      description="The S3 Vectors vector bucket: one index a version (retained on destroy)")


class _StrictDistributedMap(sfn.DistributedMap):
    """A Distributed Map that states ToleratedFailurePercentage 0: no failed chunk is tolerated. (It is
    the default, but CDK renders the property only when it is not 0.)"""

    def to_state_json(self, state_machine_query_language: sfn.QueryLanguage | None = None) -> dict[str, Any]:
        rendered = dict(super().to_state_json(state_machine_query_language))
        rendered["ToleratedFailurePercentage"] = 0
        return rendered


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """JSON access logs, one line per request, into a log group of ours."""

    _FORMAT = json.dumps({
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "method": "$context.httpMethod",
        "path": "$context.path",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "responseLatency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
        "userAgent": "$context.identity.userAgent",
    })

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._log_group = log_group

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return apigwv2.LogGroupLogDestination(self._log_group)

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(self._FORMAT)
