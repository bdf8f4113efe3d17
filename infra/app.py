"""CDK entry point (cdk.json runs `python -m infra.app` from the repository root)."""

from __future__ import annotations

import os

from aws_cdk import App, Environment, Tags

from infra.settings import DeploySettings
from infra.stack import FashionSearchStack


def build_app(app: App) -> FashionSearchStack:
    """Add the stack for the stage named in context; tests call this with their own App."""
    settings = DeploySettings.from_context(app.node)
    stack = FashionSearchStack(
        app,
        f"FashionSearch-{settings.stage}",
        settings=settings,
        description=f"fashion-search ({settings.stage}): serverless cross-modal product search",
        # Unset without credentials (synth, tests): the template is then environment-agnostic.
        env=Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")),
    )
    Tags.of(stack).add("project", "fashion-search")
    Tags.of(stack).add("stage", settings.stage)
    return stack


if __name__ == "__main__":
    cdk_app = App()
    build_app(cdk_app)
    cdk_app.synth()
