"""The product table a live index serves metadata from: rows parsed on demand from products.jsonl."""

import json

from fashion_search.records import ProductRecord
from fashion_search.serve.live_index import ProductTable


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
