"""Filter columns and the keyword index: what a version stores for filters, facets and BM25, and how each
refuses what it cannot answer."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from fashion_search.index.columns import BadFilter, Columns, UnknownField
from fashion_search.index.keywords import KeywordIndex

PRODUCTS = [
    {"category": "Tops", "brand": "Puma", "price": 19.99, "rating": 4.5, "stock": 3, "gender": "Women"},
    {"category": "tops", "brand": "Nike", "price": 49.0, "rating": None, "stock": 0, "gender": "Men"},
    {"category": "Dresses", "brand": None, "price": 120.0, "rating": 3.9, "stock": 12, "gender": "Women"},
    {"category": "Shoes", "brand": "Puma", "price": None, "rating": 4.9, "stock": None, "gender": "Men",
     "waterproof": True},
]


@pytest.fixture(scope="module")
def columns() -> Columns:
    return Columns.from_bytes(Columns.build(PRODUCTS).save()["columns.npz"])  # through its file


def rows(mask: np.ndarray | None) -> list[int]:
    assert mask is not None
    return np.flatnonzero(mask).tolist()


def test_fields_are_typed_from_their_values(columns: Columns) -> None:
    fields = {f["name"]: f for f in columns.fields()}
    assert fields["price"] == {"name": "price", "type": "number", "min": pytest.approx(19.99), "max": 120.0}
    assert fields["category"] == {"name": "category", "type": "keyword", "values": 4}  # "Tops" and "tops" differ
    assert fields["waterproof"]["type"] == "keyword"  # booleans are the keywords "true" / "false"
    assert columns.by_name["price"].data.dtype == np.float32 and columns.by_name["brand"].data.dtype == np.int32


def test_keyword_filters_any_of_case_insensitive(columns: Columns) -> None:
    assert columns.mask({}) is None
    assert rows(columns.mask({"category": "TOPS"})) == [0, 1]  # both spellings
    assert rows(columns.mask({"brand": ["puma", "Adidas"]})) == [0, 3]
    assert rows(columns.mask({"brand": "Puma", "gender": "Men"})) == [3]  # AND across fields
    assert rows(columns.mask({"waterproof": True})) == [3]
    assert rows(columns.mask({"brand": "Gucci"})) == []


def test_number_ranges_and_equality(columns: Columns) -> None:
    assert rows(columns.mask({"price": {"gte": 19.99, "lte": 50}})) == [0, 1]  # a bound equal to a price keeps it
    assert rows(columns.mask({"price": {"gt": 19.99}})) == [1, 2]
    assert rows(columns.mask({"price": {"lt": 1000}})) == [0, 1, 2]  # no price: not in any range
    assert rows(columns.mask({"rating": [4.5, 4.9]})) == [0, 3]
    assert rows(columns.mask({"in_stock": True})) == [0, 2]
    assert rows(columns.mask({"in_stock": False})) == [1]  # unknown stock is neither


@pytest.mark.parametrize(("filters", "error", "message"), [
    ({"colour": "red"}, UnknownField, "unknown field 'colour': this catalog can be filtered by brand, category"),
    ({"price": {"gte": 50, "lte": 10}}, BadFilter, "lower bound 50 is above its upper bound 10"),
    ({"price": {"from": 1}}, BadFilter, "takes gte, gt, lte and lt (not from)"),
    ({"price": {}}, BadFilter, "takes gte, gt, lte and lt"),
    ({"price": {"gte": float("nan")}}, BadFilter, "finite numbers"),
    ({"price": "cheap"}, BadFilter, "'price' is a number field"),
    ({"category": {"gte": 1}}, BadFilter, "'category' is a keyword field"),
    ({"category": []}, BadFilter, "lists no value"),
    ({"category": [{"a": 1}]}, BadFilter, "a value, a list of values or a range"),
    ({"in_stock": "yes"}, BadFilter, "in_stock takes true or false"),
])
def test_bad_filters_say_what_is_wrong(columns: Columns, filters: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        columns.mask(filters)
    assert raised.value.status == 400


def test_in_stock_needs_stock_numbers() -> None:
    with pytest.raises(UnknownField, match="no stock numbers"):
        Columns.build([{"category": "Tops"}]).mask({"in_stock": True})


def test_facet_counts_most_common_first(columns: Columns) -> None:
    everything = np.arange(4)
    assert columns.counts("brand", everything) == [("Puma", 2), ("Nike", 1)]
    assert columns.counts("gender", np.array([0, 2])) == [("Women", 2)]
    assert columns.counts("price", everything) == [(pytest.approx(19.99), 1), (49.0, 1), (120.0, 1)]
    assert columns.counts("brand", everything, limit=1) == [("Puma", 2)]


def test_only_the_most_common_fields_become_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fashion_search.index.columns.MAX_COLUMNS", 2)
    built = Columns.build([{"a": 1, "b": "x", "c": "y"}, {"a": 2, "b": "z"}, {"c": "w", "a": 3}])
    assert sorted(built.by_name) == ["a", "b"]  # a: 3 products, then b and c with 2: b by name


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04" + b"\0" * 40])
def test_a_broken_columns_file_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"columns\.npz is not a columns file"):
        Columns.from_bytes(data)


DOCS = [("Apple iPhone 9", "Apple", "smartphones"), ("iPhone X", "Apple", "smartphones"),
        ("Samsung Universe 9", "Samsung", "smartphones"), ("Huawei P30", "Huawei", "smartphones"),
        ("Leather Shirts for men", None, "mens-shirts"), ("Café crème dress", None, None)]


@pytest.fixture(scope="module")
def keywords() -> KeywordIndex:
    return KeywordIndex.from_bytes(KeywordIndex.build(DOCS).save()["keywords.tar"])


def test_bm25_finds_names_and_models(keywords: KeywordIndex) -> None:
    found, scores = keywords.search("iphone", 10)
    assert sorted(found.tolist()) == [0, 1] and np.all(np.diff(scores) <= 0)
    assert keywords.search("Huawei P30", 10)[0].tolist()[0] == 3
    assert keywords.search("shirt", 10)[0].tolist() == [4]  # stemmed: "Shirts"
    assert keywords.search("creme", 10)[0].tolist() == [5]  # diacritics folded
    assert keywords.search("samsung iphone", 10, allow=np.array([0, 0, 1, 0, 0, 0], dtype=bool))[0].tolist() == [2]


@pytest.mark.parametrize("text", ['"', 'iphone" OR "x', "NEAR(a b)", "* ^ : -", "a AND", "",
                                  "🙂", "x" * 10_000, "'; DROP TABLE products; --"])
def test_shopper_text_is_never_query_syntax(keywords: KeywordIndex, text: str) -> None:
    found, _ = keywords.search(text, 5)
    assert len(found) <= 5
    assert keywords.search("iphone", 5)[0].size == 2  # the table is intact


def test_hold_every_word(keywords: KeywordIndex) -> None:
    assert keywords.hold_every_word("iPhone 9", np.array([0, 1, 2])).tolist() == [True, False, False]
    assert keywords.hold_every_word("", np.array([0])).tolist() == [False]


def _tar(**files: bytes) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name.replace("__", "/"))
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return data.getvalue()


@pytest.mark.parametrize("data", [b"", b"not a tar", _tar(meta_json=b"{}"), _tar(**{"..__escape": b"x"})])
def test_a_broken_keyword_file_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"keywords\.tar is not a keyword index"):
        KeywordIndex.from_bytes(data)
