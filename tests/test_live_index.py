"""The product table a live index serves metadata from (rows parsed on demand from products.jsonl), and its
product id -> row lookup (hashes and rows in arrays, checked against the row's own id)."""

import json

import pytest

from fashion_search.records import ProductRecord
from fashion_search.serve import live_index
from fashion_search.serve.live_index import ProductTable, RowsById, _rows_by_id
from fashion_search.store import versions


def test_rows_are_the_lines_of_products_jsonl_blank_lines_skipped():
    products = [{"product_id": "1", "title": "Café crème dress", "price": 19.5}, {"product_id": "2", "title": "Tee"},
                {"product_id": "3", "title": "Scarf\nwith a newline in its JSON string"}]
    lines = [json.dumps(p, ensure_ascii=False) for p in products]
    for data in ("\n".join(lines), "\n".join(lines) + "\n", "\n" + "\n\n".join(lines) + "\n\n"):
        table = ProductTable(data.encode())
        assert len(table) == 3
        assert [table[row] for row in range(len(table))] == [ProductRecord(**p) for p in products]
        assert table[-1].title == products[-1]["title"]


def test_an_empty_file_holds_no_products():
    assert len(ProductTable(b"")) == 0 and len(ProductTable(b"\n")) == 0


def _table(ids: list[str]) -> ProductTable:
    return ProductTable("".join(json.dumps({"product_id": i, "title": f"t{i}"}) + "\n" for i in ids).encode())


def _rows(table: ProductTable) -> RowsById:
    return _rows_by_id("v1", table)


@pytest.mark.parametrize("hashing", ["python", "all ids collide", "ids collide by length"])
def test_rows_by_id_finds_every_row_and_nothing_else(hashing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if hashing == "all ids collide":
        monkeypatch.setattr(live_index, "id_hash", lambda product_id: 7)
    elif hashing == "ids collide by length":
        monkeypatch.setattr(live_index, "id_hash", len)
    ids = ["a", "b", "ab", "ba", "abc", "10", "01", "é", "x" * 128]
    rows = _rows(_table(ids))
    assert len(rows) == len(ids) and rows.nbytes == len(ids) * 12
    for row, product_id in enumerate(ids):
        assert rows[product_id] == row and rows.get(product_id) == row and product_id in rows
    for unknown in ("", "c", "aa", "A", "x" * 127):
        assert rows.get(unknown) is None and unknown not in rows
        with pytest.raises(KeyError):
            rows[unknown]
    assert 5 not in rows  # type: ignore[operator]  # a non-str is never an id


@pytest.mark.parametrize("hashing", ["python", "all ids collide"])
def test_the_first_repeated_id_in_row_order_refuses_the_version(hashing: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if hashing == "all ids collide":
        monkeypatch.setattr(live_index, "id_hash", lambda product_id: 7)
    with pytest.raises(versions.VersionError,
                       match=r"version v1: products.jsonl row 5 repeats product_id 'b' of row 2$"):
        _rows(_table(["a", "b", "c", "d", "b", "a", "c"]))
    with pytest.raises(versions.VersionError, match=r"row 4 repeats product_id 'c' of row 1$"):
        _rows(_table(["c", "x", "y", "c", "x"]))


def test_a_repeat_before_a_broken_row_is_reported_first_and_after_it_the_broken_row() -> None:
    lines = [json.dumps({"product_id": i, "title": "t"}) for i in ("a", "b", "a")]
    with pytest.raises(versions.VersionError, match="row 3 repeats product_id 'a' of row 1"):
        _rows_by_id("v1", ProductTable(("\n".join([*lines, '{"title": "no id"}']) + "\n").encode()))
    with pytest.raises(versions.VersionError, match=r"row 2 is not a product record \(product_id: Field required\)"):
        _rows_by_id("v1", ProductTable(("\n".join([lines[0], '{"title": "no id"}', *lines[1:]]) + "\n").encode()))


def test_rows_by_id_of_no_products() -> None:
    rows = _rows(ProductTable(b""))
    assert len(rows) == 0 and rows.get("a") is None
