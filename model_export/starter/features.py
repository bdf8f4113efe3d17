"""The frozen backbone's outputs for every training photo, computed once with onnxruntime and cached.

Only the backbone's last stage is trained, so each epoch needs just what enters it (the stage-6 map)
and the frozen statistics beside it; onnxruntime computes them ~8x faster than PyTorch on this CPU.
Every photo is also encoded mirrored (the training augmentation), so epochs never decode a JPEG.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fashion_search.model.bundle import ImageSpec, file_sha256
from fashion_search.model.embedder import image_to_array
from fashion_search.model.images import decode_image
from model_export.starter.efficientnet_lite import EfficientNetLite, weights_path
from model_export.starter.models import Trunk

KEYS = ("logits", "frozen", "h6")


def backbone_features(paths: Sequence[Path], spec: ImageSpec, backbone: EfficientNetLite, variant: str, *,
                      cache_dir: Path | None, threads: int = 2, batch: int = 64) -> dict[str, np.ndarray]:
    """{logits, frozen, h6, and each with suffix _flip} for the photos, float16, cached by content key."""
    import onnxruntime as ort

    from model_export.clip_export import export_onnx

    key = hashlib.sha256(json.dumps([[str(p) for p in paths], spec.model_dump(mode="json"),
                                     file_sha256(weights_path(variant))]).encode()).hexdigest()[:16]
    path = cache_dir / f"backbone-{key}.npz" if cache_dir else None
    if path and path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "trunk.onnx"
        export_onnx(Trunk(backbone), (torch.zeros(2, 3, spec.height, spec.width),), onnx_path, ["pixel_values"],
                    {"pixel_values": {0: "batch"}}, output_names=list(KEYS))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    parts: dict[str, list[np.ndarray]] = {}
    started = time.monotonic()
    for start in range(0, len(paths), batch):
        pixels = np.stack([image_to_array(decode_image(p.read_bytes()), spec) for p in paths[start : start + batch]])
        for suffix, x in (("", pixels), ("_flip", np.ascontiguousarray(pixels[:, :, :, ::-1]))):
            for name, value in zip(KEYS, session.run(None, {"pixel_values": x}), strict=True):
                parts.setdefault(name + suffix, []).append(value.astype(np.float16))
        done = min(start + batch, len(paths))
        if (start // batch) % 40 == 0 or done == len(paths):
            elapsed = time.monotonic() - started
            print(f"  backbone features: {done:,}/{len(paths):,} photos ({elapsed:.0f} s, "
                  f"ETA {elapsed / done * (len(paths) - done):.0f} s)", file=sys.stderr, flush=True)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".tmp.npz")
        np.savez(tmp_path, **out)
        tmp_path.replace(path)
    return out
