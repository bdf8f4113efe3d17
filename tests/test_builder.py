"""The index pipeline end to end: replica APIs with injected faults, S3 on moto, incremental builds."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.build.fetch import FetchError, FetchOptions
from fashion_search.build.pipeline import BuildError, BuildOptions, BuildSummary, build_index
from fashion_search.index import open_index
from fashion_search.model.embedder import Embedder
from fashion_search.store import LocalStore, ObjectStore, open_store, versions
from tests.conftest import DATA
from tests.replica import Fault, Replica

FAST = BuildOptions(fetch=FetchOptions(timeout=1.0, retries=3, backoff=0.01))


def build(catalog: str, store: ObjectStore, bundle: Path, options: BuildOptions = FAST) -> BuildSummary:
    return asyncio.run(build_index(catalog, store, Embedder(bundle), options))


def live(store: ObjectStore) -> versions.Manifest:
    pointer = versions.read_pointer(store)
    assert pointer is not None
    return versions.read_manifest(store, pointer.version, pointer.manifest_sha256)


def rows(store: ObjectStore, manifest: versions.Manifest, name: str) -> list[dict]:
    return [json.loads(line) for line in versions.read_file(store, manifest, name).decode().splitlines()]


def test_dummyjson_build_into_s3_survives_faults(dummyjson: Replica, s3_uri: str, tiny_bundle: Path) -> None:
    image = {pid: dummyjson.image_path(p) for pid, p in ((p["id"], p) for p in dummyjson.products)}
    dummyjson.faults.update({
        image[3]: Fault("not_found"),
        image[5]: Fault("truncate"),
        image[7]: Fault("html"),
        image[9]: Fault("slow", delay=1.5),  # slower than the 1 s timeout, every time
        image[11]: Fault("status", status=500, times=2),  # fails twice, then works
        image[13]: Fault("slow", delay=1.5, times=1),  # times out once, then works
        "/products": Fault("status", status=502, times=1),  # the catalog itself hiccups
    })
    store = open_store(s3_uri)
    summary = build(dummyjson.products_url, store, tiny_bundle)

    assert summary.products_indexed == 96 and summary.skipped == 4, summary.skipped_by_reason
    assert summary.skipped_by_reason == {"image_broken": 1, "image_not_an_image": 1,
                                         "image_not_found": 1, "image_timeout": 1}
    assert dummyjson.hits[image[11]] == 3 and dummyjson.hits[image[9]] == 4  # retried, within bounds
    manifest = live(store)
    assert manifest.version == summary.version
    assert manifest.counts == {"catalog": 100, "indexed": 96, "skipped": 4, "reused": 0, "encoded": 96}
    assert manifest.model["name"] == "tiny-random" and manifest.model["dim"] == 32
    assert manifest.index == {"type": "IndexHNSWFlat", "metric": "inner_product", "m": 32,
                              "ef_construction": 200, "ef_search": 256}
    assert manifest.catalog == {"source": dummyjson.products_url, "kind": "dummyjson"}

    skipped = {r["product_id"]: r for r in rows(store, manifest, "skipped.jsonl")}
    assert set(skipped) == {"3", "5", "7", "9"} and "404" in skipped["3"]["detail"]
    products = rows(store, manifest, "products.jsonl")
    assert [p["product_id"] for p in products] == [str(i) for i in range(1, 101) if i not in (3, 5, 7, 9)]
    first = products[0]
    assert first["title"] == "iPhone 9" and first["price"] == 549 and first["category"] == "smartphones"
    thumb = Image.open(io.BytesIO(store.get(first["thumbnail"])))
    assert thumb.format == "WEBP" and max(thumb.size) <= 320

    # The index answers with cosine similarity: a product's own image finds itself first.
    index = open_index(manifest.index, lambda name: versions.read_file(store, manifest, name))
    embeddings = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy")))
    assert index.ntotal == 96 and embeddings.shape == (96, 32)
    own = Embedder(tiny_bundle).encode_images([Image.open(DATA / "dummyjson/legacy_v1/images/10/1.jpg")
                                               .convert("RGB")])
    scores, ids = index.search(own, 5)
    assert products[ids[0][0]]["product_id"] == "10" and scores[0][0] == pytest.approx(1.0, abs=1e-4)
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_rebuild_reuses_unchanged_images_via_conditional_requests(dummyjson: Replica, tmp_path: Path,
                                                                    tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    dummyjson.faults[dummyjson.image_path(dummyjson.products[4])] = Fault("truncate")
    first = build(dummyjson.products_url, store, tiny_bundle)
    assert (first.encoded, first.reused_embeddings, first.skipped) == (99, 0, 1)

    dummyjson.faults.clear()  # product 5's image is repaired...
    changed = dummyjson.products[19]  # ...and product 20 gets a new photo
    dummyjson.files[dummyjson.image_path(changed)] = DATA / "fashion" / "images" / "10000.jpg"
    second = build(dummyjson.products_url, store, tiny_bundle)
    assert (second.encoded, second.reused_embeddings, second.skipped) == (2, 98, 0)

    manifest = live(store)
    vectors = np.load(io.BytesIO(versions.read_file(store, manifest, "embeddings.npy")))
    ids = [p["product_id"] for p in rows(store, manifest, "products.jsonl")]
    fresh = Embedder(tiny_bundle).encode_images([Image.open(DATA / "fashion/images/10000.jpg").convert("RGB")])
    np.testing.assert_allclose(vectors[ids.index("20")], fresh[0], atol=1e-5)


def test_feed_rebuild_tracks_file_and_metadata_changes(tmp_path: Path, tiny_bundle: Path) -> None:
    images = tmp_path / "feed" / "images"
    images.mkdir(parents=True)
    lines = [json.loads(line) for line in (DATA / "fashion" / "feed.jsonl").read_text().splitlines()[:40]]
    for line in lines:
        shutil.copy(DATA / "fashion" / line["image"], images)
    feed = tmp_path / "feed" / "feed.jsonl"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = open_store(tmp_path / "store")
    assert build(str(feed), store, tiny_bundle).encoded == 40

    lines[0]["title"] = "Renamed Skirt"  # metadata only: the embedding is still valid
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    shutil.copy(DATA / "fashion" / "images" / "10112.jpg", images / Path(lines[1]["image"]).name)  # new photo
    summary = build(str(feed), store, tiny_bundle)
    assert (summary.encoded, summary.reused_embeddings) == (1, 39)
    assert rows(store, live(store), "products.jsonl")[0]["title"] == "Renamed Skirt"

    # Same bytes under another name, or a photo another product had: hashed, not encoded.
    shutil.copy(images / Path(lines[2]["image"]).name, images / Path(lines[4]["image"]).name)
    other = tmp_path / "feed" / "images" / "touched.jpg"
    (images / Path(lines[3]["image"]).name).rename(other)
    lines[3]["image"] = "images/touched.jpg"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert build(str(feed), store, tiny_bundle).encoded == 0


def test_a_new_model_re_encodes_everything(fakestore: Replica, tmp_path: Path, tiny_bundle: Path,
                                           other_bundle: tuple[Path, object]) -> None:
    store = open_store(tmp_path / "store")
    build(fakestore.products_url, store, tiny_bundle)
    summary = build(fakestore.products_url, store, other_bundle[0])
    assert (summary.encoded, summary.reused_embeddings) == (20, 0)
    assert live(store).model["name"] == "tiny-other"


def test_a_corrupt_live_version_is_not_reused(fakestore: Replica, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    first = build(fakestore.products_url, store, tiny_bundle)
    key = versions.version_key(first.version, "embeddings.npy")
    store.put(key, store.get(key)[:-8] + b"garbage!")
    assert build(fakestore.products_url, store, tiny_bundle).encoded == 20


def test_failed_builds_never_move_the_pointer(fakestore: Replica, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    good = build(fakestore.products_url, store, tiny_bundle)
    for product in fakestore.products:
        fakestore.faults[fakestore.image_path(product)] = Fault("not_found")
    with pytest.raises(BuildError, match=r"no product .* could be indexed"):
        build(fakestore.products_url, store, tiny_bundle)
    fakestore.faults["/products"] = Fault("status", status=500)
    with pytest.raises(FetchError):
        build(fakestore.products_url, store, tiny_bundle)
    assert live(store).version == good.version


def test_prune_keeps_the_newest_versions_and_their_thumbnails(fakestore: Replica, tmp_path: Path,
                                                               tiny_bundle: Path) -> None:
    store = LocalStore(tmp_path / "store")
    build(fakestore.products_url, store, tiny_bundle)
    old_thumbs = {r["thumbnail"] for r in rows(store, live(store), "records.jsonl")}
    fakestore.files[fakestore.image_path(fakestore.products[0])] = DATA / "fashion" / "images" / "10000.jpg"
    built = [build(fakestore.products_url, store, tiny_bundle).version for _ in range(3)]
    store.put(versions.version_key("00000000T000000000000Z-dead00", "index.faiss"), b"dead build")
    two_hours_ago = time.time() - 7200  # untouched for longer than the grace period: a dead build
    os.utime(store.path(versions.version_key("00000000T000000000000Z-dead00", "index.faiss")),
             (two_hours_ago, two_hours_ago))
    store.put(versions.version_key("99999999T000000000000Z-busy00", "index.faiss"), b"in progress")

    report = versions.prune(store, keep=2)
    assert report["versions_deleted"] == 3  # the oldest complete ones and the dead build
    assert list(versions.list_versions(store)) == [*built[1:], "99999999T000000000000Z-busy00"]
    assert report["thumbnails_deleted"] == 0  # a build may be in progress: leave thumbnails alone

    store.delete(store.list(versions.version_key("99999999T000000000000Z-busy00", "")))
    report = versions.prune(store, keep=2)
    dropped = old_thumbs - {r["thumbnail"] for r in rows(store, live(store), "records.jsonl")}
    assert report["thumbnails_deleted"] == len(dropped) == 1
    assert not store.exists(dropped.pop()) and live(store).version == built[-1]


def test_build_option_keep_prunes_after_publishing(fakestore: Replica, tmp_path: Path, tiny_bundle: Path) -> None:
    store = open_store(tmp_path / "store")
    for _ in range(3):
        summary = build(fakestore.products_url, store, tiny_bundle, BuildOptions(keep_versions=1))
    assert list(versions.list_versions(store)) == [summary.version]
    assert summary.pruned == {"versions_deleted": 1, "versions_kept": 1, "thumbnails_deleted": 0,
                              "temp_files_deleted": 0}
