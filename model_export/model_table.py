"""Which model to export: size and CPU latency of the candidate architectures as bundles (fp32 and int8), beside
the published quality figures, printed as markdown tables (BENCHMARKS.md section "Models beyond the starter").

    python -m model_export.model_table [--work /tmp/model-table] [--runs 20] [--save docs/bench/models.json]

The measured rows are saved to docs/bench/models.json (committed): `python -m bench` renders that section of
BENCHMARKS.md from it (`section`), since it rewrites the file and does not measure these models itself.

Hub weights are not reachable here, so each architecture is exported with random weights: file sizes and
latencies depend on the architecture only (the published quality figures below are the trained models').
- CLIP ViT-B/32: transformers' default CLIPConfig (openai/clip-vit-base-patch32; FashionCLIP 2.0's shape).
- SigLIP ViT-B/16 at 224: open_clip's ViT-B-16-SigLIP config (Marqo-FashionSigLIP's shape).
- SigLIP ViT-B/16 at 256: open_clip's ViT-B-16-SigLIP-256, taken as Marqo-Ecommerce-B's shape (see ASSUMPTION).
The SigLIP tokenizers are small stand-ins (the 32,000-row embedding table is the real size): a real
tokenizer.json adds ~2 MB, CLIP's ~3.5 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fashion_search.model.bundle import read_bundle, write_bundle_json
from model_export.measure_latency import cpu_seconds, machine, session, time_runs

# Marqo publishes Marqo-Ecommerce-B as a 203M-parameter, 768-d open_clip model fine-tuned from ViT-B-16-SigLIP;
# its input resolution is in its hub config, which is not reachable here: 256 px is assumed (open_clip's
# ViT-B-16-SigLIP-256, the same parameters). At 224 px it would cost what the FashionSigLIP row does.
ASSUMPTION = ("Marqo-Ecommerce-B is taken to be open_clip's ViT-B-16-SigLIP-256 (203M parameters and 768-d, as "
              "Marqo publishes; the resolution is an assumption: at 224 px it costs what the FashionSigLIP row does)")
CLIP_TEXT_TOKENS = 16  # a product query or title; CLIP pads each batch to its longest text
REPO = Path(__file__).resolve().parents[1]
SAVED = REPO / "docs" / "bench" / "models.json"  # the last run's figures, rendered into BENCHMARKS.md
HEADING = "Models beyond the starter (`python -m model_export.model_table`)"

ARCHITECTURES: dict[str, tuple[str, str]] = {  # key -> (label, what it is the shape of)
    "clip-vit-b32": ("CLIP ViT-B/32 (HF CLIPModel)", "openai/clip-vit-base-patch32, FashionCLIP 2.0"),
    "siglip-vit-b16-224": ("SigLIP ViT-B/16, 224 px (open_clip ViT-B-16-SigLIP)",
                           "Marqo-FashionSigLIP, google/siglip-base-patch16-224"),
    "siglip-vit-b16-256": ("SigLIP ViT-B/16, 256 px (open_clip ViT-B-16-SigLIP-256)", "Marqo-Ecommerce-B (assumed)"),
}

# Published retrieval quality of trained models of these shapes, with their sources.
MARQO_FASHION = "https://github.com/marqo-ai/marqo-FashionCLIP/blob/main/LEADERBOARD.md"
MARQO_ECOMMERCE = "https://github.com/marqo-ai/marqo-ecommerce-embeddings"
QUALITY_ROWS = [  # (model (shape), KAGL R@10 / MRR, 6 fashion sets R@10, 4M products R@10, source)
    ("FashionCLIP 2.0 (CLIP ViT-B/32)", "0.404 / 0.217", "0.249", "–", "[1]"),
    ("Marqo-FashionCLIP (open_clip ViT-B-16)", "0.446 / 0.265", "0.290", "–", "[1]"),
    ("ViT-B-16-SigLIP (webli, not fine-tuned)", "0.468 / 0.272", "0.314", "0.660 / 0.650", "[1], [2]"),
    ("Marqo-FashionSigLIP (open_clip ViT-B-16-SigLIP)", "**0.489 / 0.293**", "**0.340**", "–", "[1]"),
    ("Marqo-Ecommerce-B (open_clip ViT-B-16-SigLIP)", "–", "–",
     "**0.832 / 0.795** (Amazon Titan Multimodal: 0.648 / 0.627)", "[2]"),
]
QUALITY = "\n".join([
    "| model (shape) | text → image on KAGL (Fashion Product Images, our feed's source): R@10 / MRR "
    "| text → image, 6 fashion sets averaged: R@10 | text → image, 4M e-commerce products: R@10 "
    "(Google Shopping / Amazon) | source |",
    "|---|---|---|---|---|",
    *("| " + " | ".join(row) + " |" for row in QUALITY_ROWS),
    "",
    f"[1] {MARQO_FASHION} (updated 2024-08-09; also https://www.marqo.ai/blog/search-model-for-fashion)",
    f"[2] {MARQO_ECOMMERCE} (README, \"Marqo-Ecommerce-Hard\": GoogleShopping- and AmazonProducts-Text2Image)",
])


def _make_source(key: str, folder: Path) -> Path:
    if key == "clip-vit-b32":
        from model_export.clip_random import make_random_checkpoint

        return make_random_checkpoint(folder, tiny=False)
    from model_export.open_clip_random import make_random_open_clip

    return make_random_open_clip(folder, {"siglip-vit-b16-224": "ViT-B-16-SigLIP",
                                          "siglip-vit-b16-256": "ViT-B-16-SigLIP-256"}[key])


def _quantized_copy(fp32: Path, int8: Path) -> None:
    """What `export-model --quantize int8` writes: the fp32 towers through the same dynamic quantization."""
    from model_export.clip_export import INT8_OPS, quantize_int8

    int8.mkdir(parents=True, exist_ok=True)
    spec = read_bundle(fp32)
    shutil.copyfile(fp32 / "tokenizer.json", int8 / "tokenizer.json")
    for tower in ("text.onnx", "image.onnx"):
        quantize_int8(fp32 / tower, int8 / tower, INT8_OPS)
    info = {**spec.info, "quantization": f"dynamic int8 ({', '.join(INT8_OPS)})"}
    write_bundle_json(int8, spec.model_copy(update={"name": f"{spec.name}-int8", "info": info}))


def ensure_bundles(work: Path, keys: list[str], log: Callable[[str], None]) -> dict[str, dict[str, Path]]:
    """Random checkpoint -> fp32 bundle (export-model) -> int8 bundle, once per architecture (reused later)."""
    from model_export.export_model import export_model

    bundles: dict[str, dict[str, Path]] = {}
    with contextlib.redirect_stdout(sys.stderr):  # torch.onnx prints its progress: keep stdout for the tables
        for key in keys:
            source, fp32, int8 = work / key / "source", work / key / "fp32", work / key / "int8"
            if not (fp32 / "bundle.json").is_file():
                log(f"{key}: random weights, export")
                shutil.rmtree(source, ignore_errors=True)
                export_model(str(_make_source(key, source)), fp32, name=f"{key}-random")
            if not (int8 / "bundle.json").is_file():
                log(f"{key}: int8")
                _quantized_copy(fp32, int8)
            bundles[key] = {"fp32": fp32, "int8": int8}
    return bundles


def measure(bundles: dict[str, dict[str, Path]], runs: int, log: Callable[[str], None]) -> list[dict[str, object]]:
    """Batch-1 latency of each tower at 1 and 2 threads (the runtime's session settings), and the sizes.

    Each configuration runs `runs` times in a row after a warm-up, as a search function serving one model
    does; p50 and the fastest run are both kept: on a machine shared with other work, the fastest run is
    the better estimate of what the model costs undisturbed."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for key, precisions in bundles.items():
        for precision, folder in precisions.items():
            spec = read_bundle(folder)
            seq = spec.text.max_tokens if spec.text.padding == "max_length" else CLIP_TEXT_TOKENS
            row: dict[str, object] = {
                "key": key, "precision": precision, "dim": spec.dim, "image_px": spec.image.height, "seq": seq,
                "towers_mb": sum((folder / t).stat().st_size for t in ("text.onnx", "image.onnx")) / 1e6,
            }
            rows.append(row)
            for tower in ("text", "image"):
                for threads in (1, 2):
                    sess = session(folder / f"{tower}.onnx", threads)
                    inputs = {i.name for i in sess.get_inputs()}
                    if tower == "text":
                        ids = rng.integers(3, 100, size=(1, seq), dtype=np.int64)
                        feeds = {k: v for k, v in {"input_ids": ids, "attention_mask": np.ones_like(ids)}.items()
                                 if k in inputs}
                    else:
                        shape = (1, 3, spec.image.height, spec.image.width)
                        feeds = {"pixel_values": rng.standard_normal(shape, dtype=np.float32)}
                    ms = time_runs(sess, feeds, runs)
                    column = f"{tower}_{threads}"
                    row[column], row[f"{column}_min"] = float(np.percentile(ms, 50)), float(ms.min())
                    log(f"  {key} {precision} {tower} {threads} thread(s): p50 {row[column]:.1f} ms, "
                        f"fastest {row[f'{column}_min']:.1f} ms")
    return rows


def markdown(rows: list[dict[str, object]], runs: int, machine_description: str | None = None) -> str:
    lines = ["| architecture (shape of) | weights | dim | towers on disk | text ms, 1 thread | text ms, 2 threads "
             "| image ms, 1 thread | image ms, 2 threads |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label, shape_of = ARCHITECTURES[str(r["key"])]
        cells = " | ".join(f"{r[c]:.1f} ({r[c + '_min']:.1f})" for c in ("text_1", "text_2", "image_1", "image_2"))
        lines.append(f"| {label} ({shape_of}) | {r['precision']} | {r['dim']} | {r['towers_mb']:.0f} MB | {cells} |")
    lines.append(f"\nBatch 1: p50 (fastest) of {runs} runs in a row of the onnxruntime session after a warm-up, "
                 f"with the runtime's settings (tokenizing and image decode/resize are extra). Text: "
                 f"CLIP {CLIP_TEXT_TOKENS} tokens (it pads to the longest text), SigLIP always 64 (it pads to "
                 f"max_length). Image: the model's resolution. Sizes: text.onnx + image.onnx (tokenizer.json adds "
                 f"2-4 MB). {ASSUMPTION}. Machine: {machine_description or machine()}.")
    return "\n".join(lines)


def contention(share: float | None, cores: int | None) -> str:
    return "" if share is None else f"Other processes used {share:.0%} of the {cores} cores while this was measured."


def section(saved: dict[str, Any]) -> str:
    """BENCHMARKS.md's section (under HEADING) from a run saved by `run` (docs/bench/models.json)."""
    note = saved.get("note") or ("Other processes kept the cores busy: the fastest run (in brackets) is the better "
                                 "estimate of each model's cost." if (saved.get("other_cores_share") or 0) > 0.3
                                 else "")
    speed, _, speed_note = markdown(saved["rows"], saved["runs"], saved["machine"]).partition("\n\n")
    return "\n\n".join([
        f"Measured by `{saved['command']}` on {saved['measured']} (commit `{saved['commit']}`), one run; "
        f"`python -m bench` does not measure these models: it renders this section from `{saved['file']}`, which "
        "that command writes. The hub's weights are not reachable here, so each architecture is exported with "
        "random weights through `export-model` (int8: the same towers through its dynamic quantization): sizes "
        "and speed depend on the architecture only, quality on the weights, so the quality figures beside are "
        "the published ones.",
        speed,
        " ".join(t for t in (speed_note, contention(saved.get("other_cores_share"), saved.get("cores")), note) if t),
        QUALITY,
    ])


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return f"{head} + uncommitted changes" if head and git("status", "--porcelain") else head or "unknown"


def save(path: Path, rows: list[dict[str, object]], args: argparse.Namespace, share: float | None) -> None:
    """The run's rows and how it ran, for `section` (the JSON is committed: BENCHMARKS.md is rendered from it)."""
    command = " ".join(["python -m model_export.model_table", f"--runs {args.runs}",
                        *([f"--only {' '.join(args.only)}"] if args.only else [])])
    saved = {"command": command, "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": _commit(),
             "runs": args.runs, "machine": machine(), "cores": os.cpu_count(), "other_cores_share": share,
             "file": os.path.relpath(path.resolve(), REPO) if path.resolve().is_relative_to(REPO) else str(path),
             "note": None, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", default="/tmp/model-table", help="where the random checkpoints and bundles go")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per tower and thread count")
    parser.add_argument("--only", nargs="*", choices=list(ARCHITECTURES), help="measure only these")
    parser.add_argument("--save", default=str(SAVED),
                        help="where the figures go for BENCHMARKS.md (default docs/bench/models.json; '' for nowhere)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    bundles = ensure_bundles(Path(args.work), args.only or list(ARCHITECTURES), log)
    before, start = cpu_seconds(), time.monotonic()
    rows = measure(bundles, args.runs, log)
    print(markdown(rows, args.runs))
    print()
    print(QUALITY)
    after, share = cpu_seconds(), None
    if before and after:  # other work shares this CPU: say how much of it they took meanwhile
        others = (after[0] - before[0]) - (after[1] - before[1])
        share = others / ((time.monotonic() - start) * (os.cpu_count() or 1))
        print(f"\n{contention(share, os.cpu_count())}")
    if args.save:
        save(Path(args.save), rows, args, share)
        log(f"saved the figures to {args.save} (`python -m bench --render` puts them in BENCHMARKS.md)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
