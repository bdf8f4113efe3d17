"""Cold start: process start to first answered query, split into import, model load, index download
(S3 through moto's server on 127.0.0.1), verify + deserialise, handler and first query; at the real
catalog size and at the search section's synthetic sizes. Baseline: the same version from a local
folder (no network), same size, same run. Then an extrapolation to Lambda with stated assumptions.

The versions are published with the real code (`versions.write_files` + `versions.publish`):
`index.faiss` from the search section (default HNSW parameters), and `products.jsonl` made of the
catalog's real metadata rows, repeated with new ids for the synthetic sizes, so parsing costs what
a real catalog of that size costs. `embeddings.npy`, `records.jsonl` and `skipped.jsonl` are left
out of these versions: the service never reads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO, Context, image_link, log, ms, percentiles, plot_path, save_figure, table
from fashion_search.model.bundle import read_bundle
from fashion_search.store import ObjectStore, open_store, versions

PHASES = ("import", "model", "download", "deserialise", "handler", "first_query")
# Lambda assumptions (not measured here): S3 GET throughput into a function, and its CPU share.
S3_MB_S_ONE_STREAM = 85.0  # one connection, commonly measured 80-90 MB/s
S3_MB_S_PARALLEL = 200.0  # S3Store's up-to-16 parallel 16 MB ranged GETs, bounded by the function's network
LAMBDA_MB_PER_VCPU = 1769


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """moto's S3 server (ThreadedMotoServer) on 127.0.0.1; yields the environment that points
    boto3 at it (AWS_ENDPOINT_URL and dummy credentials)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def products_jsonl(real_lines: list[str], size: int) -> bytes:
    """`size` metadata rows: the real ones, then copies with the id made unique (`<id>~<copy>`)."""
    out = list(real_lines[:size])
    for i in range(len(real_lines), size):
        line = real_lines[i % len(real_lines)]
        pid = json.loads(line)["product_id"]
        out.append(line.replace(json.dumps(pid), json.dumps(f"{pid}~{i // len(real_lines)}"), 1))
    return "".join(line + "\n" for line in out).encode()


def publish(store: ObjectStore, files: dict[str, bytes], size: int, model: Path, params: dict[str, int]) -> str:
    """A complete version of `files` in `store`, published as the live one; returns its id."""
    spec = read_bundle(model)
    version = versions.new_version_id()
    infos = versions.write_files(store, version, files)
    manifest = versions.Manifest(
        version=version, created_at=versions.utc_now(), build_seconds=0.0,
        catalog={"source": "benchmark: real catalog rows, repeated", "kind": "synthetic"},
        counts={"catalog": size, "indexed": size, "skipped": 0, "reused": 0, "encoded": 0},
        skipped_by_reason={}, model={"name": spec.name, "hash": spec.hash, "dim": spec.dim},
        index={"type": "IndexHNSWFlat", "metric": "inner_product", **params}, files=infos)
    versions.publish(store, manifest)
    return version


