"""Deployment settings: how context values (JSON from cdk.json, strings from `-c`) become DeploySettings."""

from __future__ import annotations

from typing import Any

import pytest

from infra.settings import DeploySettings
from tests.infra.support import CDK_CONTEXT


class Context:
    """Stands in for `app.node`: only try_get_context is needed."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def try_get_context(self, key: str) -> Any:
        return self.values.get(key)


def test_cdk_json_states_the_defaults() -> None:
    """cdk.json documents every setting; its values must be the code's defaults."""
    assert DeploySettings.from_context(Context(CDK_CONTEXT)) == DeploySettings()
    assert DeploySettings.from_context(Context({})) == DeploySettings()


def test_command_line_strings_are_parsed() -> None:
    settings = DeploySettings.from_context(Context({
        "stage": "prod",
        "searchMemoryMb": "3008",
        "throttleRate": "12.5",
        "sameOriginApi": "false",
        "allowedOrigins": "https://a.example.com, https://b.example.com/",
        "reservedConcurrency": "0",
        "provisionedConcurrency": "1",
        "catalogLimit": "250",
        "buildConcurrency": "40",
        "buildChunkSize": "2500",
    }))
    assert settings.stage == "prod"
    assert settings.search_memory_mb == 3008
    assert settings.throttle_rate == 12.5
    assert settings.same_origin_api is False
    assert settings.allowed_origins == ("https://a.example.com", "https://b.example.com")
    assert settings.reserved_concurrency is None  # 0 means unreserved
    assert settings.provisioned_concurrency == 1
    assert settings.catalog_limit == 250
    assert (settings.build_concurrency, settings.build_chunk_size) == (40, 2500)
    assert settings.vector_backend == "faiss"  # the default
    assert DeploySettings.from_context(Context({"vectorBackend": "s3vectors"})).vector_backend == "s3vectors"


def test_origins_may_be_a_json_list_too() -> None:
    assert DeploySettings.from_context(Context({"allowedOrigins": '["http://localhost:5173"]'})).allowed_origins == (
        "http://localhost:5173",
    )
    assert DeploySettings.from_context(Context({"allowedOrigins": ["https://x.example.com"]})).allowed_origins == (
        "https://x.example.com",
    )


@pytest.mark.parametrize(("context", "message"), [
    ({"stage": "Prod_1"}, "stage"),
    ({"reindexSchedule": "daily"}, "reindexSchedule"),
    ({"searchMemoryMb": "64"}, "searchMemoryMb"),
    ({"builderMemoryMb": "twelve"}, "builderMemoryMb"),
    ({"searchTimeoutSeconds": "30"}, "searchTimeoutSeconds"),
    ({"builderTimeoutMinutes": "16"}, "builderTimeoutMinutes"),
    ({"allowedOrigins": "https://shop.example.com/search"}, "allowedOrigins"),
    ({"allowedOrigins": "shop.example.com"}, "allowedOrigins"),
    ({"catalogUrl": "ftp://example.com/feed"}, "catalogUrl"),
    ({"catalogUrl": "s3://shop-feeds/catalog.json"}, "catalogUrl"),  # the builder reads http(s) only
    ({"keepVersions": "0"}, "keepVersions"),
    ({"reservedConcurrency": "2", "provisionedConcurrency": "3"}, "provisionedConcurrency"),
    ({"sameOriginApi": "maybe"}, "sameOriginApi"),
    ({"throttleBurst": "0"}, "throttle"),
    ({"buildConcurrency": "0"}, "buildConcurrency"),
    ({"buildConcurrency": "10001"}, "buildConcurrency"),
    ({"buildChunkSize": "0"}, "buildChunkSize"),
    ({"buildChunkSize": "many"}, "buildChunkSize"),
    ({"vectorBackend": "opensearch"}, "vectorBackend"),
    # The search functions query the previous version's S3 Vectors index until they load the new one.
    ({"vectorBackend": "s3vectors", "keepVersions": "1"}, "keep at least 2"),
])
def test_invalid_values_fail_the_synth_naming_the_key(context: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeploySettings.from_context(Context(context))
