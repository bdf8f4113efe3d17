"""Cost: Lambda GB-seconds and dollars per 1,000 queries at the measured warm latencies and the
deployed memory, and S3 storage per 100,000 products from the bytes a build actually wrote.

Prices: us-east-1 list prices as the README's "Costs" section states them (2026-11-26, not
re-checked online from this machine). Everything else is measured in this run or read from cdk.json.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bench.common import REPO, Context, table
from fashion_search.store import open_store, versions

PRICES_AS_OF = "2026-11-26"
LAMBDA_GB_S = 0.0000166667  # x86, per GB-second
LAMBDA_REQUEST = 0.20 / 1_000_000
S3_GB_MONTH = 0.023  # S3 Standard
QUERIES = 1000
PER_PRODUCTS = 100_000


def lambda_per_1000(duration_ms: float, memory_mb: int) -> dict[str, float]:
    """Lambda bills each invocation's duration rounded up to 1 ms, times its memory."""
    billed_s = math.ceil(duration_ms) / 1000
    gb_s = QUERIES * billed_s * memory_mb / 1024
    return {"duration_ms": duration_ms, "billed_s": billed_s, "gb_s": gb_s, "compute": gb_s * LAMBDA_GB_S,
            "requests": QUERIES * LAMBDA_REQUEST, "total": gb_s * LAMBDA_GB_S + QUERIES * LAMBDA_REQUEST}


def storage_per_products(bytes_per_product: dict[str, float], versions_kept: int) -> list[dict[str, Any]]:
    """S3 bytes for PER_PRODUCTS products: thumbnails once (shared by versions), version files per kept version."""
    rows = []
    for name, per in bytes_per_product.items():
        copies = 1 if name == "thumbnails" else versions_kept
        gb = per * PER_PRODUCTS * copies / 1e9
        rows.append({"item": name, "bytes_per_product": per, "copies": copies, "gb": gb, "month": gb * S3_GB_MONTH})
    return rows


def measured_bytes(store_uri: str) -> tuple[dict[str, float], int]:
    """Bytes per product of the live version's files and of the thumbnails it uses, and the count."""
    store = open_store(store_uri)
    pointer = versions.read_pointer(store)
    assert pointer is not None
    manifest = versions.read_manifest(store, pointer.version)
    products = manifest.counts["indexed"]
    records = [json.loads(line) for line in versions.read_file(store, manifest, "records.jsonl").decode().splitlines()
               if line]
    thumbnails = sum(len(store.get(key)) for key in {r["thumbnail"] for r in records})
    per = {"thumbnails": thumbnails / products}
    per |= {name: info.bytes / products for name, info in manifest.files.items()}
    return per, products


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    memory, kept = int(context["searchMemoryMb"]), int(context["keepVersions"])
    e2e = {r["name"]: r for r in results["e2e"]["rows"] if r["clients"] == 1}
    enc = results["encoders"]["rows"]

    def starter(tower: str, threads: int) -> float | None:
        return next((r["p50"] for r in enc if r["model"].endswith("(shipped)") and r["tower"] == tower
                     and r["batch"] == 1 and r["threads"] == threads), None)

    towers = {"text": ("text",), "image": ("image",), "hybrid": ("text", "image")}
    queries, adjusted = [], True
    for name, used in towers.items():
        row = e2e[name]
        one, many = ([starter(t, 1) for t in used], [starter(t, results["e2e"]["threads"]) for t in used])
        adjusted = adjusted and None not in one + many  # quick runs measure 1 thread only
        adjust = sum(a - b for a, b in zip(one, many, strict=True)) if adjusted else 0.0
        queries.append({"query": name, "p50": row["p50"], "p95": row["p95"], "one_thread_adjust": adjust,
                        "at_p50": lambda_per_1000(row["p50"] + adjust, memory),
                        "at_p95": lambda_per_1000(row["p95"] + adjust, memory)})
    per, products = measured_bytes(results["build"]["store"])
    return {"memory_mb": memory, "versions_kept": kept, "queries": queries, "adjusted": adjusted,
            "bytes_per_product": per,
            "products": products, "storage": storage_per_products(per, kept), "threads": results["e2e"]["threads"]}


def render(result: dict[str, Any], ctx: Context) -> str:
    mem_gb = result["memory_mb"] / 1024
    rows = []
    for q in result["queries"]:
        p50 = q["at_p50"]
        rows.append([q["query"], f"{q['p50']:.1f}", f"{q['one_thread_adjust']:+.1f}",
                     f"{math.ceil(p50['duration_ms'])}",
                     f"{QUERIES:,} × {p50['billed_s']:.3f} s × {mem_gb:g} GB = **{p50['gb_s']:.1f} GB-s**",
                     f"${p50['compute']:.5f}", f"${p50['requests']:.5f}", f"**${p50['total']:.5f}**",
                     f"{q['at_p95']['gb_s']:.1f} GB-s, ${q['at_p95']['total']:.5f}"])
    storage = result["storage"]
    total_gb, total_month = sum(r["gb"] for r in storage), sum(r["month"] for r in storage)
    srows = [[r["item"], f"{r['bytes_per_product']:,.0f}",
              f"{r['bytes_per_product']:,.0f} × {PER_PRODUCTS:,} × {r['copies']} = {r['gb']:.3f} GB",
              f"${r['month']:.4f}"] for r in storage]
    srows.append(["**total**", f"{sum(r['bytes_per_product'] for r in storage):,.0f}", f"**{total_gb:.3f} GB**",
                  f"**${total_month:.4f}**"])
    return "\n\n".join([
        f"Prices: us-east-1 list prices as stated in the README's Costs section on {PRICES_AS_OF} (not "
        f"re-checked online from this machine): Lambda ${LAMBDA_GB_S:.10f} per GB-s (x86) and $0.20 per million "
        f"requests; S3 Standard ${S3_GB_MONTH} per GB-month. Memory: {result['memory_mb']:,} MB "
        "(cdk.json `searchMemoryMb`).",
        "**Lambda per 1,000 warm queries.** Duration = the end-to-end p50 through the local server at one "
        "client (section 3: it includes the handler, JSON and the loopback HTTP hop, which Lambda does not "
        f"bill — a conservative stand-in for the billed duration), plus a 1-vCPU adjustment: the server ran "
        f"onnxruntime on {result['threads']} threads, a {result['memory_mb']:,} MB function has ~"
        f"{result['memory_mb'] / 1769:.2f} vCPU, so the starter's encoder p50 at 1 thread minus at "
        f"{result['threads']} threads (section 1, batch 1) is added per tower used"
        + ("" if result.get("adjusted", True) else " (not in this run: section 1 measured one thread only)")
        + ". Billed duration rounds up to 1 ms. API Gateway, CloudFront and logs are extra (see the README's "
        "Costs).",
        table(["query", "measured p50 ms", "1-vCPU adj. ms", "billed ms", "GB-s per 1,000 (at p50)",
               "compute $", "requests $", "Lambda $ per 1,000", "at p95 instead"], rows, right=(1, 2, 3, 5, 6, 7)),
        f"**S3 storage per {PER_PRODUCTS:,} products**, from the bytes the build section wrote for "
        f"{result['products']:,} products (the live version's files and the thumbnails its records use), "
        f"scaled linearly; version files × {result['versions_kept']} kept versions (cdk.json `keepVersions`), "
        "thumbnails once (content-addressed, shared by versions). Not included: S3 versioning's old object "
        "versions (kept a week) and request charges.",
        table(["item", "bytes per product", "arithmetic", "per month"], srows, right=(1, 3)),
    ])
