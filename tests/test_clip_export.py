"""CLIP -> ONNX export: a tiny random CLIPModel exported offline must give torch's embeddings through
the runtime Embedder (padded batches included), and its int8 bundle must rank like the fp32 one."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from fashion_search.model.embedder import Embedder, image_to_array  # noqa: E402
from model_export import clip_export  # noqa: E402
from model_export.clip_random import BOS, EOS, make_random_checkpoint  # noqa: E402

pytestmark = pytest.mark.heavy

TEXTS = [
    "red dress", "a photo of a navy blue shirt for men", "gold watch", "x",
    "black leather shoes for men with laces, and a very long description of cotton socks and sandals",
    "crimson gown", "white sneakers", "denim jeans", "striped kurta", "sunglasses",
    "backpack", "wallet and belt", "heels", "sports shoes for women", "track pants", "casual jacket",
]


def _unit(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1).numpy()


def _features(output: object) -> torch.Tensor:
    """get_*_features returns a tensor in transformers 4 and a ModelOutput in 5."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random pictures of varied sizes and aspect ratios (exercises resize + centre crop)."""
    rng = np.random.default_rng(seed)
    sizes = [(60, 80), (300, 200), (32, 32), (123, 457), (640, 480)]
    out = []
    for i in range(n):
        small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
        out.append(Image.fromarray(small).resize(sizes[i % len(sizes)], Image.Resampling.BILINEAR))
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory):
    return make_random_checkpoint(tmp_path_factory.mktemp("clip-src"), tiny=True, seed=0)


@pytest.fixture(scope="module")
def torch_model(checkpoint):
    return transformers.CLIPModel.from_pretrained(str(checkpoint)).eval()


@pytest.fixture(scope="module")
def fp32_bundle(checkpoint, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("clip-fp32")
    # Through the command's own entry point, as `fashion-search export-clip` runs it.
    parser = argparse.ArgumentParser()
    clip_export.configure_parser(parser)
    assert clip_export.run(parser.parse_args(["--source", str(checkpoint), "--out", str(out)])) == 0
    return out


@pytest.fixture(scope="module")
def int8_bundle(checkpoint, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("clip-int8")
    clip_export.export_clip(str(checkpoint), out, quantize="int8")
    return out


def test_bundle_describes_clip_preprocessing_and_tokenizer(fp32_bundle, checkpoint):
    embedder = Embedder(fp32_bundle)
    spec = embedder.spec
    tok = Tokenizer.from_file(str(fp32_bundle / "tokenizer.json"))
    assert spec.dim == 16
    assert (spec.image.height, spec.image.width, spec.image.resize) == (32, 32, "crop")
    assert spec.image.mean == clip_export.CLIP_MEAN and spec.image.std == clip_export.CLIP_STD
    assert spec.text.max_tokens == 32
    assert spec.text.pad_id == tok.token_to_id(EOS)  # OpenAI-style: pad with <|endoftext|>
    tokens = tok.encode("Red Dress").tokens
    assert tokens[0] == BOS and tokens[-1] == EOS and "red</w>" in tokens
    saved = json.loads((checkpoint / "preprocessor_config.json").read_text())
    assert saved["crop_size"]["height"] == spec.image.height


def test_text_tower_matches_torch_with_padded_batches(fp32_bundle, torch_model):
    embedder = Embedder(fp32_bundle, batch_size=5)  # batches of 5 texts of very different lengths
    got = embedder.encode_texts(TEXTS)
    tok = Tokenizer.from_file(str(fp32_bundle / "tokenizer.json"))
    tok.enable_truncation(embedder.spec.text.max_tokens)
    with torch.inference_mode():
        # Reference: each text alone, unpadded, through HF's own pooling (first EOS for this config).
        want = np.concatenate([
            _unit(_features(torch_model.get_text_features(input_ids=torch.tensor([tok.encode(t).ids]))))
            for t in TEXTS
        ])
    assert np.abs(got - want).max() < 1e-4
    # Padding must not move the pooled position: a batch of one equals the same text in a batch.
    alone = Embedder(fp32_bundle, batch_size=1).encode_texts(TEXTS)
    assert np.abs(alone - got).max() < 1e-4


def test_text_tower_truncates_long_texts_at_max_tokens(fp32_bundle, torch_model):
    long_text = " ".join(["striped cotton kurta"] * 40)  # far beyond 32 positions
    got = Embedder(fp32_bundle).encode_texts([long_text, "red dress"])
    tok = Tokenizer.from_file(str(fp32_bundle / "tokenizer.json"))
    tok.enable_truncation(32)
    ids = tok.encode(long_text).ids
    assert len(ids) == 32 and ids[-1] == tok.token_to_id(EOS)
    with torch.inference_mode():
        want = _unit(_features(torch_model.get_text_features(input_ids=torch.tensor([ids]))))
    assert np.abs(got[0] - want[0]).max() < 1e-4


def test_image_tower_matches_torch(fp32_bundle, torch_model):
    embedder = Embedder(fp32_bundle, batch_size=4)
    images = _images(10)
    got = embedder.encode_images(images)
    pixels = torch.from_numpy(np.stack([image_to_array(img, embedder.spec.image) for img in images]))
    with torch.inference_mode():
        want = _unit(_features(torch_model.get_image_features(pixel_values=pixels)))
    assert np.abs(got - want).max() < 1e-4


# openai/clip-vit-base-patch32's preprocessor_config.json (older integer-size format).
OPENAI_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": list(clip_export.CLIP_MEAN),
    "image_std": list(clip_export.CLIP_STD), "resample": 3, "size": 224,
}


def test_runtime_preprocessing_reproduces_clip_image_processor(tmp_path):
    """OpenAI's preprocessor config becomes an ImageSpec whose runtime preprocessing is CLIP's own.

    CLIP floors the resized long side where the runtime rounds it (298 vs 299 px for a 60x80 photo),
    so some aspect ratios differ by about one grey level on average (0.0146 in normalised units);
    a wrong crop, size or normalisation would differ by far more."""
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(OPENAI_PREPROCESSOR))
    spec = clip_export.image_spec(tmp_path, image_size=224)
    assert (spec.height, spec.width, spec.resize) == (224, 224, "crop")
    processor = transformers.AutoImageProcessor.from_pretrained(str(tmp_path))
    for img in _images(5, seed=1):
        want = processor(images=img, return_tensors="np")["pixel_values"][0]
        got = image_to_array(img, spec)
        assert got.shape == want.shape
        assert np.abs(got - want).mean() < 0.02


