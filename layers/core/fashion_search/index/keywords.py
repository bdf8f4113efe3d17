"""The keyword index: BM25 over each product's title, brand and category (SQLite FTS5), built with each
index version. Vectors are weak on names and codes ("Huawei P30", a SKU); words are not.

FTS5 ships inside Python's sqlite3 (no dependency); the version stores the database's bytes, which the
search service deserialises into memory at load. Words are matched after Unicode folding, diacritics
removed and Porter stemming ("shirts" finds "shirt"); a query is the OR of its words, so BM25 ranks the
products that hold more of them, and rarer ones, first.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Sequence

import numpy as np

FILE = "keywords.sqlite"
MAX_QUERY_WORDS = 16
MAX_MATCHES = 20_000  # products a filtered keyword search reads before applying the filter
_TABLE = "products"
_WORD = re.compile(r"\w+", re.UNICODE)
# BM25 weights of the columns: title, brand, category.
_WEIGHTS = (1.0, 1.0, 0.5)


def words(text: str) -> list[str]:
    """The words of `text` as FTS5 strings (quoted: the shopper's text is never FTS5 syntax)."""
    return ['"' + w.replace('"', '""') + '"' for w in _WORD.findall(text.casefold())[:MAX_QUERY_WORDS]]


class KeywordIndex:
    """BM25 over the products' rows (row i is FTS5 rowid i + 1); safe to share between threads."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()  # one connection, queries of microseconds: a lock beats a pool

    @classmethod
    def build(cls, documents: Sequence[tuple[str, str | None, str | None]]) -> KeywordIndex:
        """An index of (title, brand, category) per row, in row order."""
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.execute(f"CREATE VIRTUAL TABLE {_TABLE} USING fts5(title, brand, category, "
                   "tokenize = 'porter unicode61 remove_diacritics 2')")
        db.executemany(f"INSERT INTO {_TABLE}(rowid, title, brand, category) VALUES (?, ?, ?, ?)",
                       ((row + 1, title, brand or "", category or "") for row, (title, brand, category)
                        in enumerate(documents)))
        db.execute(f"INSERT INTO {_TABLE}({_TABLE}) VALUES ('optimize')")  # one b-tree segment: faster queries
        db.commit()
        return cls(db)

    def save(self) -> dict[str, bytes]:
        with self._lock:
            return {FILE: self._db.serialize()}

    @classmethod
    def from_bytes(cls, data: bytes) -> KeywordIndex:
        """The index save() wrote; ValueError when `data` is not one (or this SQLite lacks FTS5)."""
        db = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            db.deserialize(data)
            db.execute(f"SELECT rowid FROM {_TABLE} WHERE {_TABLE} MATCH 'x' LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            db.close()
            raise ValueError(f"{FILE} is not a keyword index ({exc})") from None
        return cls(db)

    def search(self, text: str, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, BM25 scores, higher is better) of the best k products holding any word of `text` and
        passing `allow` (a boolean mask over rows)."""
        terms = words(text)
        if not terms or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        limit = k if allow is None else MAX_MATCHES
        weights = ", ".join(map(str, _WEIGHTS))
        with self._lock:
            found = self._db.execute(
                f"SELECT rowid - 1, -bm25({_TABLE}, {weights}) FROM {_TABLE} WHERE {_TABLE} MATCH ? "
                f"ORDER BY bm25({_TABLE}, {weights}) LIMIT ?", (" OR ".join(terms), limit)).fetchall()
        rows = np.array([r for r, _ in found], dtype=np.int64)
        scores = np.array([s for _, s in found], dtype=np.float32)
        if allow is not None and len(rows):
            keep = allow[rows]
            rows, scores = rows[keep][:k], scores[keep][:k]
        return rows, scores

    def hold_every_word(self, text: str, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` hold every word of `text` (in title, brand or category)."""
        terms = words(text)
        if not terms or not len(rows):
            return np.zeros(len(rows), dtype=bool)
        ids = ",".join(str(int(r) + 1) for r in rows)
        with self._lock:
            hits = {r for (r,) in self._db.execute(
                f"SELECT rowid - 1 FROM {_TABLE} WHERE {_TABLE} MATCH ? AND rowid IN ({ids})", (" AND ".join(terms),))}
        return np.array([int(r) in hits for r in rows], dtype=bool)
