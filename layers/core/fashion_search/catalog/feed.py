"""The JSONL feed format (../shared/data/README.md): one product per line, images relative to the feed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..fetch import is_url


def read_feed(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, raw product) per non-blank line; a line that is not a JSON object yields its error."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"line {number} is not valid JSON ({exc.msg})"
                continue
            yield number, raw if isinstance(raw, dict) else f"line {number} is not a JSON object"


def resolve_images(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make `image` and `images` absolute: relative paths resolve against the feed's folder."""

    def resolve(ref: Any) -> Any:
        if not isinstance(ref, str) or not ref or is_url(ref):
            return ref
        return str((folder / ref).resolve())

    out = dict(raw)
    out["image"] = resolve(raw.get("image"))
    if isinstance(raw.get("images"), list):
        out["images"] = tuple(resolve(r) for r in raw["images"])
    return out
