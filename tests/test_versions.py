"""store/versions.py on a real local store: the pointer, manifests and their checksums, checked
reads of version files, publishing (manifest first, pointer last), listing and pruning."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from fashion_search.store import LocalStore, ObjectStore
from fashion_search.store import versions as v


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def make_version(store: ObjectStore, version: str, files: dict[str, bytes] | None = None) -> v.Manifest:
    """Upload a version's files and return its manifest (not yet written: publish does that)."""
    files = {"embeddings.npy": b"\x93NUMPY fake", "records.jsonl": b""} if files is None else files
    return v.Manifest(
        version=version, created_at=v.utc_now(), build_seconds=1.5,
        catalog={"source": "test", "kind": "jsonl"}, counts={"catalog": 1, "indexed": 1},
        skipped_by_reason={}, model={"name": "tiny", "hash": "abc", "dim": 4},
        index={"type": "hnsw"}, files=v.write_files(store, version, files),
    )


def records(*image_sha256s: str) -> bytes:
    """records.jsonl as the builder writes it: each record names its thumbnail's key."""
    return "".join(json.dumps({"thumbnail": v.thumbnail_key(s)}) + "\n" for s in image_sha256s).encode()


# -- pointer and manifest ---------------------------------------------------------------------
def test_no_pointer_before_the_first_publish(store: LocalStore) -> None:
    assert v.read_pointer(store) is None


def test_publish_points_at_the_manifest_with_its_checksum(store: LocalStore) -> None:
    manifest = make_version(store, "20240101T000000000000Z-aaaaaa")
    pointer = v.publish(store, manifest)
    assert v.read_pointer(store) == pointer
    assert pointer.version == manifest.version
    raw = store.get(v.version_key(manifest.version, v.MANIFEST))
    assert pointer.manifest_sha256 == v.sha256(raw)
    assert v.read_manifest(store, pointer.version, pointer.manifest_sha256) == manifest


def test_an_invalid_pointer_is_refused_without_quoting_it(store: LocalStore) -> None:
    store.put(v.POINTER_KEY, b'{"version": "x", "secret": "hunter2"}')
    with pytest.raises(v.VersionError, match="manifest_sha256") as caught:
        v.read_pointer(store)
    assert "hunter2" not in str(caught.value)
    store.put(v.POINTER_KEY, b"not json at all")
    with pytest.raises(v.VersionError, match="not a valid pointer"):
        v.read_pointer(store)


def test_manifest_errors(store: LocalStore) -> None:
    with pytest.raises(v.VersionError, match="incomplete or missing"):
        v.read_manifest(store, "nope")
    pointer = v.publish(store, make_version(store, "20240101T000000000000Z-aaaaaa"))
    with pytest.raises(v.VersionError, match="does not match the pointer's checksum"):
        v.read_manifest(store, pointer.version, "0" * 64)
    store.put(v.version_key("broken", v.MANIFEST), b'{"version": "broken"}')
    with pytest.raises(v.VersionError, match="invalid manifest"):
        v.read_manifest(store, "broken")


def test_a_rewritten_manifest_no_longer_matches_the_pointer(store: LocalStore) -> None:
    pointer = v.publish(store, make_version(store, "20240101T000000000000Z-aaaaaa"))
    key = v.version_key(pointer.version, v.MANIFEST)
    store.put(key, store.get(key).replace(b'"build_seconds": 1.5', b'"build_seconds": 2.5'))
    v.read_manifest(store, pointer.version)  # still a valid manifest on its own
    with pytest.raises(v.VersionError, match="checksum"):
        v.read_manifest(store, pointer.version, pointer.manifest_sha256)


# -- version files ----------------------------------------------------------------------------
def test_write_files_records_sizes_and_checksums(store: LocalStore) -> None:
    infos = v.write_files(store, "v1", {"a.bin": b"abc", "empty": b""})
    assert infos["a.bin"] == v.FileInfo(sha256=v.sha256(b"abc"), bytes=3)
    assert infos["empty"].bytes == 0
    assert store.get(v.version_key("v1", "a.bin")) == b"abc"


def test_read_file_checks_what_it_reads(store: LocalStore) -> None:
    manifest = make_version(store, "v1", {"data.bin": b"0123456789"})
    assert v.read_file(store, manifest, "data.bin") == b"0123456789"
    with pytest.raises(v.VersionError, match=r"has no other\.bin"):
        v.read_file(store, manifest, "other.bin")
    key = v.version_key("v1", "data.bin")
    store.put(key, b"0123456780")  # same size, one byte flipped
    with pytest.raises(v.VersionError, match="corrupt"):
        v.read_file(store, manifest, "data.bin")
    store.put(key, b"01234")  # truncated
    with pytest.raises(v.VersionError, match="corrupt"):
        v.read_file(store, manifest, "data.bin")
    store.delete([key])
    with pytest.raises(v.VersionError, match=r"data\.bin is missing"):
        v.read_file(store, manifest, "data.bin")


