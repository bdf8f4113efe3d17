"""The real toolchain: the pinned aws-cdk CLI runs the app from cdk.json, offline, without Docker.

Also checks what the template tests cannot: the staged build context of the function image holds
the Dockerfile and everything it copies (and nothing else), and config.json is what the page gets.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.support import REPO

pytestmark = pytest.mark.heavy

CDK = REPO / "node_modules" / ".bin" / "cdk"
DOCKERFILE = REPO / "functions" / "search" / "Dockerfile"
# What .dockerignore lets into the build context (plus .dockerignore itself, which CDK always keeps).
CONTEXT_TOP_LEVEL = {".dockerignore", "functions", "layers", "models", "pyproject.toml"}


def _copy_sources() -> list[str]:
    """The sources of every COPY instruction of the Dockerfile (flags and destination dropped)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY":
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    missing = [source for source in _copy_sources() if not (REPO / source).exists()]
    assert not missing, f"the image build would fail: {missing} not in the repository"


@pytest.fixture(scope="module")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CDK.exists():
        pytest.skip("node_modules is missing: run `npm ci` (make test does)")
    out = tmp_path_factory.mktemp("cli") / "cdk.out"
    # cdk.json's app runs .venv's Python; run the one running these tests instead.
    command = [str(CDK), "synth", "--app", f"{shlex.quote(sys.executable)} -m infra.app",
               "--output", str(out), "--quiet", "--no-notices"]
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.slow
def test_cdk_synth_writes_the_stack(cdk_out: Path) -> None:
    template = json.loads((cdk_out / "FashionSearch-dev.template.json").read_text())
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {"AWS::Lambda::Function", "AWS::ApiGatewayV2::Api", "AWS::CloudFront::Distribution"} <= types


@pytest.mark.slow
def test_image_context_holds_the_dockerfile_and_its_sources_only(cdk_out: Path) -> None:
    assets = json.loads((cdk_out / "FashionSearch-dev.assets.json").read_text())
    (image,) = assets["dockerImages"].values()  # one image for both functions
    context = cdk_out / image["source"]["directory"]
    assert (context / image["source"]["dockerFile"]).is_file()
    assert {p.name for p in context.iterdir()} <= CONTEXT_TOP_LEVEL
    for source in _copy_sources():
        if (REPO / source).exists():  # a missing source is test_dockerfile_copies_...'s failure
            assert (context / source).exists(), f".dockerignore keeps {source} out of the build context"
    assert not list(context.rglob("__pycache__"))


@pytest.mark.slow
def test_site_config_points_the_page_at_its_own_origin(cdk_out: Path) -> None:
    assets = json.loads((cdk_out / "FashionSearch-dev.assets.json").read_text())
    configs = [
        json.loads((cdk_out / asset["source"]["path"] / "config.json").read_text())
        for asset in assets["files"].values()
        if (cdk_out / asset["source"]["path"] / "config.json").is_file()
    ]
    assert configs == [{"apiBaseUrl": ""}]
