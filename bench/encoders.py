"""Encoders: ms per text query and per image, batch 1 and 16, fp32 vs int8, 1 vs 2 threads.

Baseline (the design as originally specified): PyTorch CLIP ViT-B/32 in fp32 with every text
padded to 77 tokens. Against it: the same architecture exported to ONNX (fp32 and dynamic int8)
and run by the runtime `Embedder`, and the starter model that ships. The ViT-B/32 weights are
random (model_export.clip_random; hub checkpoints are not reachable here): latency depends on the
architecture, not the weights.

What a figure includes: text = tokenize + model + L2-normalise; image = resize/normalise of a
decoded RGB photo (60x80 catalog shots) + model + L2-normalise. The baseline uses the very same
image preprocessing function, so the difference is runtime, precision and padding only.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE, Context, image_link, log, ms, plot_path, save_figure, speed, table, timed
from bench.e2e import product_photos, shopper_queries
from fashion_search.bundle import read_bundle, write_bundle_json
from fashion_search.embedder import Embedder, image_to_array
from fashion_search.images import decode_image

BASELINE = "PyTorch CLIP ViT-B/32, fp32, text padded to 77"
BATCHES = (1, 16)
# Dynamic int8 for the starter's CNN must include Conv (its MatMul/Gemm are only the projection).
CNN_INT8_OPS = ("Conv", "MatMul", "Gemm")
INT8_METHODS = ("dynamic", "static")


def _calibration(bundle: Path, feed: Path, count: int = 256, batch: int = 16) -> Any:
    """onnxruntime's calibration reader over `count` preprocessed training-split catalog photos."""
    from onnxruntime.quantization import CalibrationDataReader

    from model_export.starter.data import load_products, split_indices

    products = load_products(feed)
    embedder = Embedder(bundle)
    pixels = [embedder.preprocess(decode_image(products[i].image.read_bytes()))
              for i in split_indices(products)[0][:count]]

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"pixel_values": np.stack(pixels[i : i + batch])}
                                 for i in range(0, len(pixels), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    return Photos()


def starter_image_int8(starter: Path, work: Path, method: str, feed: Path) -> Path:
    """The starter bundle with its image tower quantized to int8 (its text tower ships as int8
    already), sealed as its own bundle; made once per starter bundle (keyed by its hash).

    dynamic: `model_export.clip_export.quantize_int8` with Conv included (int8 weights, activations
    quantized at run time: ConvInteger kernels). static: onnxruntime's `quantize_static` (QDQ,
    per-channel int8 weights, uint8 activations with ranges calibrated on 256 training-split
    catalog photos), which onnxruntime runs as fused QLinearConv kernels.
    """
    from model_export.clip_export import quantize_int8

    spec = read_bundle(starter)
    out = work / f"starter-image-int8-{method}-{spec.hash[:12]}"
    if (out / "bundle.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("text.onnx", "tokenizer.json"):
        shutil.copy2(starter / name, out / name)
    if method == "dynamic":
        quantize_int8(starter / "image.onnx", out / "image.onnx", CNN_INT8_OPS)
    else:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        quantize_static(str(starter / "image.onnx"), str(out / "image.onnx"), _calibration(starter, feed),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
    write_bundle_json(out, spec.model_copy(update={
        "name": f"{spec.name}-image-int8-{method}",
        "info": {**spec.info, "image_quantization": f"{method} int8, made by the benchmark"}}))
    return out


def weights_of(model: Path) -> str:
    """"int8" when the ONNX graph runs integer kernels (dynamic or static quantization, or the 8-bit
    weight-only MatMulNBits of the starter's text tower), else "fp32"."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(model), load_external_data=False).graph.node}
    integer_ops = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "MatMulNBits"}
    return "int8" if ops & integer_ops else "fp32"


def _export_code_hash() -> str:
    """Exported bundles are reused until the code that makes them changes."""
    import hashlib

    from model_export import clip_export, clip_random

    digest = hashlib.sha256()
    for module in (clip_export, clip_random):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:12]


def _cycle(items: list[Any], batch: int) -> Callable[[int], list[Any]]:
    """Call i gets the i-th window of `batch` items, so runs do not repeat one input."""
    return lambda i: [items[(i * batch + j) % len(items)] for j in range(batch)]


def measure_embedder(bundle: Path, model: str, weights: dict[str, str], texts: list[str], images: list[Any],
                     threads: tuple[int, ...], runs: dict[int, int]) -> list[dict[str, Any]]:
    """Rows for both towers of a bundle through the runtime Embedder (`weights`: tower -> fp32/int8)."""
    rows = []
    for t in threads:
        embedder = Embedder(bundle, threads=t, batch_size=max(BATCHES))
        for tower, encode, items in (("text", embedder.encode_texts, texts), ("image", embedder.encode_images, images)):
            if tower not in weights:
                continue
            for batch in BATCHES:
                window = _cycle(items, batch)
                stats = timed(lambda i, e=encode, w=window: e(w(i)), runs[batch])
                rows.append({"model": model, "runtime": "onnxruntime", "weights": weights[tower], "tower": tower,
                             "batch": batch, "threads": t, "file_mb": (bundle / f"{tower}.onnx").stat().st_size / 1e6,
                             **stats})
                log(f"encoders: {model} {tower} {weights[tower]} batch {batch} threads {t}: p50 {stats['p50']:.1f} ms")
    return rows


def measure_pytorch(checkpoint: Path, spec_bundle: Path, texts: list[str], images: list[Any],
                    threads: tuple[int, ...], runs: dict[int, int]) -> list[dict[str, Any]]:
    """The baseline: transformers' CLIPModel in fp32, the tokenizer padding to 77 tokens."""
    import torch
    from torch.nn import functional as F
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(checkpoint)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    image_spec = read_bundle(spec_bundle).image

    def features(out: Any) -> Any:  # transformers 5 returns an output object, 4.x a tensor
        return F.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)

    def text(batch: list[str]) -> Any:
        enc = tokenizer(batch, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            return features(model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))

    def image(batch: list[Any]) -> Any:
        pixels = torch.from_numpy(np.stack([image_to_array(img, image_spec) for img in batch]))
        with torch.inference_mode():
            return features(model.get_image_features(pixel_values=pixels))

    rows = []
    previous = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for tower, encode, items in (("text", text, texts), ("image", image, images)):
                for batch in BATCHES:
                    window = _cycle(items, batch)
                    stats = timed(lambda i, e=encode, w=window: e(w(i)), runs[batch])
                    rows.append({"model": "CLIP ViT-B/32 (random weights)", "runtime": "PyTorch", "weights": "fp32",
                                 "tower": tower, "batch": batch, "threads": t, "file_mb": float("nan"), **stats})
                    log(f"encoders: baseline {tower} batch {batch} threads {t}: p50 {stats['p50']:.1f} ms")
    finally:
        torch.set_num_threads(previous)
    return rows


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    from model_export.measure_latency import ensure_bundles

    threads = (1,) if ctx.quick else (1, 2)
    runs = {1: ctx.size(40, 8), 16: ctx.size(10, 3)}
    texts = shopper_queries(64, seed=7)
    images = [decode_image(base64.b64decode(p)) for p in product_photos(64, seed=7)]
    work = CACHE / f"clip-b32-random-{_export_code_hash()}"
    log(f"encoders: CLIP ViT-B/32 random-weight bundles in {work} (exported once per export code, then reused)")
    clip = ensure_bundles(work)
    rows = measure_pytorch(work / "checkpoint", clip["fp32"], texts, images, threads, runs)
    for precision, bundle in clip.items():
        rows += measure_embedder(bundle, "CLIP ViT-B/32 (random weights)", {"text": precision, "image": precision},
                                 texts, images, threads, runs)
    starter = read_bundle(ctx.model)
    shipped = {tower: weights_of(ctx.model / f"{tower}.onnx") for tower in ("text", "image")}
    rows += measure_embedder(ctx.model, f"{starter.name} (shipped)", shipped, texts, images, threads, runs)
    for method in INT8_METHODS:
        int8 = starter_image_int8(ctx.model, ctx.work, method, ctx.feed)
        rows += measure_embedder(int8, f"{starter.name}, image {method} int8 (made here)", {"image": "int8"},
                                 texts, images, threads, runs)
    baseline = {(r["tower"], r["batch"], r["threads"]): r["p50"] for r in rows if r["runtime"] == "PyTorch"}
    for r in rows:
        r["baseline_p50"] = baseline[(r["tower"], r["batch"], r["threads"])]
    tokens = Embedder(clip["fp32"]).tokenize(texts)["attention_mask"].sum(axis=1)
    starter_tokens = Embedder(ctx.model).tokenize(texts)["attention_mask"].sum(axis=1)
    return {"rows": rows, "threads": list(threads), "texts": len(texts), "shipped_weights": shipped,
            "clip_tokens_mean": float(tokens.mean()), "starter_tokens_mean": float(starter_tokens.mean()),
            "starter_dim": starter.dim, "starter_image": f"{starter.image.width}x{starter.image.height}"}


def headline(result: dict[str, Any], tower: str, threads: int = 1) -> dict[str, Any]:
    """The shipped starter model's batch-1 row for a tower, and the baseline's, at `threads`."""
    rows = [r for r in result["rows"] if r["tower"] == tower and r["batch"] == 1 and r["threads"] == threads]
    shipped = next(r for r in rows if r["model"].endswith("(shipped)"))
    base = next(r for r in rows if r["runtime"] == "PyTorch")
    return {"shipped": shipped, "baseline": base}


def _label(row: dict[str, Any]) -> str:
    name = "CLIP B/32" if row["model"].startswith("CLIP") else row["model"].split(" (")[0].split(",")[0]
    runtime = "PyTorch" if row["runtime"] == "PyTorch" else "ORT"
    return f"{name}\n{runtime} {row['weights']}"


def plot(result: dict[str, Any], ctx: Context) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, tower in zip(axes, ("text", "image"), strict=True):
        rows = [r for r in result["rows"] if r["tower"] == tower and r["batch"] == 1]
        labels = list(dict.fromkeys(_label(r) for r in rows))
        width = 0.8 / len(result["threads"])
        for k, t in enumerate(result["threads"]):
            values = [next((r["p50"] for r in rows if r["threads"] == t and _label(r) == label), np.nan)
                      for label in labels]
            ax.bar(np.arange(len(labels)) + k * width, values, width, label=f"{t} thread{'s' * (t > 1)}")
        ax.set_xticks(np.arange(len(labels)) + width * (len(result["threads"]) - 1) / 2, labels, fontsize=6,
                      rotation=25, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("p50 ms, batch 1 (log)")
        ax.set_title(f"{tower} encoder, one query")
        ax.legend(fontsize=7)
    path = plot_path(ctx, "encoders.png")
    save_figure(fig, path)
    return path


def render(result: dict[str, Any], ctx: Context) -> str:
    path = plot(result, ctx)
    parts = [
        f"Baseline: **{BASELINE}** (transformers `CLIPModel(CLIPConfig())`, random weights), measured in this run "
        "at the same batch and thread count; the ratio is baseline p50 / p50. Threads = onnxruntime "
        "`intra_op_num_threads` (torch: `torch.set_num_threads`). "
        f"Texts: {result['texts']} shopper queries (\"navy blue shirts for men\" style; "
        f"{result['clip_tokens_mean']:.1f} tokens on average with the random checkpoint's CLIP-style BPE, "
        f"{result['starter_tokens_mean']:.1f} with the starter's WordPiece; the runtime pads to the longest "
        "text of a batch, the baseline to 77). Images: catalog photos, decoded beforehand, resized by each "
        f"bundle's preprocessing (ViT-B/32: 224x224 centre crop; starter: {result['starter_image']} padded).",
        image_link(ctx, path, "encoder latency"),
    ]
    runs = ", ".join(str(n) for n in sorted({r["n"] for r in result["rows"]}))
    for tower in ("text", "image"):
        rows = []
        for r in (r for r in result["rows"] if r["tower"] == tower):
            vs = "baseline" if r["runtime"] == "PyTorch" else speed(r["baseline_p50"], r["p50"])
            size = "–" if r["file_mb"] != r["file_mb"] else f"{r['file_mb']:.{0 if r['file_mb'] >= 10 else 1}f}"
            rows.append([r["model"], r["runtime"], r["weights"], size, r["batch"], r["threads"], ms(r["p50"]),
                         ms(r["p95"]), ms(r["p50"] / r["batch"]), vs])
        parts += [f"**{tower.capitalize()} encoder** (n = {runs} timed runs per row after 2 warm-up runs)",
                  table(["model", "runtime", "weights", "MB", "batch", "threads", "p50 ms", "p95 ms",
                         "p50 ms per item", "vs baseline"], rows, right=(3, 4, 5, 6, 7, 8, 9))]
    shipped = result["shipped_weights"]
    parts.append(f"The starter bundle ships its text tower as {shipped['text']} and its image tower as "
                 f"{shipped['image']} (read from the ONNX graphs); only the shipped text tower is measured (the "
                 "bundle holds no other). The image tower's int8 variants are made here: *dynamic* = "
                 f"`model_export.clip_export.quantize_int8` over {', '.join(CNN_INT8_OPS)} (onnxruntime runs "
                 "ConvInteger, quantizing activations at run time); *static* = onnxruntime's `quantize_static` "
                 "(QDQ, per-channel int8 weights, activation ranges calibrated on 256 training-split catalog "
                 "photos; run as fused QLinearConv).")
    return "\n\n".join(parts)
