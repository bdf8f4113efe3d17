"""The JSONL feed format (../shared/data/README.md): one product per line, images relative to the feed."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any


def read_feed(path: Path) -> Generator[tuple[int, dict[str, Any] | str], None, None]:
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
            except (ValueError, RecursionError):  # a number of over 4,300 digits; nesting too deep
                yield number, f"line {number} is JSON this reader refuses (too deeply nested, or a huge number)"
                continue
            yield number, raw if isinstance(raw, dict) else f"line {number} is not a JSON object"


def resolve_images(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make local `image` and `images` paths absolute and real: relative ones resolve against the feed's
    folder, and symlinks and '..' are followed, so that where a file really is can be checked.
    URLs, and references of any other scheme (refused later), are left as they are."""

    def resolve(ref: Any) -> Any:
        if not isinstance(ref, str) or not ref or "://" in ref:
            return ref
        try:
            return str((folder / ref).resolve())
        except (OSError, RuntimeError):  # a symlink loop: left relative, so no folder contains it
            return ref

    out = dict(raw)
    out["image"] = resolve(raw.get("image"))
    if isinstance(raw.get("images"), list):
        out["images"] = tuple(resolve(r) for r in raw["images"])
    return out