def cold_start(store_uri: str, model: Path, env: dict[str, str]) -> dict[str, Any]:
    """One fresh process (bench.cold_child) from spawn to first answer."""
    import subprocess

    result = REPO / "bench-results" / "tmp" / f"cold-{uuid.uuid4().hex}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    spawned = time.time()
    proc = subprocess.run([sys.executable, "-m", "bench.cold_child", "--store", store_uri, "--model", str(model),
                           "--spawned", repr(spawned), "--result", str(result)], cwd=REPO,
                          env={**os.environ, **env, "POWERTOOLS_METRICS_DISABLED": "true"},
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cold start from {store_uri} failed:\n{proc.stderr[-3000:]}")
    try:
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 in ms of every phase and of the total; memory and bytes of the last run."""
    out = {phase: percentiles([r[phase] * 1000 for r in runs]) for phase in (*PHASES, "total")}
    return out | {"bytes": runs[-1]["bytes"], "peak_mb": max(r["peak_mb"] for r in runs),
                  "rss_mb": runs[-1]["rss_mb"], "runs": runs}


def lambda_estimate(s3: dict[str, Any], memory_mb: int) -> dict[str, Any]:
    """Cold start on Lambda = the CPU phases as measured here + the download at assumed S3 rates."""
    cpu_ms = sum(s3[p]["p50"] for p in PHASES if p != "download")
    mb = s3["bytes"] / 1e6
    return {"cpu_ms": cpu_ms, "mb": mb, "download_one_stream_ms": mb / S3_MB_S_ONE_STREAM * 1000,
            "download_parallel_ms": mb / S3_MB_S_PARALLEL * 1000,
            "total_ms": cpu_ms + mb / S3_MB_S_PARALLEL * 1000,
            "total_one_stream_ms": cpu_ms + mb / S3_MB_S_ONE_STREAM * 1000,
            "memory_mb": memory_mb, "fits": s3["peak_mb"] < memory_mb * 0.9}


def search_memory_mb() -> int:
    """The search Lambda's memory as deployed by default (cdk.json context)."""
    return int(json.loads((REPO / "cdk.json").read_text())["context"]["searchMemoryMb"])


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    search = results["search"]
    build_store = open_store(results["build"]["store"])
    pointer = versions.read_pointer(build_store)
    assert pointer is not None
    manifest = versions.read_manifest(build_store, pointer.version)
    real_lines = versions.read_file(build_store, manifest, "products.jsonl").decode().splitlines()
    memory = search_memory_mb()
    out = []
    with moto_s3() as env:
        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3").create_bucket(Bucket=bucket)
        for size_result in search["sizes"]:
            size = size_result["size"]
            local_dir = ctx.work / "cold" / f"local-{size}"
            shutil.rmtree(local_dir, ignore_errors=True)
            s3_uri = f"s3://{bucket}/cold-{size}"
            files = {"index.faiss": Path(size_result["index_file"]).read_bytes(),
                     "products.jsonl": products_jsonl(real_lines, size)}
            log(f"cold start: publishing {size:,} products ({sum(map(len, files.values())) / 1e6:,.0f} MB) "
                "to moto S3 and a local folder")
            for uri in (s3_uri, str(local_dir)):
                publish(open_store(uri), files, size, ctx.model, size_result["params"])
            del files
            runs: dict[str, list[dict[str, Any]]] = {"s3": [], "local": []}
            # moto serves a 1M-vector version at ~25 MB/s (see render): two runs there keep the suite < 30 min.
            for _ in range(ctx.size(5 if size <= 100_000 else 2, 2)):
                runs["s3"].append(cold_start(s3_uri, ctx.model, env))
                runs["local"].append(cold_start(str(local_dir), ctx.model, env))
            s3, local = summarise(runs["s3"]), summarise(runs["local"])
            log(f"cold start: {size:,}: S3 p50 {s3['total']['p50'] / 1000:.1f} s, "
                f"local p50 {local['total']['p50'] / 1000:.1f} s")
            out.append({"size": size, "s3": s3, "local": local, "lambda": lambda_estimate(s3, memory)})
            shutil.rmtree(local_dir, ignore_errors=True)
    return {"sizes": out, "memory_mb": memory, "threads": os.cpu_count()}


def plot(result: dict[str, Any], ctx: Context) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    labels = [f"{s['size']:,}\n{where}" for s in result["sizes"] for where in ("S3 (moto)", "local")]
    bottom = [0.0] * len(labels)
    for phase in PHASES:
        values = [s[where][phase]["p50"] / 1000 for s in result["sizes"] for where in ("s3", "local")]
        ax.bar(labels, values, bottom=bottom, label=phase.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("seconds (p50 per phase)")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)
    path = plot_path(ctx, "cold_start.png")
    save_figure(fig, path)
    return path


def render(result: dict[str, Any], ctx: Context) -> str:
    rows = []
    for s in result["sizes"]:
        for where, label in (("s3", "S3 (moto)"), ("local", "local folder (baseline)")):
            r = s[where]
            vs = "baseline" if where == "local" else f"{r['total']['p50'] / s['local']['total']['p50']:.2f}× slower"
            rows.append([f"{s['size']:,}", label, r["total"]["n"], *(ms(r[p]["p50"]) for p in PHASES),
                         ms(r["total"]["p50"]), ms(r["total"]["p95"]), f"{r['bytes'] / 1e6:,.0f}",
                         f"{r['peak_mb']:,.0f}", vs])
    est = []
    for s in result["sizes"]:
        lam, moto_ms = s["lambda"], s["s3"]["download"]["p50"]
        est.append([f"{s['size']:,}", f"{lam['mb']:,.0f}", f"{lam['mb'] / (moto_ms / 1000):,.0f}", ms(lam["cpu_ms"]),
                    ms(lam["download_one_stream_ms"]), ms(lam["download_parallel_ms"]),
                    f"**{lam['total_ms'] / 1000:.1f} s** ({lam['total_one_stream_ms'] / 1000:.1f} s)",
                    f"{s['s3']['peak_mb']:,.0f} MB: " + ("fits" if lam["fits"] else "**does not fit**")])
    first = result["sizes"][0]
    scaling = "; ".join(f"{s['size']:,}: {s['s3']['total']['p50'] / 1000:.2f} s "
                        f"({s['s3']['total']['p50'] / first['s3']['total']['p50']:.1f}× the {first['size']:,} time)"
                        for s in result["sizes"][1:])
    return "\n\n".join([
        "Each run is a fresh `python` process (`bench.cold_child`) doing what `functions/search/handler.py` "
        "does at init, then one text query through the Lambda handler: *import* = interpreter start + "
        "importing the API, config and service modules; *model* = `Embedder` (two onnxruntime sessions); "
        "*download* = opening the store (for S3: importing boto3, making the client) and the service's "
        "`store.get` calls (pointer, manifest, products.jsonl, index.faiss) through the real `S3Store` (boto3, "
        "parallel ranged GETs above 16 MB) against moto's S3 server on "
        "127.0.0.1; *deserialise* = the rest of the first `SearchService` load (SHA-256 checks, JSON parse, "
        "FAISS deserialise); *handler* = `create_handler`; *first query* = a text query through the handler "
        f"(onnxruntime default threads: {result['threads']}). Runs alternate between S3 and the baseline, the "
        "same version in a local folder. Milliseconds, p50 per phase (the total's p50 and p95 are of the "
        "totals).",
        image_link(ctx, plot(result, ctx), "cold start phases"),
        table(["products", "store", "runs", "import", "model", "download", "deserialise", "handler",
               "first query", "total p50", "total p95", "MB read", "peak RSS MB", "vs local folder"], rows,
              right=range(2, 13)),
        "moto is not S3: it re-reads the whole object for every ranged GET (its `FakeKey.value`), so the "
        "download of big files here is slower than the bytes warrant; the extrapolation below uses assumed S3 "
        "rates instead of moto's.",
        f"**Extrapolation to Lambda** at the search function's {result['memory_mb']:,} MB (cdk.json "
        f"`searchMemoryMb`: {result['memory_mb'] / LAMBDA_MB_PER_VCPU:.2f} vCPU at 1 vCPU per "
        f"{LAMBDA_MB_PER_VCPU:,} MB). Assumptions, not measured here: S3 → Lambda throughput of "
        f"{S3_MB_S_ONE_STREAM:.0f} MB/s on one connection and {S3_MB_S_PARALLEL:.0f} MB/s with `S3Store`'s "
        "parallel ranged GETs (objects over 16 MB, up to 16 at a time); the CPU phases take as long as here "
        "(one Lambda vCPU ≈ one core of this machine; the phases are single-threaded but for the "
        "onnxruntime parts); not included: Lambda's own start of the container image (its lazy loading of "
        "a ~1 GB image), which the Python process here does not see. Lambda's init phase may take 10 s; "
        "longer inits are re-run inside the first (billed) invocation.",
        table(["products", "MB downloaded", "moto MB/s (measured)", "CPU phases ms (measured p50)",
               f"download at {S3_MB_S_ONE_STREAM:.0f} MB/s ms", f"download at {S3_MB_S_PARALLEL:.0f} MB/s ms",
               "estimated cold start (one stream)", f"peak RSS vs {result['memory_mb']:,} MB"], est,
              right=range(1, 6)),
        f"Against the smallest size: at {first['size']:,} products the S3 cold start p50 is "
        f"{first['s3']['total']['p50'] / 1000:.2f} s" + (f"; {scaling}." if scaling else "."),
    ])
