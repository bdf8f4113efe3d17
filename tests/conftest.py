"""Shared fixtures: real parts only (tiny ONNX bundles, replica HTTP servers, moto's S3 server)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest

from fashion_search.build.pipeline import BuildSummary, build_index
from fashion_search.config import ServiceSettings
from fashion_search.http.api import LambdaHandler, create_handler
from fashion_search.model.bundle import BundleSpec
from fashion_search.model.embedder import Embedder
from fashion_search.serve.service import SearchService
from fashion_search.store import open_store, versions
from model_export.calibrate import calibrate, write_calibration
from model_export.evaluate import encode_gallery
from model_export.starter.data import load_products
from model_export.tiny_bundle import make_tiny_bundle
from tests.replica import DATA, Replica, dummyjson_replica, fakestore_replica

FASHION_FEED = DATA / "fashion" / "feed.jsonl"
FASHION_IMAGES = DATA / "fashion" / "images"
ORIGIN = "https://shop.example.com"  # the CORS origin the API fixtures allow


def write_feed(path: Path, count: int, start: int = 0) -> Path:
    """A feed of `count` fashion products (from line `start`), their photos copied beside it as the
    fashion feed has them (images/<id>.jpg): self-contained, as the builder wants a feed's local images
    (inside its folder, unless the operator allows more)."""
    with FASHION_FEED.open() as source:
        lines = [json.loads(line) for _, line in zip(range(start + count), source, strict=False)][start:]
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    for line in lines:
        shutil.copyfile(FASHION_FEED.parent / line["image"], path.parent / line["image"])
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False): for background refreshes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def build_store(catalog: Path | str, store: Path | str, bundle: Path) -> BuildSummary:
    """Build an index the way the CLI does (same core call), quietly."""
    return asyncio.run(build_index(str(catalog), open_store(store), Embedder(bundle)))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random bundle (32-d) shared by the session: real ONNX, real tokenizer, calibrated on 300
    fashion products other than fashion_store's (`fashion-search calibrate` in-process)."""
    folder = tmp_path_factory.mktemp("tiny-bundle")
    make_tiny_bundle(folder)
    products = load_products(write_feed(tmp_path_factory.mktemp("calibration") / "feed.jsonl", 300, start=400))
    embedder = Embedder(folder)
    write_calibration(folder, calibrate(embedder, products, encode_gallery(embedder, products, log=False)))
    return folder


@pytest.fixture(scope="session")
def other_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleSpec]:
    """A second tiny bundle with other weights: its vectors are not comparable with tiny_bundle's."""
    folder = tmp_path_factory.mktemp("other-bundle")
    return folder, make_tiny_bundle(folder, seed=1, name="tiny-other")


@pytest.fixture(scope="session")
def fashion_store(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Path:
    """A local store holding an index of 400 fashion products, built with the tiny bundle."""
    root = tmp_path_factory.mktemp("fashion-store")
    build_store(write_feed(root / "feed.jsonl", 400), root / "store", tiny_bundle)
    return root / "store"


@pytest.fixture
def dummyjson() -> Iterator[Replica]:
    replica = dummyjson_replica()
    yield replica
    replica.stop()


@pytest.fixture
def fakestore() -> Iterator[Replica]:
    replica = fakestore_replica()
    yield replica
    replica.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a real HTTP endpoint speaking the S3 API)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_uri(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto server; AWS_ENDPOINT_URL points boto3 at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/index"


@pytest.fixture(scope="module")
def service(fashion_store: Path, tiny_bundle: Path) -> SearchService:
    """The search service over fashion_store, allowing ORIGIN (one per test module)."""
    return SearchService(ServiceSettings(store=str(fashion_store), model=tiny_bundle, allowed_origins=(ORIGIN,)))


@pytest.fixture(scope="module")
def vectors(service: SearchService) -> np.ndarray:
    """The index's stored embeddings, in row order: the ground truth for scores."""
    live = service.live
    assert live is not None
    return np.load(io.BytesIO(versions.read_file(service.store, live.manifest, "embeddings.npy")))


@pytest.fixture(scope="module")
def handler(service: SearchService) -> LambdaHandler:
    """The Lambda handler over `service`."""
    return create_handler(service)
