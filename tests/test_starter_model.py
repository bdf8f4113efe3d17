"""The committed starter bundle (models/fashion-starter): sealed, small, documented, loadable by the
runtime unchanged, and its vectors mean something on products and catalogs it never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from fashion_search.config import default_model_dir
from fashion_search.model.bundle import read_bundle
from fashion_search.model.calibration import relevance
from fashion_search.model.embedder import Embedder
from fashion_search.model.images import decode_image
from fashion_search.serve.fusion import GalleryStats
from model_export import other_catalogs
from model_export.composed import composed_queries, relevant, top_k
from model_export.evaluate import AttributeQueries, attribute_precision, exact_search, title_recall
from model_export.starter.data import (
    TIME_SPLIT_RULE,
    VALIDATION_RULE,
    Product,
    load_products,
    split_indices,
    time_split_indices,
)

pytestmark = pytest.mark.heavy

REPO = Path(__file__).parents[1]
BUNDLE = REPO / "models" / "fashion-starter"
FEED = REPO / ".." / "shared" / "data" / "fashion" / "feed.jsonl"
needs_data = pytest.mark.skipif(not FEED.is_file(), reason="shared fashion data not present")
needs_dummyjson = pytest.mark.skipif(not other_catalogs.DUMMYJSON_FEED.is_file(), reason="DummyJSON data not present")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(BUNDLE, batch_size=64)


@pytest.fixture(scope="module")
def products() -> list[Product]:
    return load_products(FEED)


@pytest.fixture(scope="module")
def newest(products: list[Product], embedder: Embedder) -> tuple[list[Product], np.ndarray]:
    """The time split (the newest 5% by id, never trained on) and their image vectors."""
    held_out = [products[i] for i in time_split_indices(products)[1]]
    return held_out, embedder.encode_images([decode_image(p.image.read_bytes()) for p in held_out])


@pytest.fixture(scope="module")
def unseen(products: list[Product], newest: tuple[list[Product], np.ndarray],
           embedder: Embedder) -> tuple[list[Product], np.ndarray]:
    """Both held-out splits together (~2,100 products the model never trained on) as one gallery."""
    hash_rows = split_indices(products)[1]
    newest_ids = {p.id for p in newest[0]}
    extra = [products[i] for i in hash_rows if products[i].id not in newest_ids]
    vectors = embedder.encode_images([decode_image(p.image.read_bytes()) for p in extra])
    return newest[0] + extra, np.concatenate([newest[1], vectors])


@pytest.fixture(scope="module")
def dummyjson(embedder: Embedder) -> tuple[list[other_catalogs.Photo], np.ndarray]:
    photos = other_catalogs.dummyjson_photos()
    return photos, embedder.encode_images(other_catalogs.load_images(photos))


def test_is_the_default_bundle(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FASHION_SEARCH_MODEL", raising=False)
    monkeypatch.chdir(BUNDLE.parents[1])  # the repository root, where `make demo` runs
    assert default_model_dir().resolve() == BUNDLE.resolve()


def test_bundle_is_sealed_small_and_documented():
    spec = read_bundle(BUNDLE, verify=True)
    assert sum(f.stat().st_size for f in BUNDLE.iterdir()) < 40_000_000
    assert spec.info["held_out"] == {"time_split": TIME_SPLIT_RULE, "hash_split": VALIDATION_RULE}
    assert "Apache-2.0" in str(spec.info["licence"])
    assert spec.info["wall_minutes"]["total"] < 45
    card = (BUNDLE / "MODEL_CARD.md").read_text()
    for needed in ("Apache-2.0", TIME_SPLIT_RULE, VALIDATION_RULE, "not CLIP", spec.hash, "DummyJSON"):
        assert needed in card


def test_tokenizer_adds_bert_special_tokens_and_pads_with_pad(embedder: Embedder):
    tok = Tokenizer.from_file(str(BUNDLE / "tokenizer.json"))
    assert tok.encode("Navy Blue Shirt").tokens == ["[CLS]", "navy", "blue", "shirt", "[SEP]"]
    assert embedder.spec.text.pad_id == tok.token_to_id("[PAD]")


def test_text_vectors_do_not_depend_on_batch_mates(embedder: Embedder):
    """The text tower's int8 scales activations per row: padding and batch mates leave a text's
    vector alone (dynamic per-tensor int8 moved it to cosine 0.991)."""
    texts = ["red dress", "black leather formal shoes for men with laces"]
    together = embedder.encode_texts(texts)
    alone = np.concatenate([embedder.encode_texts([t]) for t in texts])
    assert (together * alone).sum(axis=1).min() > 0.9999


def test_blocks_and_query_gate(embedder: Embedder):
    """Texts have nothing in the backbone block; a fashion query lives mostly in the fashion block,
    a general one in the general block (the gate)."""
    blocks = embedder.spec.info["blocks"]
    (g0, g1), (f0, f1), (b0, b1) = blocks["general"], blocks["fashion"], blocks["backbone"]
    assert b1 == embedder.dim
    fashion, general = embedder.encode_texts(["navy blue shirt for men", "ceiling lamp"])
    assert np.allclose(fashion[b0:b1], 0) and np.allclose(general[b0:b1], 0)
    assert np.linalg.norm(fashion[f0:f1]) > 2 * np.linalg.norm(fashion[g0:g1])
    assert np.linalg.norm(general[g0:g1]) > 5 * np.linalg.norm(general[f0:f1])


def test_frozen_text_encoder_keeps_synonyms(embedder: Embedder):
    gown, dress, jeans, sneakers, shoes = embedder.encode_texts(["gown", "dress", "jeans", "sneakers", "shoes"])
    assert gown @ dress > gown @ jeans
    assert sneakers @ shoes > sneakers @ dress


@needs_data
def test_titles_find_their_own_new_photos(newest: tuple[list[Product], np.ndarray], embedder: Embedder):
    held_out, gallery = newest
    titles = embedder.encode_texts([p.title for p in held_out])
    recall = title_recall(titles, np.arange(len(held_out)), exact_search(gallery))
    assert recall["R@10"] >= 0.5  # 0.58 when the bundle was made; a random model scores ~0.01


@needs_data
def test_shopper_attribute_queries_on_new_photos(newest: tuple[list[Product], np.ndarray], embedder: Embedder):
    held_out, gallery = newest
    queries = AttributeQueries.from_products(held_out)
    result = attribute_precision(embedder.encode_texts(queries.texts), queries, [p.attributes for p in held_out],
                                 exact_search(gallery))
    assert result["P@10_capped"] >= 0.6  # 0.68 when the bundle was made


@needs_data
def test_a_new_photo_finds_products_of_its_kind(newest: tuple[list[Product], np.ndarray]):
    """Photo search: the 10 nearest other new photos mostly share the query's article type."""
    held_out, gallery = newest
    neighbours = exact_search(gallery)(gallery, 11)[:, 1:]
    types = np.array([p.article_type for p in held_out])
    assert (types[neighbours] == types[:, None]).mean() >= 0.6


