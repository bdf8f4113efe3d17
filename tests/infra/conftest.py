"""Synthesised templates shared by the infra tests.

Synthesis runs in-process with the context of cdk.json (as `cdk synth` would) plus per-fixture
overrides given as strings, the way `cdk deploy -c key=value` passes them. Asset staging is off
unless a test asks for it: hashing the image's build context is enough for the template, copying
it (model bundle included) into every output folder is not. No network, AWS credentials or Docker
daemon is involved.
"""

from __future__ import annotations

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from infra.app import build_app
from infra.stack import FashionSearchStack
from tests.infra.support import CDK_CONTEXT, CROSS_ORIGIN, Synth


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