def test_unsupported_preprocessing_is_refused(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**OPENAI_PREPROCESSOR, "size": 256}))
    with pytest.raises(ValueError, match="unsupported CLIP preprocessing"):
        clip_export.image_spec(tmp_path, image_size=224)


def _rank_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(share of rows with the same top-1, mean Spearman correlation of the rows' rankings)."""
    top1 = float((a.argmax(1) == b.argmax(1)).mean())
    ra, rb = a.argsort(1).argsort(1).astype(float), b.argsort(1).argsort(1).astype(float)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    spearman = float(((ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))).mean())
    return top1, spearman


def test_int8_bundle_ranks_like_fp32(fp32_bundle, int8_bundle):
    fp32, int8 = Embedder(fp32_bundle), Embedder(int8_bundle)
    assert int8.model_hash != fp32.model_hash  # different vectors must never share an index
    assert (int8_bundle / "text.onnx").stat().st_size < (fp32_bundle / "text.onnx").stat().st_size
    images = _images(40, seed=2)
    t32, t8 = fp32.encode_texts(TEXTS), int8.encode_texts(TEXTS)
    i32, i8 = fp32.encode_images(images), int8.encode_images(images)
    assert (t32 * t8).sum(1).min() > 0.99 and (i32 * i8).sum(1).min() > 0.99
    top1, spearman = _rank_agreement(t32 @ i32.T, t8 @ i8.T)  # each text ranks the 40 images
    assert top1 >= 0.9 and spearman >= 0.98
    top1, spearman = _rank_agreement(i32 @ t32.T, i8 @ t8.T)  # each image ranks the 16 texts
    assert top1 >= 0.9 and spearman >= 0.98


def test_export_clip_through_the_cli(checkpoint, tmp_path):
    """`fashion-search export-clip` as a user runs it: the console script, with a local checkpoint."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).parent / "fashion-search"
    out = tmp_path / "bundle"
    result = subprocess.run([str(cli), "export-clip", "--source", str(checkpoint), "--out", str(out),
                             "--quantize", "int8"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    embedder = Embedder(out)
    assert embedder.encode_texts(["red dress"]).shape == (1, embedder.dim)
    missing = subprocess.run([str(cli), "export-clip", "--source", str(tmp_path / "nowhere"), "--out",
                              str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
