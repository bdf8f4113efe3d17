"""Shared pieces of the benchmark suite: the run context, timing, the machine, markdown tables.

Every speed figure in BENCHMARKS.md comes from `timed` (or a section's own loop) as p50/p95 of
repeated runs, with the thread count next to it and a baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "fashion-search" / "bench"  # exported CLIP bundles: setup, not measured


@dataclass(frozen=True)
class Context:
    """What every section gets: the mode, the starter bundle, the feed and where files go."""

    quick: bool
    model: Path  # the starter bundle (models/fashion-starter)
    feed: Path
    work: Path  # scratch files of this run (stores, synthetic indexes); big, gitignored
    plots: Path  # PNGs referenced from the report
    report: Path  # the markdown file written at the end

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def log(message: str) -> None:
    """Progress on stderr, stamped with the wall clock."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """p50/p95 (and n) of a list of milliseconds."""
    values = np.asarray(ms, dtype=np.float64)
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "n": len(values)}


def timed(fn: Callable[[int], object], runs: int, warmup: int = 2) -> dict[str, float]:
    """Call fn(i) `warmup` times unmeasured (first runs allocate and tune), then `runs` times: p50/p95 ms."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        started = time.perf_counter()
        fn(warmup + i)
        times.append((time.perf_counter() - started) * 1000.0)
    return percentiles(times)


def rss_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM), in MB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields.get("VmRSS", float("nan")), "peak_mb": fields.get("VmHWM", float("nan"))}


def machine() -> dict[str, Any]:
    """The CPU (as model_export.measure_latency describes it), its SIMD extensions, memory, versions."""
    import faiss

    from model_export.measure_latency import machine as describe

    cpuinfo = Path("/proc/cpuinfo")
    flags = next((line.split() for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), []) \
        if cpuinfo.is_file() else []
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "description": describe(), "cores": os.cpu_count(), "memory_gb": round(memory_gb, 1),
        "simd": [f for f in ("avx2", "avx512f", "avx512_vnni") if f in flags],
        "python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__,
        "kernel": platform.release(),
    }


class CpuMeter:
    """How busy the machine was during a section, and how much of that was other processes.

    /proc/stat gives all CPU time; os.times() gives ours (this process and the children it waited
    for). The difference is what other work (say, a model training) took from the cores.
    """

    def __init__(self) -> None:
        self.started, self.busy, self.ours = time.monotonic(), self._busy(), self._ours()

    @staticmethod
    def _busy() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def read(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        busy, ours = self._busy() - self.busy, self._ours() - self.ours
        return {"seconds": round(elapsed, 1), "cores_busy": round(busy / elapsed, 2),
                "cores_other": round(max(busy - ours, 0.0) / elapsed, 2), "load_1min": round(os.getloadavg()[0], 2)}


def run_module(module: str, args: Sequence[str], *, env: dict[str, str] | None = None,
               timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m <module> <args> --result FILE` in a fresh process and return the JSON it wrote.

    Fresh processes give honest cold-start and memory figures; the result goes through a file
    because the code under test may print to stdout (powertools metrics do).
    """
    result = REPO / "bench-results" / "tmp" / f"{module}-{os.getpid()}-{time.monotonic_ns()}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([sys.executable, "-m", module, *args, "--result", str(result)], cwd=REPO,
                              env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            command = " ".join(["python -m", module, *args])
            raise RuntimeError(f"{command} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- markdown ---------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A markdown table; columns whose index is in `right` are right-aligned (numbers)."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(value: float) -> str:
    """Milliseconds with sensible precision: 0.042, 1.23, 12.3, 123."""
    if value != value:  # NaN
        return "–"
    if value < 0.1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio(baseline: float, value: float) -> str:
    """How many times faster (or smaller) `value` is than `baseline`: "12.3×"."""
    if not value or value != value or baseline != baseline:
        return "–"
    r = baseline / value
    return f"{r:.1f}×" if r < 100 else f"{r:,.0f}×"


def speed(baseline_ms: float, value_ms: float) -> str:
    """A time against its baseline's, in words: "12.3× faster" or "1.4× slower"."""
    if value_ms <= baseline_ms:
        return f"{ratio(baseline_ms, value_ms)} faster"
    return f"{ratio(value_ms, baseline_ms)} slower"


def plot_path(ctx: Context, name: str) -> Path:
    ctx.plots.mkdir(parents=True, exist_ok=True)
    return ctx.plots / name


def image_link(ctx: Context, path: Path, alt: str) -> str:
    """Markdown for a plot, relative to the report's folder."""
    return f"![{alt}]({os.path.relpath(path, ctx.report.resolve().parent)})"


def label_ef_search(ax: Any, sweep: list[dict[str, Any]]) -> None:
    """Each point of an efSearch sweep (p50 ms, recall) labelled with its efSearch."""
    for r in sweep:
        ax.annotate(str(r["ef_search"]), (r["p50"], r["recall"]), fontsize=6, xytext=(2, -8),
                    textcoords="offset points")


def finish_recall_plot(ax: Any, target: float) -> None:
    """The axes of a recall-against-latency plot (sections 2 and 12): the target recall, log latency."""
    ax.axhline(target, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("p50 ms per query (1 thread, log); labels: efSearch")
    ax.set_ylabel("recall@10 vs exact")
    ax.legend(fontsize=6, loc="lower right")


def save_figure(fig: Any, path: Path) -> None:
    """Small PNGs (they are committed): modest size and resolution."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
