"""Near-duplicate collapse: one product photo, listed twice (two ids, one image), takes one slot."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Cosine above which two products' vectors count as the same photo (re-encoded or resized copies).
NEAR_IDENTICAL = 0.99


def first_of_each(key: Callable[[int], str | None], vectors: np.ndarray, limit: int,
                  near_identical: float = NEAR_IDENTICAL) -> list[int]:
    """Positions (in rank order, one per row of `vectors`) of up to `limit` results, skipping any whose
    image key (content hash; `key(position)`, asked only of the positions looked at) was already taken
    or whose vector is near-identical to one already taken."""
    kept: list[int] = []
    seen: set[str] = set()
    for i in range(len(vectors)):
        if (key_i := key(i)) is not None and key_i in seen:
            continue
        if kept and float((vectors[kept] @ vectors[i]).max()) >= near_identical:
            continue
        kept.append(i)
        if key_i is not None:
            seen.add(key_i)
        if len(kept) == limit:
            break
    return kept