@needs_data
def test_navy_blue_shirt_for_men(unseen: tuple[list[Product], np.ndarray], embedder: Embedder):
    """The README's example over the unseen men's shirts and t-shirts."""
    products, vectors = unseen
    rows = [i for i, p in enumerate(products) if p.gender == "Men" and p.article_type in ("Shirts", "Tshirts")]
    top = exact_search(vectors[rows])(embedder.encode_texts(["navy blue shirt for men"]), 5)[0]
    found = [products[rows[i]].attributes for i in top]
    # When the bundle was made: purple shirt (a dark one), navy blue shirt, blue shirt, blue shirt, navy blue
    # t-shirt (the bundle before: navy blue shirt, black t-shirt, blue shirt, navy blue t-shirt, blue shirt).
    assert ("Men", "Navy Blue", "Shirts") in found[:2], found
    assert sum(colour in ("Navy Blue", "Blue") for _, colour, _ in found) >= 4, found


# Words the catalog's titles and captions never use, the article types they mean, and how many of
# the top 5 unseen photos must be of those types. ("footwear" is not among them: it returns dresses,
# stockings and t-shirts; see the model card's limitations.)
UNSEEN_WORDS = {"shades": ({"Sunglasses"}, 4), "wristwatch": ({"Watches"}, 4), "gown": ({"Dresses"}, 4)}


@needs_data
def test_words_the_catalog_never_uses_find_their_kind(unseen: tuple[list[Product], np.ndarray],
                                                      products: list[Product], embedder: Embedder):
    """MiniLM stays frozen, so its vocabulary carries over to the trained head."""
    catalog_words = {w for p in products for w in p.title.lower().split()}
    gallery_products, gallery = unseen
    top = exact_search(gallery)(embedder.encode_texts(list(UNSEEN_WORDS)), 5)
    for (word, (kinds, at_least)), row in zip(UNSEEN_WORDS.items(), top, strict=True):
        assert not set(word.split()) <= catalog_words
        assert sum(gallery_products[i].article_type in kinds for i in row) >= at_least, word


