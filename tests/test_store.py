"""One contract, two backends: a local folder and S3 (moto's server over real HTTP)."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest

from fashion_search.store import KeyNotFound, ObjectStore, open_store
from fashion_search.store.local import LocalStore
from fashion_search.store.s3 import S3Store


@pytest.fixture(params=["local", "file-uri", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return open_store(tmp_path / "store")
    if request.param == "file-uri":
        return open_store(f"file://{tmp_path}/store")
    return open_store(request.getfixturevalue("s3_uri"))


def test_put_get_exists_list_delete(store: ObjectStore) -> None:
    assert list(store.list()) == []
    store.put("versions/b/x.bin", b"x")
    store.put("versions/a/y.bin", b"yy", content_type="application/octet-stream")
    store.put("current.json", b"{}")
    assert store.get("versions/a/y.bin") == b"yy"
    assert store.exists("current.json") and not store.exists("nothing")
    assert list(store.list()) == ["current.json", "versions/a/y.bin", "versions/b/x.bin"]
    assert list(store.list("versions/b/")) == ["versions/b/x.bin"]
    store.put("current.json", b'{"v": 2}')  # overwrite
    assert store.get("current.json") == b'{"v": 2}'
    store.delete(["versions/a/y.bin", "missing"])
    assert list(store.list("versions/")) == ["versions/b/x.bin"]
    with pytest.raises(KeyNotFound):
        store.get("versions/a/y.bin")


def test_modification_times_and_leftovers(store: ObjectStore) -> None:
    """What prune tells dead builds by: when an object was written, and what killed writes left."""
    before = time.time()
    store.put("versions/a/x.bin", b"x")
    assert before - 5 <= store.last_modified("versions/a/x.bin") <= time.time() + 5
    with pytest.raises(KeyNotFound):
        store.last_modified("versions/a/missing")
    assert store.remove_stale_temporaries(time.time() + 60) == 0  # clean puts leave nothing behind
    assert list(store.list()) == ["versions/a/x.bin"]


def test_ranged_reads(store: ObjectStore) -> None:
    """What a build chunk reads the live version's vectors by: byte ranges of one object."""
    data = bytes(range(256)) * 16
    store.put("versions/a/embeddings.npy", data)
    assert store.get_range("versions/a/embeddings.npy", 0, 10) == data[:10]
    assert store.get_range("versions/a/embeddings.npy", 1000, 300) == data[1000:1300]
    assert store.get_range("versions/a/embeddings.npy", len(data) - 5, 100) == data[-5:]  # fewer at the end
    assert store.get_range("versions/a/embeddings.npy", len(data) + 10, 100) == b""  # none past it
    with pytest.raises(KeyNotFound):
        store.get_range("versions/a/missing.npy", 0, 10)


def test_large_objects_round_trip(store: ObjectStore) -> None:
    data = bytes(range(256)) * (80 << 12)  # 20 MB: S3 downloads it in parallel ranges
    store.put("big.bin", data)
    assert store.get("big.bin") == data


def test_s3_prefix_is_honoured(s3_uri: str) -> None:
    store = open_store(s3_uri)
    assert isinstance(store, S3Store) and store.uri == s3_uri
    store.put("current.json", b"1")
    bucket = s3_uri.removeprefix("s3://").split("/")[0]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["index/current.json"]


def test_local_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ValueError, match="escapes"):
        store.put("../outside", b"x")


def test_local_put_leaves_no_partial_file_on_failure(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("current.json", b"old")
    with pytest.raises(TypeError):
        store.put("current.json", "not bytes")  # type: ignore[arg-type]
    assert store.get("current.json") == b"old"
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["current.json"]


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported store URI"):
        open_store("gs://bucket/x")
