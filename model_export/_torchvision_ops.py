"""Let torchvision import when its compiled ops cannot load (a CUDA torchvision wheel beside a CPU torch).

open_clip_torch needs torchvision, and PyPI's torchvision wheels are built against CUDA torch: beside the CPU
torch the export extra pins, torchvision's `_C` extension fails to load, which torchvision tolerates, but its
`_meta_registrations` then registers fakes for `torchvision::nms`/`qnms` unconditionally and the import
raises "operator torchvision::nms does not exist" (and with it transformers' image processors and open_clip).
Nothing here uses those detection ops, so declaring their schemas is enough for the import to succeed.

Installed as an import hook by `model_export/__init__.py`: it costs nothing until torchvision is imported,
and does nothing when the extension loads.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARIES: list[object] = []  # torch.library.Library objects must outlive the import


def _declare_missing_ops() -> None:
    import torch

    spec = importlib.util.find_spec("torchvision")
    locations = list(spec.submodule_search_locations or []) if spec else []
    extension = next((p for folder in locations for p in Path(folder).glob("_C*.so")), None)
    if extension is None:
        return
    try:
        torch.ops.load_library(str(extension))
        return  # the real ops are there
    except (OSError, RuntimeError):
        pass
    if not hasattr(torch.ops.torchvision, "nms"):
        library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            library.define(schema)
        _LIBRARIES.append(library)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torchvision":
            uninstall()
            with contextlib.suppress(Exception):  # never turn a working import into a failing one
                _declare_missing_ops()
        return None  # the ordinary finders import it


_HOOK = _Hook()


def install() -> None:
    if "torchvision" not in sys.modules and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
