"""Size and encode latency of the CLIP ViT-B/32 bundle (fp32 and int8), printed as a markdown table.

The real openai/clip-vit-base-patch32 weights are not reachable offline, so this exports the same
architecture (the default CLIPConfig) with random weights: file sizes and latencies depend on the
architecture only, so they are what a user exporting the real checkpoint gets.

    python -m model_export.measure_latency [--work /tmp/clip-b32-random] [--seq 16]

`python -m model_export.model_table` compares the architectures `export-model` handles (CLIP ViT-B/32,
SigLIP ViT-B/16 at 224 and 256 px) the same way, beside their published quality.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fashion_search.model.bundle import read_bundle


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    return f"{cpu}, {platform.system()} {platform.machine()}, onnxruntime {ort.__version__}"


def ensure_bundles(work: Path) -> dict[str, Path]:
    """Export the random ViT-B/32 checkpoint to fp32 and int8 bundles once (reused on later runs)."""
    from model_export.clip_export import export_clip
    from model_export.clip_random import make_random_checkpoint

    source, bundles = work / "checkpoint", {"fp32": work / "fp32", "int8": work / "int8"}
    if not (source / "config.json").is_file():
        make_random_checkpoint(source, tiny=False)
    for precision, folder in bundles.items():
        if not (folder / "bundle.json").is_file():
            export_clip(str(source), folder, quantize="int8" if precision == "int8" else None,
                        name=f"clip-vit-b32-random-{precision}")
    return bundles


def session(path: Path, threads: int) -> ort.InferenceSession:
    """The same session settings as the runtime Embedder."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_runs(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> np.ndarray:
    for _ in range(3):  # warm-up: first runs allocate and tune
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def measure(bundles: dict[str, Path], seq: int, runs: int) -> list[dict[str, object]]:
    rows = []
    rng = np.random.default_rng(0)
    for precision, folder in bundles.items():
        spec = read_bundle(folder)
        for tower in ("text", "image"):
            size_mb = (folder / f"{tower}.onnx").stat().st_size / 1e6
            for threads in (1, 2):
                sess = session(folder / f"{tower}.onnx", threads)
                for batch in (1, 16):
                    if tower == "text":
                        ids = rng.integers(1, 400, size=(batch, seq), dtype=np.int64)
                        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
                    else:
                        shape = (batch, 3, spec.image.height, spec.image.width)
                        feeds = {"pixel_values": rng.standard_normal(shape, dtype=np.float32)}
                    ms = time_runs(sess, feeds, runs if batch == 1 else max(5, runs // 4))
                    rows.append({"tower": tower, "precision": precision, "size_mb": size_mb, "batch": batch,
                                 "threads": threads, "p50": float(np.percentile(ms, 50)),
                                 "p95": float(np.percentile(ms, 95))})
                    print(f"  {tower} {precision} batch {batch} threads {threads}: p50 {rows[-1]['p50']:.1f} ms",
                          file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, object]], seq: int) -> str:
    lines = ["| tower | weights | file size | batch | threads | p50 ms | p95 ms | p50 ms per item |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tower']} | {r['precision']} | {r['size_mb']:.0f} MB | {r['batch']} | {r['threads']} "
                     f"| {r['p50']:.1f} | {r['p95']:.1f} | {r['p50'] / r['batch']:.1f} |")
    lines.append(f"\nText: {seq} tokens per text; image: 224x224. onnxruntime session time only "
                 f"(tokenizing and image decode/resize are extra). Machine: {machine()}.")
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", default="/tmp/clip-b32-random", help="where the random checkpoint and bundles go")
    parser.add_argument("--seq", type=int, default=16, help="tokens per text (a product title is ~10-20)")
    parser.add_argument("--runs", type=int, default=40, help="timed runs at batch 1 (a quarter at batch 16)")


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), or None off Linux."""
    stat = Path("/proc/stat")
    if not stat.is_file():
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.read_text().split()[1:9])
    own = os.times()
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def run(args: argparse.Namespace) -> int:
    bundles = ensure_bundles(Path(args.work))
    before, start = cpu_seconds(), time.monotonic()
    rows = measure(bundles, args.seq, args.runs)
    print(markdown(rows, args.seq))
    after = cpu_seconds()
    if before and after:  # other work shares this CPU: say how much of it they took meanwhile
        others = (after[0] - before[0]) - (after[1] - before[1])
        share = others / ((time.monotonic() - start) * (os.cpu_count() or 1))
        print(f"Other processes used {share:.0%} of the {os.cpu_count()} cores while this was measured.")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
