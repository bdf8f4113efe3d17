"""Synthesised templates shared by the infra tests.

Synthesis runs in-process with the context of cdk.json (as `cdk synth` would) plus per-fixture
overrides given as strings, the way `cdk deploy -c key=value` passes them. Asset staging is off
unless a test asks for it: hashing the image's build context is enough for the template, copying
it (model bundle included) into every output folder is not. No network, AWS credentials or Docker
daemon is involved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from infra.app import build_app
from infra.stack import FashionSearchStack

REPO = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, object] = json.loads((REPO / "cdk.json").read_text())["context"]

# A production-like stage: cross-origin API, extra origins, concurrency and non-default sizes.
CROSS_ORIGIN = {
    "stage": "prod",
    "sameOriginApi": "false",
    "allowedOrigins": "https://shop.example.com, http://localhost:5173",
    "searchMemoryMb": "3008",
    "builderMemoryMb": "10240",
    "reservedConcurrency": "20",
    "provisionedConcurrency": "2",
    "throttleRate": "20",
    "throttleBurst": "40",
    "reindexSchedule": "cron(0 3 * * ? *)",
    "catalogUrl": "https://fakestoreapi.com/products",
    "catalogLimit": "100",
}

Synth = Callable[..., FashionSearchStack]


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Build the app with cdk.json's context plus overrides; returns the stack."""

    def _synth(stage_assets: bool = False, **overrides: str) -> FashionSearchStack:
        context = {**CDK_CONTEXT, "aws:cdk:disable-asset-staging": not stage_assets, **overrides}
        app = App(context=context, outdir=str(tmp_path_factory.mktemp("cdk.out")))
        return build_app(app)

    return _synth


@pytest.fixture(scope="session")
def template(synth: Synth) -> Template:
    """The default deployment: cdk.json as committed."""
    return Template.from_stack(synth())


@pytest.fixture(scope="session")
def cross_origin(synth: Synth) -> Template:
    return Template.from_stack(synth(**CROSS_ORIGIN))
