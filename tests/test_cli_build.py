"""`fashion-search build` as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fashion_search.index import open_index
from fashion_search.store import open_store, versions
from tests.conftest import FASHION_FEED

CLI = str(Path(sys.executable).parent / "fashion-search")


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--catalog", "/no/such/feed.jsonl"], "catalog feed /no/such/feed.jsonl does not exist"),
        (["--catalog", str(FASHION_FEED), "--store", "gs://bucket"], "unsupported store URI"),
        (["--catalog", str(FASHION_FEED), "--model", "/tmp"], "is not a model bundle"),
        (["--catalog", "http://127.0.0.1:9/products", "--retries", "0"], "127.0.0.1:9"),
        (["--catalog", str(FASHION_FEED), "--limit", "0"], "must be at least 1"),
    ],
    ids=["missing-feed", "bad-store", "not-a-bundle", "unreachable-api", "bad-limit"],
)
def test_bad_input_gets_one_clear_line(args: list[str], message: str, tmp_path: Path, tiny_bundle: Path) -> None:
    defaults = {"--store": str(tmp_path / "s"), "--model": str(tiny_bundle)}
    for flag, value in defaults.items():
        if flag not in args:
            args = [*args, flag, value]
    result = cli("build", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s" / versions.POINTER_KEY).exists()


@pytest.mark.slow
def test_full_fashion_feed_then_unchanged_rebuild_then_killed_build(tmp_path: Path, tiny_bundle: Path) -> None:
    store_dir = tmp_path / "store"
    first = cli("build", "--catalog", FASHION_FEED, "--store", store_dir, "--model", tiny_bundle)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)  # one JSON line on stdout; progress went to stderr
    assert first.stdout.count("\n") == 1 and "images:" in first.stderr
    assert summary["products_indexed"] == 20_873 and summary["skipped"] == 0 and summary["encoded"] == 20_873

    second = json.loads(cli("build", "--catalog", FASHION_FEED, "--store", store_dir, "--model", tiny_bundle).stdout)
    assert second["encoded"] == 0 and second["reused_embeddings"] == 20_873
    assert second["seconds"] < summary["seconds"]

    # Kill a full rebuild midway (SIGKILL: no cleanup code runs) and check nothing served changed.
    store = open_store(store_dir)
    before = versions.read_pointer(store)
    assert before is not None and before.version == second["version"]
    proc = subprocess.Popen([CLI, "build", "--catalog", str(FASHION_FEED), "--store", str(store_dir),
                             "--model", str(tiny_bundle), "--full"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("images: ") and "/20,873" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert versions.read_pointer(store) == before
    live = versions.read_manifest(store, before.version, before.manifest_sha256)
    index = open_index(live.index, lambda name: versions.read_file(store, live, name))  # checksums verified
    vectors = np.load(io.BytesIO(versions.read_file(store, live, "embeddings.npy")))
    _, ids = index.search(vectors[:50], 1)
    assert (ids[:, 0] == np.arange(50)).mean() > 0.9
    complete = [v for v, done in versions.list_versions(store).items() if done]
    assert complete == [summary["version"], second["version"]]  # the dead build published nothing