@needs_dummyjson
@pytest.mark.parametrize(("query", "category"), [("smartphone", "smartphones"), ("sunglasses", "sunglasses"),
                                                 ("perfume", "fragrances"), ("motorcycle", "motorcycle")])
def test_general_queries_on_a_catalog_of_other_things(dummyjson: tuple[list[other_catalogs.Photo], np.ndarray],
                                                      embedder: Embedder, query: str, category: str):
    """DummyJSON (phones, laptops, sofas, lamps, ...; never trained on): the general block finds
    the kind a query names (the previous fashion-only starter found 0.19 of them)."""
    photos, vectors = dummyjson
    main = [i for i, p in enumerate(photos) if p.main]
    top = exact_search(vectors[main])(embedder.encode_texts([query]), 5)[0]
    assert sum(photos[main[i]].category == category for i in top) >= 3, [photos[main[i]].title for i in top]


@needs_dummyjson
def test_another_photo_of_a_product_finds_it(dummyjson: tuple[list[other_catalogs.Photo], np.ndarray],
                                             embedder: Embedder):
    photos, vectors = dummyjson
    result = other_catalogs.evaluate_dummyjson(photos, vectors, embedder.encode_texts)
    assert result["photo_R@5"] >= 0.8  # ~0.88 when the bundle was made; the previous starter: 0.37


@needs_data
@needs_dummyjson
def test_photo_gate_keeps_the_fashion_block_to_photos_like_the_training_ones(
        dummyjson: tuple[list[other_catalogs.Photo], np.ndarray], newest: tuple[list[Product], np.ndarray],
        embedder: Embedder):
    """The fashion head learned from 60x80 catalog shots only: on a DummyJSON photo (a sofa, a
    phone, or a dress shot another way) its block is switched off; on a new catalog photo it is on."""
    f0, f1 = embedder.spec.info["blocks"]["fashion"]
    on_new = np.linalg.norm(newest[1][:, f0:f1], axis=1)
    on_dummyjson = np.linalg.norm(dummyjson[1][:, f0:f1], axis=1)
    assert np.median(on_new) > 0.5 and (on_new > 0.25).mean() > 0.9
    assert np.median(on_dummyjson) < 0.1


def test_bundle_is_calibrated():
    calibration = read_bundle(BUNDLE).calibration
    assert calibration is not None
    assert 0 < calibration.image_threshold < calibration.text_threshold < 1
    assert calibration.notes["text_junk_below"] >= 0.9 and calibration.notes["text_real_above"] >= 0.9


@needs_data
def test_junk_has_no_close_match_and_shopper_queries_do(unseen: tuple[list[Product], np.ndarray],
                                                        embedder: Embedder):
    """Over the ~2,100 unseen products (a smaller gallery than calibration's 20,873: fewer close matches)."""
    calibration = embedder.spec.calibration
    _, gallery = unseen
    queries = {"qwzx plorf": False, "wifi router": False, "frozen pizza": False,
               "navy blue shirt for men": True, "black watches for men": True, "white sports shoes for men": True}
    best = relevance(calibration, text_cosine=(embedder.encode_texts(list(queries)) @ gallery.T).max(1))
    assert {q: bool(r >= calibration.text_threshold) for q, r in zip(queries, best, strict=True)} == queries


@needs_data
def test_soft_and_blends_a_new_photo_with_a_modifier(unseen: tuple[list[Product], np.ndarray],
                                                     embedder: Embedder):
    """Composed queries on unseen products: the service's fusion beats the seed's mix at alpha 0.5 and
    both halves alone (when the bundle was made: 0.38 vs 0.17, 0.06, 0.05 over the full feed)."""
    products, gallery = unseen
    queries = composed_queries(products, np.arange(len(products)), colours=60, genders=20, min_relevant=5)
    assert len(queries) == 80
    stats = GalleryStats.of(gallery)
    texts = embedder.encode_texts([q.text for q in queries])

    def precision(fusion: str, alpha: float) -> float:
        return float(np.mean([relevant(q, products)[top_k(fusion, gallery[q.row], t, alpha, gallery, stats)].mean()
                              for q, t in zip(queries, texts, strict=True)]))

    soft_and = precision("soft AND", 0.5)
    assert soft_and >= precision("seed mix", 0.5) + 0.1
    assert soft_and >= max(precision("soft AND", 0.0), precision("soft AND", 1.0)) + 0.15
