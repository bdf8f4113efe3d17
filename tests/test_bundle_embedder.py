"""Model bundles and the onnxruntime embedder, with tiny real ONNX bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion_search.model.bundle import BundleError, read_bundle
from fashion_search.model.embedder import Embedder, image_to_array
from model_export.tiny_bundle import make_tiny_bundle
from tests.conftest import DATA


def test_bundle_json_describes_the_bundle(tiny_bundle: Path) -> None:
    spec = read_bundle(tiny_bundle, verify=True)
    assert spec.name == "tiny-random"
    assert spec.dim == 32
    assert (spec.image.height, spec.image.width, spec.image.resize) == (32, 32, "pad")
    assert set(spec.files) == {"text.onnx", "image.onnx", "tokenizer.json"}
    assert len(spec.hash) == 64


def test_same_weights_same_hash_other_weights_other_hash(tmp_path: Path, tiny_bundle: Path) -> None:
    assert make_tiny_bundle(tmp_path / "again").hash == read_bundle(tiny_bundle).hash
    assert make_tiny_bundle(tmp_path / "other", seed=7).hash != read_bundle(tiny_bundle).hash


def test_tampered_files_or_metadata_are_detected(tmp_path: Path, tiny_bundle: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "copy"))
    (copy / "image.onnx").write_bytes((copy / "image.onnx").read_bytes()[:-10])
    read_bundle(copy)  # cheap read trusts the files...
    with pytest.raises(BundleError, match=r"image\.onnx"):
        read_bundle(copy, verify=True)  # ...verification does not
    meta = json.loads((copy / "bundle.json").read_text())
    meta["dim"] = 64
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="hash"):
        read_bundle(copy)


def test_folder_without_bundle_json_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a model bundle"):
        Embedder(tmp_path)


def test_vectors_are_unit_float32(tiny_bundle: Path) -> None:
    embedder = Embedder(tiny_bundle, batch_size=4)
    texts = [f"navy blue shirt number {i}" for i in range(10)]
    vectors = embedder.encode_texts(texts)
    assert vectors.shape == (10, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    images = [Image.open(DATA / "fashion" / "images" / f"{i}.jpg").convert("RGB") for i in (10000, 10001, 10002)]
    image_vectors = embedder.encode_images(images)
    assert image_vectors.shape == (3, 32) and image_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode_texts([]).shape == (0, 32)


def test_text_length_is_dynamic_and_padding_does_not_change_vectors(tiny_bundle: Path) -> None:
    embedder = Embedder(tiny_bundle)
    feeds = embedder.tokenize(["red dress"])
    assert feeds["input_ids"].shape[1] < 10  # not padded to 77
    long = "a very long description of a navy blue cotton shirt for men " * 3
    assert embedder.tokenize(["red dress", long])["input_ids"].shape[1] > 20
    alone = embedder.encode_texts(["red dress"])[0]
    in_batch = embedder.encode_texts(["red dress", long])[0]
    np.testing.assert_allclose(alone, in_batch, atol=1e-5)
    truncated = embedder.tokenize([long * 5])["input_ids"]
    assert truncated.shape[1] == read_bundle(tiny_bundle).text.max_tokens


def test_batching_does_not_change_vectors(tiny_bundle: Path) -> None:
    images = [Image.open(p).convert("RGB") for p in sorted((DATA / "fashion" / "images").glob("1000*.jpg"))[:7]]
    one_by_one = np.concatenate([Embedder(tiny_bundle, batch_size=1).encode_images([i]) for i in images])
    batched = Embedder(tiny_bundle, batch_size=3).encode_images(images)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_image_preprocessing_crop_and_pad(tiny_bundle: Path) -> None:
    spec = read_bundle(tiny_bundle).image
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    padded = image_to_array(wide, spec)
    assert padded.shape == (3, 32, 32)
    # Pad mode keeps the whole red image and fills the rest with white (normalised: 1.0 everywhere).
    assert np.allclose(padded[:, 0, :], 1.0) and np.allclose(padded[0, 16, :], 1.0)
    assert np.allclose(padded[1, 16, :], -1.0)
    cropped = image_to_array(wide, spec.model_copy(update={"resize": "crop"}))
    assert cropped.shape == (3, 32, 32) and np.allclose(cropped[1], -1.0)  # all red, no padding