# -- publishing -------------------------------------------------------------------------------
class PointerPutFails:
    """A real local store whose pointer write fails (a crash or an outage between the two puts)."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.uri = inner.uri

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes, **kwargs: object) -> None:
        if key == v.POINTER_KEY:
            raise OSError("disk gone")
        self.inner.put(key, data, **kwargs)  # type: ignore[arg-type]


def test_a_publish_cut_short_before_the_pointer_changes_nothing_served(store: LocalStore) -> None:
    old = v.publish(store, make_version(store, "20240101T000000000000Z-aaaaaa"))
    new = make_version(store, "20240102T000000000000Z-bbbbbb")
    with pytest.raises(OSError):
        v.publish(PointerPutFails(store), new)  # type: ignore[arg-type]
    assert v.read_pointer(store) == old
    assert v.list_versions(store) == {old.version: True, new.version: True}  # complete, not live
    assert list(store.list(v.POINTER_KEY)) == [v.POINTER_KEY]  # no temporary left visible


def test_readers_see_one_whole_version_or_the_next_during_publishes(store: LocalStore) -> None:
    """A reader following the pointer while versions are published always gets a manifest that matches."""
    v.publish(store, make_version(store, "20240101T000000000000Z-000000"))
    done, seen, errors = threading.Event(), set(), []

    def reader() -> None:
        while not done.is_set():
            try:
                pointer = v.read_pointer(store)
                assert pointer is not None
                manifest = v.read_manifest(store, pointer.version, pointer.manifest_sha256)
                v.read_file(store, manifest, "embeddings.npy")
                seen.add(manifest.version)
            except Exception as exc:  # collected: an assert in a thread would be lost
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 40):
            v.publish(store, make_version(store, f"20240101T000000000000Z-{i:06d}"))
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert seen  # the reader did read


# -- listing and pruning ----------------------------------------------------------------------
def test_list_versions_sorted_with_completeness(store: LocalStore) -> None:
    v.publish(store, make_version(store, "20240103T000000000000Z-cccccc"))
    v.publish(store, make_version(store, "20240101T000000000000Z-aaaaaa"))
    store.put(v.version_key("20240102T000000000000Z-bbbbbb", "index.faiss"), b"partial")
    store.put(v.thumbnail_key("f" * 64), b"webp")  # not a version
    assert v.list_versions(store) == {
        "20240101T000000000000Z-aaaaaa": True,
        "20240102T000000000000Z-bbbbbb": False,
        "20240103T000000000000Z-cccccc": True,
    }


def test_new_version_ids_sort_by_creation_time() -> None:
    first = v.new_version_id()
    time.sleep(0.002)
    second = v.new_version_id()
    assert first < second and first != v.new_version_id()


def test_prune_refuses_bad_arguments(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="keep"):
        v.prune(store, keep=0)
    with pytest.raises(ValueError, match="grace"):
        v.prune(store, keep=1, grace_seconds=float("nan"))


def test_prune_never_deletes_the_live_version_and_keeps_its_thumbnails(store: LocalStore) -> None:
    thumbs = {name: "".join(c * 64 for c in name) for name in "abc"}
    for name, thumb in thumbs.items():
        store.put(v.thumbnail_key(thumb), b"webp " + name.encode())
    ids = [f"2024010{i}T000000000000Z-{i:06d}" for i in (1, 2, 3)]
    manifests = [make_version(store, vid, {"records.jsonl": records(thumbs[n]), "embeddings.npy": b"e"})
                 for vid, n in zip(ids, "abc", strict=True)]
    for manifest in manifests:
        v.publish(store, manifest)
    v.publish(store, manifests[0])  # roll back: the oldest is live again
    report = v.prune(store, keep=1)
    assert list(v.list_versions(store)) == [ids[0], ids[2]]  # live + newest; the middle one goes
    assert report == {"versions_deleted": 1, "versions_kept": 2, "thumbnails_deleted": 1, "temp_files_deleted": 0}
    assert not store.exists(v.thumbnail_key(thumbs["b"]))
    assert store.exists(v.thumbnail_key(thumbs["a"])) and store.exists(v.thumbnail_key(thumbs["c"]))
    v.read_manifest(store, ids[0], v.read_pointer(store).manifest_sha256)  # still served


def test_prune_spares_young_incomplete_versions_and_their_thumbnails(store: LocalStore) -> None:
    v.publish(store, make_version(store, "20240101T000000000000Z-aaaaaa"))
    busy = "20240102T000000000000Z-bbbbbb"
    store.put(v.version_key(busy, "index.faiss"), b"uploading")
    store.put(v.thumbnail_key("e" * 64), b"maybe the busy build's")
    report = v.prune(store, keep=1)
    assert report["versions_deleted"] == 0 and report["thumbnails_deleted"] == 0
    assert store.exists(v.thumbnail_key("e" * 64))
    old = time.time() - 2 * v.DEAD_BUILD_SECONDS  # the same upload, now long dead
    os.utime(store.path(v.version_key(busy, "index.faiss")), (old, old))
    report = v.prune(store, keep=1)
    assert report["versions_deleted"] == 1 and report["thumbnails_deleted"] == 1
    assert list(v.list_versions(store)) == ["20240101T000000000000Z-aaaaaa"]
