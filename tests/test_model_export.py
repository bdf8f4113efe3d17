"""`export-model` beyond CLIP: tiny random SigLIP (transformers) and open_clip models (a SigLIP-shaped one with
timm's attention pool and a SentencePiece tokenizer.json, a CLIP-shaped one with OpenAI's BPE), made here,
exported offline; the bundles must give the frameworks' own normalised features through the runtime Embedder
and rank like them at int8, and `export-model` + `build` + `query` must work for every architecture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("sentencepiece")

from PIL import Image  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from fashion_search.model.embedder import Embedder, image_to_array  # noqa: E402
from model_export import clip_export, export_model, open_clip_export  # noqa: E402
from model_export.clip_random import EOS, make_random_checkpoint  # noqa: E402
from model_export.open_clip_random import make_random_open_clip  # noqa: E402
from model_export.siglip_random import make_random_siglip  # noqa: E402
from tests.conftest import FASHION_IMAGES, write_feed  # noqa: E402
from tests.test_clip_export import _features, _unit  # noqa: E402

pytestmark = pytest.mark.heavy

TEXTS = [
    "red dress", "a photo of a navy blue shirt for men", "gold watch", "x",
    "black leather shoes for men with laces, and a very long description of cotton socks and sandals",
    "crimson gown", "white sneakers", "denim jeans", "striped kurta", "sunglasses",
    "backpack", "wallet and belt", "heels", "sports shoes for women", "track pants", "casual jacket",
]
# What the tokenizer clean-ups must handle like the frameworks (punctuation, case, "_", unicode, spacing).
TRICKY = [
    "Red Dress!", "NAVY-BLUE shirt_for men", "women's t-shirt (size 7.5)", "50% off: socks & belts", "  heels  ",
    "crimson\tgown\nsale", "Zürich café crème", "ﬁne ｆｕｌｌ width", "über_cool__jeans", "a\u00a0b", "", "!!!",
    "“smart” casual’s", "sandals &amp; flats", " ".join(["long"] * 80), "UPPER lower MiXeD", "sunglasses...???",
]
CLI = str(Path(sys.executable).parent / "fashion-search")


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random pictures of varied sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    sizes = [(60, 80), (300, 200), (32, 32), (123, 457), (640, 480)]
    return [Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)).resize(
        sizes[i % len(sizes)], Image.Resampling.BILINEAR) for i in range(n)]


def _rank_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(share of rows with the same top-1, mean Spearman correlation of the rows' rankings)."""
    top1 = float((a.argmax(1) == b.argmax(1)).mean())
    ra, rb = a.argsort(1).argsort(1).astype(float), b.argsort(1).argsort(1).astype(float)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    return top1, float(((ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))).mean())


# --- Hugging Face SigLIP -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def siglip_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_siglip(tmp_path_factory.mktemp("siglip-src"), tiny=True)


@pytest.fixture(scope="module")
def siglip_model(siglip_src: Path):
    return transformers.SiglipModel.from_pretrained(str(siglip_src)).eval()


