"""`python -m bench`: run the benchmark suite, keep its results as JSON, write BENCHMARKS.md and plots.

    python -m bench                 # everything (< 30 min on 2 cores): BENCHMARKS.md, docs/bench/*.png
    python -m bench --quick         # small sizes, few runs (< 3 min): bench-results/BENCHMARKS-quick.md
    python -m bench --only search   # re-measure one section, reuse the others' saved results
    python -m bench --render        # re-render the report from the saved results

Sections run in dependency order (the build makes the index the others search, load and price)
and report in the issue's order. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, Context, CpuMeter, log, machine, utc_now
from bench.e2e import FEED
from bench.report import render
from fashion_search.config import default_model_dir
from fashion_search.model.bundle import BundleError, read_bundle

RUN_ORDER = ("build", "encoders", "search", "filters", "e2e", "cold_start", "quality", "hybrid", "keywords", "cost",
             "load", "scale")


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few runs (CI smoke run)")
    parser.add_argument("--out", type=Path, help="report (default BENCHMARKS.md; quick: bench-results/...)")
    parser.add_argument("--plots", type=Path, help="PNG folder (default docs/bench; quick: bench-results/...)")
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="the starter model bundle")
    parser.add_argument("--feed", type=Path, default=FEED, help="the fashion feed (JSONL)")
    parser.add_argument("--work", type=Path, help="scratch folder (default bench-results/work[-quick])")
    parser.add_argument("--only", action="append", choices=RUN_ORDER, help="run only these sections (repeatable)")
    parser.add_argument("--render", action="store_true", help="only re-render the report from saved results")
    args = parser.parse_args(argv)

    suffix = "-quick" if args.quick else ""
    results_dir = REPO / "bench-results"
    results_file = results_dir / f"results{suffix}.json"
    ctx = Context(quick=args.quick, model=args.model.resolve(), feed=args.feed.resolve(),
                  work=(args.work or results_dir / f"work{suffix}").resolve(),
                  plots=(args.plots or (results_dir / "plots-quick" if args.quick else REPO / "docs" / "bench")),
                  report=args.out or (results_dir / "BENCHMARKS-quick.md" if args.quick else REPO / "BENCHMARKS.md"))
    try:
        read_bundle(ctx.model)
    except BundleError as exc:
        parser.error(f"{exc}. The starter bundle ships in models/fashion-starter; for development pass "
                     "--model DIR (e.g. a bundle from `python -m model_export.tiny_bundle --out DIR`).")

    results: dict[str, Any] = json.loads(results_file.read_text()) if (args.only or args.render) and \
        results_file.is_file() else {}
    if not args.render:
        started = time.monotonic()
        command = " ".join(["python -m bench", shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
        results["meta"] = {"command": command,
                           "quick": args.quick, "commit": _commit(), "machine": machine(),
                           "load_start": os.getloadavg()[0], "model": str(ctx.model)}
        ctx.work.mkdir(parents=True, exist_ok=True)
        if results["meta"]["load_start"] > 0.5:
            log(f"load average {results['meta']['load_start']:.2f}: other work is running, figures will be noisy "
                "(the report says how much CPU other processes took in each section)")
        for name in args.only or RUN_ORDER:
            log(f"=== {name} ===")
            meter = CpuMeter()
            results[name] = importlib.import_module(f"bench.{name}").run_section(ctx, results)
            results[name]["_cpu"] = meter.read()
            # Which run measured it: `--only` keeps the other sections' figures from earlier runs.
            results[name]["_run"] = {"finished": utc_now(), "commit": results["meta"]["commit"],
                                     "model": read_bundle(ctx.model).hash[:12]}
            log(f"{name}: {results[name]['_cpu']}")
            results_dir.mkdir(exist_ok=True)
            results_file.write_text(json.dumps(results, indent=1, default=str))
        results["meta"] |= {"seconds": time.monotonic() - started, "finished": utc_now()}
        results_file.write_text(json.dumps(results, indent=1, default=str))
    ctx.report.parent.mkdir(parents=True, exist_ok=True)
    ctx.report.write_text(render(results, ctx))
    log(f"wrote {ctx.report} and plots in {ctx.plots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
