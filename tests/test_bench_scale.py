"""Smoke test of the benchmark's scale section (bench/scale.py) in quick mode over the tiny bundle: every
child process runs (exact, builds, catalogs, index measurement, the service, the footprint), the results
hold what the report needs, and the report renders its tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import scale
from bench.common import Context
from tests.conftest import FASHION_FEED

pytestmark = pytest.mark.heavy


def test_scale_section_measures_both_indexes_and_renders(tmp_path: Path, tiny_bundle: Path,
                                                         fashion_store: Path) -> None:
    ctx = Context(quick=True, model=tiny_bundle, feed=FASHION_FEED, work=tmp_path / "work", plots=tmp_path / "plots",
                  report=tmp_path / "BENCHMARKS.md")
    result = scale.run_section(ctx, {"build": {"store": str(fashion_store), "products": 400}})
    runs = {(r["kind"], r["size"]): r for r in result["indexes"]}
    assert set(runs) == {(k, s) for k in scale.KINDS for s in (5_000, 10_000)}
    for (kind, size), run in runs.items():
        assert run["ntotal"] == size and run["service"]["products"] == size
        assert [r["ef_search"] for r in run["sweep"]] == list(scale.QUICK_EF_SEARCH)
        recalls = [r["recall"] for r in run["sweep"]]
        assert all(0.0 <= r <= 1.0 for r in recalls) and recalls[-1] >= recalls[0] and recalls[-1] > 0.5
        assert run["build"]["params"]["type"] == {"flat": "IndexHNSWFlat", "sq8": "IndexHNSWSQ"}[kind]
        assert run["cold"]["total_s"] > run["cold"]["open_s"] >= 0 and run["service"]["load_s"] > 0
    flat, sq8 = runs[("flat", 10_000)], runs[("sq8", 10_000)]
    saved = flat["build"]["file_bytes"] - sq8["build"]["file_bytes"]
    assert saved == pytest.approx(10_000 * 32 * 3, abs=1024)  # 32-d: 32 B of codes a vector instead of 128
    # Exact search over the codes, half text and half photo queries (whose neighbours, noisy copies of one
    # vector, lie closer together than the codes' rounding): below float32's, above chance.
    codes = sq8["codes_exact"]
    assert "recall_float_rerank" in sq8["sweep"][0] and 0.7 < codes["recall"] <= 1.0
    assert codes["queries"] == 50 and {"recall_text", "recall_photo"} <= codes.keys()
    footprint = result["footprint"][-1]
    assert footprint["size"] == 10_000 and footprint["rows_nbytes"] == 10_000 * 12
    assert {"products_bytes", "products_offsets", "rows_by_id", "columns", "keywords", "stats"} <= \
        footprint["steps"].keys()
    markdown = scale.render(result, ctx)
    assert "| vectors | index | efSearch | p50 ms | p95 ms | recall@10 |" in markdown
    assert "| 10,000 | sq8 | 256 |" in markdown and "| component | B/product at 5,000 |" in markdown
    assert "**5,000,000 products in one function**" in markdown and "Issue 15's goal" in markdown
    assert (ctx.plots / "scale.png").stat().st_size > 1000
    built = {path: path.stat().st_mtime_ns for path in (ctx.work / "scale").glob("*.faiss")}
    scale.prepare(ctx, {"build": {"store": str(fashion_store), "products": 400}})  # the next run reuses them
    assert len(built) == 4 and {path: path.stat().st_mtime_ns for path in built} == built