@pytest.fixture(scope="module")
def siglip_bundle(siglip_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("siglip-fp32")
    export_model.export_model(str(siglip_src), out)
    return out


def test_siglip_bundle_describes_its_preprocessing(siglip_bundle: Path, siglip_src: Path) -> None:
    spec = Embedder(siglip_bundle).spec
    assert spec.dim == 32 and spec.info["kind"].startswith("SigLIP")
    assert (spec.image.height, spec.image.width, spec.image.resize) == (32, 32, "squash")
    assert spec.image.mean == (0.5, 0.5, 0.5) and spec.image.std == (0.5, 0.5, 0.5)
    assert (spec.text.max_tokens, spec.text.pad_id, spec.text.padding) == (64, 1, "max_length")
    # transformers 5 saved the processor as processor_config.json only: the export read it from there.
    assert not (siglip_src / "preprocessor_config.json").exists()
    assert (siglip_src / "processor_config.json").is_file() and not (siglip_src / "tokenizer.json").exists()


def test_siglip_tokenizer_json_gives_siglip_tokenizers_ids(siglip_bundle: Path, siglip_src: Path) -> None:
    """spiece.model + SiglipTokenizer's clean-up, converted at export, against the SentencePiece tokenizer."""
    reference = transformers.SiglipTokenizer.from_pretrained(str(siglip_src))
    texts = TEXTS + TRICKY
    want = reference(texts, padding="max_length", max_length=64, truncation=True)["input_ids"]
    got = Embedder(siglip_bundle).tokenize(texts)
    assert set(got) == {"input_ids"}  # no attention mask: SigLIP was trained without one
    assert got["input_ids"].tolist() == want


def test_siglip_text_tower_matches_torch(siglip_bundle: Path, siglip_src: Path, siglip_model) -> None:
    reference = transformers.SiglipTokenizer.from_pretrained(str(siglip_src))
    texts = TEXTS + TRICKY
    got = Embedder(siglip_bundle, batch_size=5).encode_texts(texts)
    ids = reference(texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        want = _unit(_features(siglip_model.get_text_features(input_ids=ids)))
    assert np.abs(got - want).max() < 1e-4


def test_siglip_image_tower_and_preprocessing_match_transformers(siglip_bundle: Path, siglip_src: Path,
                                                                 siglip_model) -> None:
    embedder = Embedder(siglip_bundle, batch_size=4)
    images = _images(10)
    pixels = np.stack([image_to_array(img, embedder.spec.image) for img in images])
    with torch.inference_mode():
        want = _unit(_features(siglip_model.get_image_features(pixel_values=torch.from_numpy(pixels))))
    assert np.abs(embedder.encode_images(images) - want).max() < 1e-4
    # The runtime's squash resize is SiglipImageProcessor's (its PIL backend: the same bicubic filter).
    processor = transformers.SiglipImageProcessorPil(**json.loads(
        (siglip_src / "processor_config.json").read_text())["image_processor"])
    reference = processor(images=images, return_tensors="np")["pixel_values"]
    assert reference.shape == pixels.shape and np.abs(reference - pixels).max() < 0.02


# --- open_clip -----------------------------------------------------------------------------------------------------

OPEN_CLIP_ARCHS = ["siglip-tiny", "clip-tiny"]


@pytest.fixture(scope="module")
def open_clip_src(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {arch: make_random_open_clip(tmp_path_factory.mktemp(f"oc-{arch}"), arch) for arch in OPEN_CLIP_ARCHS}


@pytest.fixture(scope="module")
def open_clip_bundles(open_clip_src: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    bundles = {}
    for arch, src in open_clip_src.items():
        bundles[arch] = tmp_path_factory.mktemp(f"oc-{arch}-fp32")
        export_model.export_model(str(src), bundles[arch])
    return bundles


def test_open_clip_bundles_describe_their_preprocessing(open_clip_bundles: dict[str, Path]) -> None:
    siglip, clip = Embedder(open_clip_bundles["siglip-tiny"]).spec, Embedder(open_clip_bundles["clip-tiny"]).spec
    assert (siglip.dim, siglip.image.height, siglip.image.resize, siglip.image.mean) == (96, 160, "squash", (0.5,) * 3)
    assert (siglip.text.max_tokens, siglip.text.padding) == (64, "max_length")
    assert (clip.dim, clip.image.height, clip.image.resize, clip.image.mean) == (16, 32, "crop", clip_export.CLIP_MEAN)
    assert (clip.text.max_tokens, clip.text.pad_id, clip.text.padding) == (77, 0, "max_length")


@pytest.mark.parametrize("arch", OPEN_CLIP_ARCHS)
def test_open_clip_tokenizer_json_gives_open_clips_ids(arch: str, open_clip_src: dict[str, Path],
                                                       open_clip_bundles: dict[str, Path]) -> None:
    """open_clip's clean-up (ftfy/HTML for ordinary text, canonicalize for SigLIP) and its tokenizer."""
    _, reference = open_clip_export.load(str(open_clip_src[arch]))
    texts = TEXTS + TRICKY
    assert Embedder(open_clip_bundles[arch]).tokenize(texts)["input_ids"].tolist() == reference(texts).tolist()


@pytest.mark.parametrize("arch", OPEN_CLIP_ARCHS)
def test_open_clip_towers_match_encode_text_and_encode_image(arch: str, open_clip_src: dict[str, Path],
                                                             open_clip_bundles: dict[str, Path]) -> None:
    model, tokenizer = open_clip_export.load(str(open_clip_src[arch]))
    embedder = Embedder(open_clip_bundles[arch], batch_size=5)
    images = _images(8)
    pixels = np.stack([image_to_array(img, embedder.spec.image) for img in images])
    with torch.inference_mode():
        want_text = model.encode_text(tokenizer(TEXTS + TRICKY), normalize=True).numpy()
        want_image = model.encode_image(torch.from_numpy(pixels), normalize=True).numpy()
    assert np.abs(embedder.encode_texts(TEXTS + TRICKY) - want_text).max() < 1e-4
    assert np.abs(embedder.encode_images(images) - want_image).max() < 1e-4


@pytest.mark.parametrize(("mode", "tolerance"), [("squash", 1e-5), ("shortest", 0.03), ("longest", 0.03)])
def test_runtime_preprocessing_reproduces_open_clips_transform(mode: str, tolerance: float) -> None:
    """open_clip's inference transform for each resize mode against the runtime's (mean abs difference:
    torchvision rounds the crop/pad offsets where the runtime floors, a pixel's shift at most)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = {"size": 64, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "resize_mode": mode, "fill_color": 0}
    spec = open_clip_export.open_clip_image_spec(cfg)
    transform = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    for img in _images(5, seed=3):
        want = transform(img).numpy()
        got = image_to_array(img, spec)
        assert got.shape == want.shape and np.abs(got - want).mean() < tolerance


def test_unsupported_open_clip_preprocessing_is_refused() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        open_clip_export.open_clip_image_spec({"size": 224, "interpolation": "bilinear"})


# --- int8, for both SigLIP flavours -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["siglip", "open-clip-siglip"])
def test_int8_bundle_ranks_like_fp32(which: str, siglip_src: Path, siglip_bundle: Path,
                                     open_clip_src: dict[str, Path], open_clip_bundles: dict[str, Path],
                                     tmp_path: Path) -> None:
    src, fp32_dir = ((siglip_src, siglip_bundle) if which == "siglip"
                     else (open_clip_src["siglip-tiny"], open_clip_bundles["siglip-tiny"]))
    export_model.export_model(str(src), tmp_path / "int8", quantize="int8")
    fp32, int8 = Embedder(fp32_dir), Embedder(tmp_path / "int8")
    assert int8.model_hash != fp32.model_hash
    assert (tmp_path / "int8" / "text.onnx").stat().st_size < (fp32_dir / "text.onnx").stat().st_size
    images = _images(40, seed=2)
    t32, t8 = fp32.encode_texts(TEXTS), int8.encode_texts(TEXTS)
    i32, i8 = fp32.encode_images(images), int8.encode_images(images)
    assert (t32 * t8).sum(1).min() > 0.99 and (i32 * i8).sum(1).min() > 0.99
    # Every score moves by less than 0.03 (cosine units), so no two results further apart than 0.06 swap.
    assert np.abs(t32 @ i32.T - t8 @ i8.T).max() < 0.03
    top1, spearman = _rank_agreement(t32 @ i32.T, t8 @ i8.T)  # each text ranks the 40 images
    assert top1 >= 0.9 and spearman >= 0.98
    # Each image ranks the 16 texts: top-1 only. A random SigLIP's text vectors are near-duplicates (they pool
    # a padding position; mean pairwise cosine 0.97), so one image's 16 scores lie within ~0.04 of each other
    # and the middle of that ranking is near-ties that any error reorders (Spearman 0.70 for 0.009 of error).
    top1, _ = _rank_agreement(i32 @ t32.T, i8 @ t8.T)
    assert top1 >= 0.9


# --- the fixes found while checking the CLIP export ------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp("clip-src"), tiny=True, seed=0)


@pytest.fixture(scope="module")
def clip_bundle(clip_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip-fp32")
    export_model.export_model(str(clip_src), out)
    return out


def test_special_token_literals_in_a_query_are_plain_text(clip_bundle: Path, clip_src: Path) -> None:
    """"<|endoftext|>" typed by a shopper is tokenised as characters: one end token, at the end, so the
    tower pools where CLIP does (its first end token) and the rest of the query still counts."""
    texts = [f"red {EOS} dress", f"{EOS}", "shirt </s> <pad> [SEP]"]
    embedder = Embedder(clip_bundle)
    eos = Tokenizer.from_file(str(clip_bundle / "tokenizer.json")).token_to_id(EOS)
    ids = embedder.tokenize(texts)["input_ids"]
    lengths = embedder.tokenize(texts)["attention_mask"].sum(1)
    assert [(row[: n] == eos).sum() for row, n in zip(ids, lengths, strict=True)] == [1, 1, 1]
    assert all(row[n - 1] == eos for row, n in zip(ids, lengths, strict=True))
    model = transformers.CLIPModel.from_pretrained(str(clip_src)).eval()
    with torch.inference_mode():  # HF pools at the first end token: the same place, now
        want = np.concatenate([_unit(_features(model.get_text_features(input_ids=torch.tensor([row[:n].tolist()]))))
                               for row, n in zip(ids, lengths, strict=True)])
    assert np.abs(embedder.encode_texts(texts) - want).max() < 1e-4
    assert np.abs(embedder.encode_texts(["red dress"]) - embedder.encode_texts([f"red {EOS} dress"])).max() > 1e-3


def test_clip_preprocessing_is_read_from_processor_config_or_refused(tmp_path: Path) -> None:
    """transformers 5 saves processor_config.json: read it; with neither file, refuse (no silent defaults)."""
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json"):
        clip_export.image_spec(tmp_path, image_size=224)
    image_processor = {"crop_size": {"height": 64, "width": 64}, "size": {"shortest_edge": 64},
                       "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 3}
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": image_processor}))
    spec = clip_export.image_spec(tmp_path, image_size=224)
    assert (spec.height, spec.mean, spec.std) == (64, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": {**image_processor,
                                                                                    "resample": 2}}))
    with pytest.raises(ValueError, match="resampling"):
        clip_export.image_spec(tmp_path, image_size=224)


def test_sources_it_cannot_export_are_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    with pytest.raises(ValueError, match="NaFlex"):
        export_model.detect(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="unsupported model_type"):
        export_model.detect(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        export_model.detect(str(tmp_path / "nowhere"))


# --- export-model, build and query as a user runs them, per architecture -------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["clip", "siglip", "open-clip-siglip", "open-clip-clip"])
def test_export_model_then_build_and_query(arch: str, tmp_path: Path, clip_src: Path, siglip_src: Path,
                                           open_clip_src: dict[str, Path]) -> None:
    source = {"clip": clip_src, "siglip": siglip_src, "open-clip-siglip": open_clip_src["siglip-tiny"],
              "open-clip-clip": open_clip_src["clip-tiny"]}[arch]
    bundle, store = tmp_path / "bundle", tmp_path / "store"
    exported = _cli("export-model", "--source", source, "--out", bundle, "--quantize", "int8")
    assert exported.returncode == 0, exported.stderr
    assert f"to {bundle}" in exported.stdout
    feed = write_feed(tmp_path / "catalog" / "feed.jsonl", 12)
    built = _cli("build", "--catalog", feed, "--store", store, "--model", bundle, "--quiet")
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["products_indexed"] == 12
    by_text = _cli("query", "--store", store, "--model", bundle, "--text", "white skirt", "--top-k", "3")
    assert by_text.returncode == 0, by_text.stderr
    assert len(json.loads(by_text.stdout)["results"]) == 3
    by_photo = _cli("query", "--store", store, "--model", bundle, "--image", FASHION_IMAGES / "10003.jpg")
    assert by_photo.returncode == 0, by_photo.stderr
    assert json.loads(by_photo.stdout)["results"][0]["product_id"] == "10003"  # a catalog photo finds itself
