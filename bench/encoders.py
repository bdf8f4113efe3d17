"""Encoders: ms per text query and per image, batch 1 and 16, fp32 vs int8, 1 vs 2 threads.

Baseline (the design as originally specified): PyTorch CLIP ViT-B/32 in fp32 with every text
padded to 77 tokens. Against it: the same architecture exported to ONNX (fp32 and dynamic int8)
and run by the runtime `Embedder`, the starter model that ships, and the previous starter model
(models/fashion-starter at commit PREVIOUS_COMMIT, materialised from git into the bench cache), so
the shipped starter's latency is compared with its predecessor's in the same run. The ViT-B/32
weights are random (model_export.clip_random; hub checkpoints are not reachable here): latency
depends on the architecture, not the weights.

What a figure includes: text = tokenize + model + L2-normalise; image = resize/pad/normalise of a
decoded RGB catalog photo (the feed's photos are 60x80) to the bundle's input size (bundle.json
`image`: 224x224 for the current starter, 60x80 for the previous one, 224x224 for ViT-B/32) +
model + L2-normalise. The baseline uses the very same image preprocessing function, so the
difference is runtime, precision and padding only.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE, REPO, Context, image_link, log, ms, plot_path, save_figure, speed, table, timed
from bench.e2e import product_photos, shopper_queries
from fashion_search.model.bundle import BundleError, read_bundle, write_bundle_json
from fashion_search.model.embedder import Embedder, image_to_array
from fashion_search.model.images import decode_image

BASELINE = "PyTorch CLIP ViT-B/32, fp32, text padded to 77"
BATCHES = (1, 16)
# Dynamic int8 for the starter's CNN must include Conv (its MatMul/Gemm are only the heads).
CNN_INT8_OPS = ("Conv", "MatMul", "Gemm")
INT8_METHODS = ("dynamic", "static")
# The starter model before issue 10 (60x80 CNN image tower, 256-d): the same-run baseline of the
# shipped starter's encoder rows.
PREVIOUS_COMMIT = "a89d417"
PREVIOUS_PATH = "models/fashion-starter"
PREVIOUS_MODEL = f"previous starter ({PREVIOUS_COMMIT})"
# Issue 10's latency targets for the starter, batch 1 on one thread (p50 ms).
TARGET_MS = {"text": 2.0, "image": 6.0}


def _calibration(bundle: Path, feed: Path, count: int = 256, batch: int = 16) -> Any:
    """onnxruntime's calibration reader over `count` preprocessed catalog photos from the training
    rows (in neither held-out split)."""
    from onnxruntime.quantization import CalibrationDataReader

    from model_export.starter.data import load_products, training_indices

    products = load_products(feed)
    embedder = Embedder(bundle)
    pixels = [embedder.preprocess(decode_image(products[i].image.read_bytes()))
              for i in training_indices(products)[:count]]

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

    Both methods start from onnxruntime's `quant_pre_process` of the shipped image tower (its
    recommended step before quantizing): the optimiser folds constants, so weights stored as
    float16 + Cast become the float32 initializers onnxruntime runs anyway, and the quantizers see
    them as weights (on the raw graph `quantize_static` takes a Cast's output for an activation and
    gives it one per-tensor uint8 scale). dynamic: `model_export.clip_export.quantize_int8` with
    Conv included (int8 weights, activations quantized at run time: ConvInteger kernels). static:
    onnxruntime's `quantize_static` (QDQ, per-channel int8 weights, uint8 activations with ranges
    calibrated on 256 training catalog photos), which onnxruntime runs as fused QLinearConv
    kernels. Raises whatever the quantizer raises (the caller reports it).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from model_export.clip_export import quantize_int8

    spec = read_bundle(starter)
    out = work / f"starter-image-int8-{method}-{spec.hash[:12]}"
    if (out / "bundle.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        for name in ("text.onnx", "tokenizer.json"):
            shutil.copy2(starter / name, out / name)
        prepared = out / "image-prepared.onnx"
        quant_pre_process(str(starter / "image.onnx"), str(prepared), skip_symbolic_shape=True)
        if method == "dynamic":
            quantize_int8(prepared, out / "image.onnx", CNN_INT8_OPS)
        else:
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

            quantize_static(str(prepared), str(out / "image.onnx"), _calibration(starter, feed),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True)
        prepared.unlink()
        write_bundle_json(out, spec.model_copy(update={
            "name": f"{spec.name}-image-int8-{method}",
            "info": {**spec.info, "image_quantization": f"{method} int8, made by the benchmark"}}))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


_INTEGER_OPS = {"MatMulInteger", "ConvInteger", "QLinearConv", "DynamicQuantizeLinear", "QuantizeLinear",
                "MatMulNBits"}


def weights_of(model: Path) -> str:
    """What the ONNX graph computes in: "int8" when its integer kernels do the work (dynamic or
    static quantization; the 8-bit weight-only MatMulNBits of the starter's text tower); "fp32"
    when nothing is integer; "fp32 + int8 MatMul" for float convolutions with 8-bit MatMuls (the
    current starter's image tower: the convolutions, where the time goes, run in fp32)."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(model), load_external_data=False).graph.node}
    integer = ops & _INTEGER_OPS
    if not integer:
        return "fp32"
    float_convs = "Conv" in ops and not ops & {"ConvInteger", "QLinearConv", "QuantizeLinear"}
    return "fp32 + int8 MatMul" if float_convs else "int8"


def stores_float16(model: Path) -> bool:
    """Whether the graph keeps weights as float16 initializers (cast to fp32 when loaded)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)


def previous_starter(cache: Path = CACHE) -> tuple[Path | None, str]:
    """(the previous starter bundle, "") or (None, why not): `git archive PREVIOUS_COMMIT
    PREVIOUS_PATH` extracted once into the bench cache (setup, not measured), then reused."""
    out = cache / f"previous-starter-{PREVIOUS_COMMIT}"
    bundle = out / PREVIOUS_PATH
    try:
        read_bundle(bundle)
        return bundle, ""
    except BundleError:
        shutil.rmtree(out, ignore_errors=True)
    git = shutil.which("git")
    if git is None:
        return None, "git is not installed"
    archive = subprocess.run([git, "archive", PREVIOUS_COMMIT, PREVIOUS_PATH], cwd=REPO, capture_output=True,
                             check=False)
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        return None, f"`git archive {PREVIOUS_COMMIT} {PREVIOUS_PATH}` failed: {reason[-1]}"
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(partial, filter="data")
    try:
        read_bundle(partial / PREVIOUS_PATH, verify=True)
    except BundleError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return None, f"{PREVIOUS_PATH} at {PREVIOUS_COMMIT} is not a valid bundle: {exc}"
    partial.rename(out)
    return bundle, ""


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
                     threads: tuple[int, ...], runs: dict[int, int], *, role: str,
                     batches: tuple[int, ...] = BATCHES) -> list[dict[str, Any]]:
    """Rows for the towers named in `weights` (tower -> precision label) of a bundle through the
    runtime Embedder. `role`: clip, shipped, previous or an image int8 method (dynamic, static)."""
    rows = []
    for t in threads:
        embedder = Embedder(bundle, threads=t, batch_size=max(BATCHES))
        for tower, encode, items in (("text", embedder.encode_texts, texts), ("image", embedder.encode_images, images)):
            if tower not in weights:
                continue
            for batch in batches:
                window = _cycle(items, batch)
                stats = timed(lambda i, e=encode, w=window: e(w(i)), runs[batch])
                rows.append({"model": model, "role": role, "runtime": "onnxruntime", "weights": weights[tower],
                             "tower": tower, "batch": batch, "threads": t,
                             "file_mb": (bundle / f"{tower}.onnx").stat().st_size / 1e6, **stats})
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
                    rows.append({"model": "CLIP ViT-B/32 (random weights)", "role": "baseline", "runtime": "PyTorch",
                                 "weights": "fp32",
                                 "tower": tower, "batch": batch, "threads": t, "file_mb": float("nan"), **stats})
                    log(f"encoders: baseline {tower} batch {batch} threads {t}: p50 {stats['p50']:.1f} ms")
    finally:
        torch.set_num_threads(previous)
    return rows


def _image_int8(ctx: Context, shipped_p50: float, texts: list[str], images: list[Any], threads: tuple[int, ...],
                runs: dict[int, int]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Rows of the image int8 variants worth reporting, and for each method what became of it.

    A variant is kept only if it could be made and its batch-1 one-thread p50 (a probe) beats the
    shipped image tower's, measured just before; otherwise it is dropped with the reason (the
    quality section evaluates only kept variants)."""
    name = read_bundle(ctx.model).name
    rows: list[dict[str, Any]] = []
    outcome: dict[str, dict[str, Any]] = {}
    for method in INT8_METHODS:
        try:
            bundle = starter_image_int8(ctx.model, ctx.work, method, ctx.feed)
        except Exception as exc:  # the quantizer's own errors: anything
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            outcome[method] = {"kept": False, "failed": f"{type(exc).__name__}: {reason}"}
            log(f"encoders: image {method} int8 could not be made: {outcome[method]['failed']}")
            continue
        model, weights = f"{name}, image {method} int8 (made here)", {"image": weights_of(bundle / "image.onnx")}
        probe = measure_embedder(bundle, model, weights, texts, images, (1,), runs, role=method, batches=(1,))[0]
        kept = probe["p50"] < shipped_p50
        outcome[method] = {"kept": kept, "bundle": str(bundle), "p50": probe["p50"], "shipped_p50": shipped_p50}
        if kept:
            rows += measure_embedder(bundle, model, weights, texts, images, threads, runs, role=method)
        else:
            log(f"encoders: image {method} int8 is not faster than the shipped image tower "
                f"({probe['p50']:.1f} vs {shipped_p50:.1f} ms): dropped")
    return rows, outcome


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
                                 texts, images, threads, runs, role="clip")
    starter = read_bundle(ctx.model)
    shipped = {tower: weights_of(ctx.model / f"{tower}.onnx") for tower in ("text", "image")}
    rows += measure_embedder(ctx.model, f"{starter.name} (shipped)", shipped, texts, images, threads, runs,
                             role="shipped")
    previous_bundle, previous_skipped = previous_starter()
    previous: dict[str, Any] = {"commit": PREVIOUS_COMMIT, "path": PREVIOUS_PATH}
    if previous_bundle is None:
        previous["skipped"] = previous_skipped
        log(f"encoders: previous starter not measured: {previous_skipped}")
    else:
        spec = read_bundle(previous_bundle)
        weights = {tower: weights_of(previous_bundle / f"{tower}.onnx") for tower in ("text", "image")}
        log(f"encoders: previous starter from {PREVIOUS_COMMIT} in {previous_bundle}")
        rows += measure_embedder(previous_bundle, PREVIOUS_MODEL, weights, texts, images, threads, runs,
                                 role="previous")
        previous |= {"weights": weights, "dim": spec.dim, "image": f"{spec.image.width}x{spec.image.height}",
                     "tokens_mean": float(Embedder(previous_bundle).tokenize(texts)["attention_mask"].sum(axis=1)
                                          .mean())}
    shipped_image_p50 = next(r["p50"] for r in rows if r.get("role") == "shipped" and r["tower"] == "image"
                             and r["batch"] == 1 and r["threads"] == 1)
    int8_rows, image_int8 = _image_int8(ctx, shipped_image_p50, texts, images, threads, runs)
    rows += int8_rows
    baseline = {(r["tower"], r["batch"], r["threads"]): r["p50"] for r in rows if r["runtime"] == "PyTorch"}
    for r in rows:
        r["baseline_p50"] = baseline[(r["tower"], r["batch"], r["threads"])]
    tokens = Embedder(clip["fp32"]).tokenize(texts)["attention_mask"].sum(axis=1)
    starter_tokens = Embedder(ctx.model).tokenize(texts)["attention_mask"].sum(axis=1)
    return {"rows": rows, "threads": list(threads), "texts": len(texts), "shipped_weights": shipped,
            "shipped_float16": stores_float16(ctx.model / "image.onnx"), "previous": previous,
            "image_int8": image_int8,
            "clip_tokens_mean": float(tokens.mean()), "starter_tokens_mean": float(starter_tokens.mean()),
            "starter_dim": starter.dim, "starter_image": f"{starter.image.width}x{starter.image.height}"}


def headline(result: dict[str, Any], tower: str, threads: int = 1) -> dict[str, Any]:
    """The shipped starter model's batch-1 row for a tower, the baseline's and the previous
    starter's (None when it was not measured), at `threads`."""
    rows = [r for r in result["rows"] if r["tower"] == tower and r["batch"] == 1 and r["threads"] == threads]
    shipped = next(r for r in rows if r["model"].endswith("(shipped)"))
    base = next(r for r in rows if r["runtime"] == "PyTorch")
    previous = next((r for r in rows if r.get("role") == "previous"), None)
    return {"shipped": shipped, "baseline": base, "previous": previous}


def _label(row: dict[str, Any]) -> str:
    role = row.get("role")
    if row["runtime"] == "PyTorch":
        return "CLIP B/32\nPyTorch fp32"
    if row["model"].startswith("CLIP"):
        return f"CLIP B/32\nORT {row['weights']}"
    if role == "previous":
        return f"previous starter\nORT {row['weights']}"
    if role in INT8_METHODS:
        return f"starter, {role}\nORT {row['weights']}"
    return f"starter\nORT {row['weights']}"


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


def _int8_notes(result: dict[str, Any]) -> list[str]:
    """One line per image int8 variant that was dropped, saying why."""
    notes = []
    for method, outcome in result.get("image_int8", {}).items():
        if outcome.get("failed"):
            notes.append(f"- Image tower {method} int8: not reported for this bundle — quantization failed "
                         f"({outcome['failed']}).")
        elif not outcome["kept"]:
            notes.append(f"- Image tower {method} int8: not reported for this bundle — {ms(outcome['p50'])} ms against "
                         f"{ms(outcome['shipped_p50'])} ms for the shipped image tower (batch 1, 1 thread, this run), "
                         "so it is no candidate (and section 6 does not evaluate it).")
    return notes


def render(result: dict[str, Any], ctx: Context) -> str:
    path = plot(result, ctx)
    previous = result.get("previous") or {"skipped": "not part of this run's results"}
    previous_image = "" if previous.get("skipped") else f"; previous starter: {previous['image']} padded"
    parts = [
        f"Baseline: **{BASELINE}** (transformers `CLIPModel(CLIPConfig())`, random weights), measured in this run "
        "at the same batch and thread count; the ratio is baseline p50 / p50. Threads = onnxruntime "
        "`intra_op_num_threads` (torch: `torch.set_num_threads`). "
        f"Texts: {result['texts']} shopper queries (\"navy blue shirts for men\" style; "
        f"{result['clip_tokens_mean']:.1f} tokens on average with the random checkpoint's CLIP-style BPE, "
        f"{result['starter_tokens_mean']:.1f} with the starter's WordPiece; the runtime pads to the longest "
        "text of a batch, the baseline to 77). Images: catalog photos (60x80 JPEGs), decoded beforehand, resized "
        f"by each bundle's preprocessing (ViT-B/32: 224x224 centre crop; starter: {result['starter_image']} "
        f"padded{previous_image}).",
        image_link(ctx, path, "encoder latency"),
    ]
    previous_p50 = {(r["tower"], r["batch"], r["threads"]): r["p50"] for r in result["rows"]
                    if r.get("role") == "previous"}
    runs = ", ".join(str(n) for n in sorted({r["n"] for r in result["rows"]}))
    for tower in ("text", "image"):
        rows = []
        for r in (r for r in result["rows"] if r["tower"] == tower):
            vs = "baseline" if r["runtime"] == "PyTorch" else speed(r["baseline_p50"], r["p50"])
            key = (r["tower"], r["batch"], r["threads"])
            vs_previous = speed(previous_p50[key], r["p50"]) if key in previous_p50 and r.get("role") in \
                ("shipped", *INT8_METHODS) else "–"
            size = "–" if r["file_mb"] != r["file_mb"] else f"{r['file_mb']:.{0 if r['file_mb'] >= 10 else 1}f}"
            rows.append([r["model"], r["runtime"], r["weights"], size, r["batch"], r["threads"], ms(r["p50"]),
                         ms(r["p95"]), ms(r["p50"] / r["batch"]), vs, vs_previous])
        parts += [f"**{tower.capitalize()} encoder** (n = {runs} timed runs per row after 2 warm-up runs)",
                  table(["model", "runtime", "weights", "MB", "batch", "threads", "p50 ms", "p95 ms",
                         "p50 ms per item", "vs baseline", "vs previous starter"], rows,
                        right=(3, 4, 5, 6, 7, 8, 9, 10))]
    one = {tower: headline(result, tower)["shipped"]["p50"] for tower in ("text", "image")}
    parts.append("Issue 10's targets for the starter, batch 1 on one thread (p50): " + "; ".join(
        f"{tower} ≤ {TARGET_MS[tower]:g} ms — {ms(one[tower])} ms in this run, "
        + ("**met**" if one[tower] <= TARGET_MS[tower] else "**missed**") for tower in ("text", "image")) + ".")
    shipped = result["shipped_weights"]
    stored = ", its weights stored as float16 and cast to fp32 when onnxruntime loads them" \
        if result.get("shipped_float16") else ""
    lines = [f"Read from its ONNX graphs, the starter bundle ships its text tower as {shipped['text']} and its "
             f"image tower as {shipped['image']}{stored}; only the shipped text tower is measured (the bundle "
             "holds no other)."]
    if previous.get("skipped"):
        lines.append(f"The previous starter ({PREVIOUS_PATH} at {PREVIOUS_COMMIT}) is not measured: "
                     f"{previous['skipped']}.")
    else:
        lines.append(f"The previous starter ({PREVIOUS_PATH} at commit {previous['commit']}, {previous['dim']}-d, "
                     f"{previous['image']} image input; text {previous['weights']['text']}, image "
                     f"{previous['weights']['image']}) is extracted from git into the bench cache and measured in "
                     f"this run ({previous['tokens_mean']:.1f} tokens per query on average); the column *vs previous "
                     "starter* compares each starter row with its row at the same batch and threads.")
    lines.append("The image tower's int8 variants are made here from the shipped one after onnxruntime's "
                 "`quant_pre_process` (which folds float16-stored weights into the fp32 initializers onnxruntime "
                 f"runs): *dynamic* = `model_export.clip_export.quantize_int8` over {', '.join(CNN_INT8_OPS)} "
                 "(onnxruntime runs ConvInteger, quantizing activations at run time); *static* = onnxruntime's "
                 "`quantize_static` (QDQ, per-channel int8 weights, activation ranges calibrated on 256 training "
                 "catalog photos; run as fused QLinearConv). A variant is reported only if it is faster than the "
                 "shipped image tower at batch 1 on one thread in this run.")
    parts.append(" ".join(lines))
    notes = _int8_notes(result)
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)
