"""Filter columns: every product's filterable fields as typed arrays, stored with each index version.

A filter or a facet reads arrays, never product rows: a keyword field is an int32 code per product into
its sorted vocabulary (-1: no value), a number field a float32 per product (NaN: no value). 20k products
with 12 fields take ~1 MB; a million take ~50 MB, against gigabytes as parsed rows.

Filters (the API's `filters`, the CLI's `--filter`), one entry per field, ANDed across fields:
- a keyword field takes a value or a list of values (any of them), compared case-insensitively;
- a number field takes a number or list (equality) or a range {"gte", "gt", "lte", "lt"};
- `in_stock: true` (or false) keeps products whose `stock` is above (or at most) 0.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import FashionSearchError

FILE = "columns.npz"
MAX_COLUMNS = 64  # the most common fields of a catalog; the rest are not filterable
MAX_FACET_VALUES = 20
IN_STOCK = "in_stock"  # a filter on the `stock` column, not a column of its own
RANGE_KEYS = ("gte", "gt", "lte", "lt")

Kind = Literal["keyword", "number"]
Scalar = str | int | float | bool


class UnknownField(FashionSearchError):
    status, code = 400, "unknown_filter_field"


class BadFilter(FashionSearchError):
    status, code = 400, "bad_filter"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    data: np.ndarray  # keyword: int32 codes into `values` (-1: none); number: float32 (NaN: none)
    values: tuple[str, ...] = ()  # keyword vocabulary, sorted

    def describe(self) -> dict[str, Any]:
        if self.kind == "keyword":
            return {"name": self.name, "type": "keyword", "values": len(self.values)}
        present = self.data[~np.isnan(self.data)]
        return {"name": self.name, "type": "number",
                "min": float(present.min()) if len(present) else None,
                "max": float(present.max()) if len(present) else None}


def _keyword(value: Scalar) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def folded(value: Scalar) -> str:
    """A keyword value as filters compare it (case-insensitively): its text, casefolded."""
    return _keyword(value).casefold()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _column(name: str, values: Sequence[Scalar | None]) -> Column:
    present = [v for v in values if v is not None]
    if present and all(_is_number(v) for v in present):
        data = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        return Column(name, "number", data)
    vocabulary = sorted({_keyword(v) for v in present})
    code = {v: i for i, v in enumerate(vocabulary)}
    data = np.array([-1 if v is None else code[_keyword(v)] for v in values], dtype=np.int32)
    return Column(name, "keyword", data, tuple(vocabulary))


class Columns:
    """The filter columns of one index version, by field name."""

    def __init__(self, columns: Iterable[Column], rows: int) -> None:
        self.by_name = {c.name: c for c in columns}
        self.rows = rows
        # Keyword lookups are case-insensitive: a casefolded value -> its codes (two spellings may fold alike).
        self._codes = {c.name: _folded_codes(c.values) for c in self.by_name.values() if c.kind == "keyword"}

    @classmethod
    def build(cls, products: Sequence[Mapping[str, Scalar | None]]) -> Columns:
        """Columns of the fields of `products` (a flat field -> scalar mapping per product, in row order):
        the MAX_COLUMNS most common fields, a field in which every value is a number becoming a number column."""
        counts: dict[str, int] = {}
        for product in products:
            for name, value in product.items():
                if value is not None and not name.startswith("_"):
                    counts[name] = counts.get(name, 0) + 1
        names = sorted(counts, key=lambda n: (-counts[n], n))[:MAX_COLUMNS]
        return cls((_column(n, [p.get(n) for p in products]) for n in sorted(names)), len(products))

    # -- storage ------------------------------------------------------------------------------
    def save(self) -> dict[str, bytes]:
        arrays: dict[str, np.ndarray] = {}
        header = []
        for i, column in enumerate(self.by_name.values()):
            arrays[f"c{i}"] = column.data
            header.append({"name": column.name, "kind": column.kind, "values": list(column.values)})
        arrays["header"] = np.frombuffer(json.dumps({"rows": self.rows, "columns": header}).encode(), np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return {FILE: buffer.getvalue()}

    @classmethod
    def from_bytes(cls, data: bytes) -> Columns:
        """The columns saved by save(); ValueError when `data` is not that."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes())
                columns = [Column(c["name"], c["kind"], npz[f"c{i}"], tuple(c["values"]))
                           for i, c in enumerate(header["columns"])]
        except Exception as exc:  # BadZipFile, KeyError, JSON and dtype errors: all mean "not ours"
            raise ValueError(f"{FILE} is not a columns file ({type(exc).__name__})") from None
        rows = int(header["rows"])
        for c in columns:
            expected = np.int32 if c.kind == "keyword" else np.float32
            if c.data.dtype != expected or c.data.shape != (rows,) or c.kind not in ("keyword", "number"):
                raise ValueError(f"{FILE}: column {c.name!r} is not {rows} values of its kind")
            if c.kind == "keyword" and len(c.data) and (c.data.max(initial=-1) >= len(c.values) or c.data.min() < -1):
                raise ValueError(f"{FILE}: column {c.name!r} has codes outside its vocabulary")
        return cls(columns, rows)

    # -- queries ------------------------------------------------------------------------------
    def fields(self) -> list[dict[str, Any]]:
        """What can be filtered and faceted: name, type, and the distinct values or the range."""
        return [c.describe() for c in self.by_name.values()]

    def column(self, name: str) -> Column:
        if (column := self.by_name.get(name)) is None:
            known = ", ".join(sorted(self.by_name)) or "none"
            raise UnknownField(f"unknown field {name!r}: this catalog can be filtered by {known}"
                               + (f", {IN_STOCK}" if "stock" in self.by_name else ""))
        return column

    def mask(self, filters: Mapping[str, Any]) -> np.ndarray | None:
        """Rows that pass every filter (a boolean array), None when there is no filter."""
        if not filters:
            return None
        keep = np.ones(self.rows, dtype=bool)
        for name, condition in filters.items():
            keep &= self._passes(name, condition)
        return keep

    def holds(self, name: str, values: Sequence[Scalar], rows: np.ndarray) -> np.ndarray:
        """Which of `rows` have any of `values` in keyword field `name` (compared as filters compare)."""
        column = self.column(name)
        codes = [code for v in values for code in self._codes.get(name, {}).get(folded(v), ())]
        return np.isin(column.data[rows], np.array(codes, dtype=np.int32))

    def _passes(self, name: str, condition: Any) -> np.ndarray:
        if name == IN_STOCK:
            if not isinstance(condition, bool):
                raise BadFilter(f"{IN_STOCK} takes true or false, not {condition!r}")
            if "stock" not in self.by_name or self.by_name["stock"].kind != "number":
                raise UnknownField(f"{IN_STOCK}: this catalog has no stock numbers")
            stock = self.by_name["stock"].data
            return stock > 0 if condition else stock <= 0  # NaN (unknown stock) passes neither
        column = self.column(name)
        if isinstance(condition, Mapping):
            return self._in_range(column, condition)
        values = list(condition) if isinstance(condition, list | tuple) else [condition]
        if not values:
            raise BadFilter(f"filter {name!r} lists no value")
        if not all(isinstance(v, Scalar) for v in values):
            raise BadFilter(f"filter {name!r} takes a value, a list of values or a range")
        if column.kind == "number":
            if not all(_is_number(v) for v in values):
                raise BadFilter(f"{name!r} is a number field: give numbers or a range like {{\"gte\": 10}}")
            return np.isin(column.data, np.array(values, dtype=np.float32))
        codes = [code for v in values for code in self._codes[name].get(folded(v), ())]
        return np.isin(column.data, np.array(codes, dtype=np.int32))

    @staticmethod
    def _in_range(column: Column, bounds: Mapping[str, Any]) -> np.ndarray:
        name = column.name
        if column.kind != "number":
            raise BadFilter(f"{name!r} is a keyword field: give a value or a list of values, not a range")
        unknown = set(bounds) - set(RANGE_KEYS)
        if unknown or not bounds:
            raise BadFilter(f"a range on {name!r} takes gte, gt, lte and lt" +
                            (f" (not {', '.join(sorted(map(str, unknown)))})" if unknown else ""))
        if not all(_is_number(v) and math.isfinite(v) for v in bounds.values()):
            raise BadFilter(f"the bounds of {name!r} must be finite numbers")
        low = max((bounds[k] for k in ("gte", "gt") if k in bounds), default=-math.inf)
        high = min((bounds[k] for k in ("lte", "lt") if k in bounds), default=math.inf)
        if low > high:
            raise BadFilter(f"the range on {name!r} is empty: its lower bound {low} is above its upper bound {high}")
        data, keep = column.data, np.ones(len(column.data), dtype=bool)
        for key, compare in (("gte", np.greater_equal), ("gt", np.greater), ("lte", np.less_equal),
                             ("lt", np.less)):
            if key in bounds:  # float32 on both sides: a bound equal to a stored price matches it
                keep &= compare(data, np.float32(bounds[key]))
        return keep

    def counts(self, name: str, rows: np.ndarray, limit: int = MAX_FACET_VALUES) -> list[tuple[str | float, int]]:
        """(value, count) of field `name` over `rows`, most common first (ties by value), at most `limit`."""
        column = self.column(name)
        data = column.data[rows]
        if column.kind == "keyword":
            found = np.bincount(data[data >= 0], minlength=len(column.values))
            codes = sorted(np.flatnonzero(found).tolist(), key=lambda code: (-found[code], column.values[code]))
            return [(column.values[code], int(found[code])) for code in codes[:limit]]
        values, numbers = np.unique(data[~np.isnan(data)], return_counts=True)
        at = sorted(range(len(values)), key=lambda i: (-int(numbers[i]), float(values[i])))
        return [(float(values[i]), int(numbers[i])) for i in at[:limit]]


def _folded_codes(values: Sequence[str]) -> dict[str, list[int]]:
    codes: dict[str, list[int]] = {}
    for code, value in enumerate(values):
        codes.setdefault(folded(value), []).append(code)
    return codes
