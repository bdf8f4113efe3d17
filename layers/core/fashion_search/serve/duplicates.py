"""Near-duplicate collapse: one product photo, listed twice (two ids, one image), takes one slot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Cosine above which two products' vectors count as the same photo (re-encoded or resized copies).
NEAR_IDENTICAL = 0.99


def first_of_each(keys: Sequence[str | None], vectors: np.ndarray, limit: int,
                  near_identical: float = NEAR_IDENTICAL) -> list[int]:
    """Positions (in rank order) of up to `limit` results, skipping any whose image key (content hash)
    was already taken or whose vector is near-identical to one already taken."""
    kept: list[int] = []
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key is not None and key in seen:
            continue
        if kept and float((vectors[kept] @ vectors[i]).max()) >= near_identical:
            continue
        kept.append(i)
        if key is not None:
            seen.add(key)
        if len(kept) == limit:
            break
    return kept
