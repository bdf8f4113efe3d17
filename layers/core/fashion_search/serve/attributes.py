"""The catalog values a shopper's words name: "navy blue shirts for men" names colour "Navy Blue", category
"Shirts" and gender "Men" in a catalog that has those values.

A vector knows colours and kinds only as well as its training taught it; the catalog states them. When
the text names values of the catalog's own keyword fields, the products that have them are searched for
as well and ranked up (ranking.py), as a merchandiser's attribute boost would: the shopper's words are
taken at their word, the catalog at its. Words and values are compared as phrases of whole words,
case-folded, with a trailing plural "s" and a possessive "'s" dropped ("men's shirts" names "Men" and
"Shirts"; "women" never names "Men"); a hyphen both splits and joins ("t-shirt" names "Tshirts").
"""

from __future__ import annotations

import re

import numpy as np

from ..index.columns import Columns

# Fields with more distinct values than this are names or identifiers, not attributes (BM25 has those).
MAX_VALUES = 500
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> tuple[str, ...]:
    """Whole words, case-folded, singular: the form both sides are compared in."""
    out = []
    for word in _WORD.findall(text.casefold()):
        if word == "s":  # the "s" of "men's"
            continue
        out.append(_singular(word))
    return tuple(out)


def _singular(word: str) -> str:
    """"dresses" -> "dress", "watches" -> "watch", "shirts" -> "shirt", "shoes" -> "shoe"; "dress" stays."""
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


class AttributeMatcher:
    """The keyword fields' values of one index version, as phrases: which ones a text names."""

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        # First word -> (field, phrase, value): a text looks up its own words only.
        self._by_word: dict[str, list[tuple[str, tuple[str, ...], str]]] = {}
        for name, column in columns.by_name.items():
            if column.kind == "keyword" and 0 < len(column.values) <= MAX_VALUES:
                for value in column.values:
                    if phrase := _words(value):
                        self._by_word.setdefault(phrase[0], []).append((name, phrase, value))

    def named(self, text: str) -> dict[str, list[str]]:
        """Field -> the values `text` names (the longest phrases: "navy blue" names "Navy Blue", not "Blue")."""
        # Hyphens both split and join words: "t-shirt" names "Tshirts" and "Shirts", as a shopper may mean either.
        variants = {_words(text), _words(text.replace("-", ""))}
        hits: dict[str, dict[str, tuple[str, ...]]] = {}  # field -> value -> its phrase
        for words in variants:
            for word in set(words):
                for name, phrase, value in self._by_word.get(word, ()):
                    if _contains(words, phrase):
                        hits.setdefault(name, {})[value] = phrase
        found: dict[str, list[str]] = {}
        for name, values in hits.items():
            phrases = list(values.values())
            found[name] = sorted(v for v, p in values.items()
                                 if not any(len(q) > len(p) and _contains(q, p) for q in phrases))
        return found

    def share_held(self, named: dict[str, list[str]], rows: np.ndarray) -> np.ndarray:
        """Per row, the share of the named fields whose named values it has (0 to 1)."""
        if not named:
            return np.zeros(len(rows))
        held = np.zeros(len(rows))
        for name, values in named.items():
            held += self.columns.holds(name, values, rows)
        return held / len(named)
