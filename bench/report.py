"""BENCHMARKS.md from the results of one run: how it was made, the headline figures, the sections."""

from __future__ import annotations

import importlib
from typing import Any

from bench.common import Context, ms, speed, table

# (module, heading) in the order; they run in another order (build first: it makes the index).
SECTIONS = (
    ("encoders", "1. Encoders"),
    ("search", "2. Search: HNSW vs exact"),
    ("e2e", "3. End to end through the local server"),
    ("cold_start", "4. Cold start"),
    ("build", "5. Build"),
    ("quality", "6. Quality"),
    ("hybrid", "7. Hybrid search and relevance"),
    ("cost", "8. Cost"),
    ("load", "9. Load: queries while builds publish and a client sends photo bombs"),
    ("filters", "10. Filtered search: recall and latency by selectivity"),
    ("keywords", "11. Keyword signal: BM25 and named catalog values with the vector ranking"),
    ("scale", "12. Scale: one search function from 1M to 5M products, float32 and 8-bit HNSW"),
)
# The sections the headline's fixed rows come from; the filters and keywords rows appear when measured.
HEADLINE_SECTIONS = ("e2e", "encoders", "search", "cold_start", "build", "quality", "cost")
NOT_MEASURED = """\
- **AWS itself.** There is no AWS account on this machine: Lambda figures are extrapolations from local
  measurements with the assumptions stated in sections 4 and 8; the container image's own start
  (Lambda pulling and lazily loading the image) is not in any figure.
- **Real CLIP weights.** The hub is not reachable, so ViT-B/32 runs with random weights: its latency
  and file sizes are the real architecture's, its retrieval quality is meaningless (section 6 uses the
  starter model only).
- **The starter's fp32 text tower.** It is not shipped (only int8 is), so its latency is not measured
  and its quality comes from the training run's record.
- **The previous starter's quality.** Section 1 times the previous starter in this run; section 6
  measures the shipped bundle only (`python -m model_export.evaluate --bundle A --compare B` measures
  two bundles side by side).
- **Fetch/decode vs encode inside a build.** The builder overlaps them chunk by chunk; the build
  section reports the stage they share.
- **S3 throughput.** moto on 127.0.0.1 is not S3 and is slow for big objects (it re-reads the object
  for every ranged GET); real S3 rates are assumed, not measured.
- **Filtered search beyond 100k vectors.** Section 10 measures 100,000 vectors; the exact and scan paths grow
  with the rows a filter keeps, the HNSW path with the graph, so its ratios at 1M are not measured here.
- **The keyword signal on real shoppers' queries.** Section 11's queries are written from the catalogs'
  own fields (DummyJSON has 100 products, one or two per model name); no query log was available.
- **5M vectors.** Section 12 measures indexes of 1M and 2M vectors (a float32 index of 5M does not fit this
  machine's memory) and extrapolates the 5M figures from their growth; the rest of a 5M function is measured."""
SHARED_CORES = 0.3  # other processes' average CPU use (cores) above which figures are called noisy


def _search_row(search: dict[str, Any], size: dict[str, Any]) -> dict[str, Any]:
    from bench.search import at_ef
    from fashion_search.index import HnswParams

    return at_ef(size, search["pick"]["chosen"] or HnswParams().ef_search)


def encoder_row(encoders: dict[str, Any], query: str) -> list[str]:
    """The starter's batch-1 one-thread encoder row: against the previous starter measured in the same
    run (issue 10's comparison, with its latency target) and against PyTorch CLIP."""
    from bench.encoders import PREVIOUS_COMMIT, TARGET_MS
    from bench.encoders import headline as encoder_headline

    enc = encoder_headline(encoders, query)
    s, bl, prev = enc["shipped"], enc["baseline"], enc["previous"]
    clip = f"PyTorch CLIP ViT-B/32 fp32{', 77 tokens' if query == 'text' else ''} ({ms(bl['p50'])} ms)"
    target = f"target ≤ {TARGET_MS[query]:g} ms {'**met**' if s['p50'] <= TARGET_MS[query] else '**missed**'}"
    if prev is None:
        ratio, baseline = f"{speed(bl['p50'], s['p50'])} than CLIP; {target}; previous starter not measured", clip
    else:
        ratio = f"**{speed(prev['p50'], s['p50'])}** than the previous starter; {target}; " \
                f"{speed(bl['p50'], s['p50'])} than CLIP"
        baseline = f"previous starter ({PREVIOUS_COMMIT}, {prev['weights']}, {ms(prev['p50'])} ms); {clip}"
    return [f"{query} encoder, starter model ({s['weights']}, batch 1, 1 thread)", f"{ms(s['p50'])} ms",
            f"{ms(s['p95'])} ms", ratio, baseline]


def headline(results: dict[str, Any]) -> str:
    """The figures the issue asks for up front, each with its ratio and baseline."""
    rows = []
    e2e = {(r["name"], r["clients"]): r for r in results["e2e"]["rows"]}
    base = {b["name"]: b for b in results["e2e"]["baseline"]}
    for query in ("text", "image"):
        r, b = e2e[(query, 1)], base[query]
        rows.append([f"{query} query, end to end (HTTP, 1 client)", f"{ms(r['p50'])} ms", f"{ms(r['p95'])} ms",
                     f"{r['p50'] / b['p50']:.2f}× the in-process time", f"same queries via `SearchService` in-process "
                     f"({ms(b['p50'])} ms)"])
        rows.append(encoder_row(results["encoders"], query))
    search = results["search"]
    for size in search["sizes"][-2:]:
        r = _search_row(search, size)
        rows.append([f"HNSW query, {size['size']:,} vectors (efSearch {r['ef_search']}, 1 thread)",
                     f"{ms(r['p50'])} ms", f"{ms(r['p95'])} ms",
                     f"{speed(size['exact']['p50'], r['p50'])}; recall@10 **{r['recall']:.4f}**",
                     f"exact IndexFlatIP ({ms(size['exact']['p50'])} ms, recall 1)"])
    cold = results["cold_start"]["sizes"]
    target = next((s for s in cold if s["size"] == 100_000), cold[-1])
    s3, local = target["s3"]["total"], target["local"]["total"]
    rows.append([f"cold start, {target['size']:,} products (S3 via moto)", f"{s3['p50'] / 1000:.2f} s",
                 f"{s3['p95'] / 1000:.2f} s", f"{s3['p50'] / local['p50']:.2f}× the local-folder time; Lambda "
                 f"estimate {target['lambda']['total_ms'] / 1000:.1f} s", f"same version from a local folder "
                 f"({local['p50'] / 1000:.2f} s)"])
    build = results["build"]
    first, inc = build["first"], build["incremental_seconds"]
    rows.append([f"build, {build['products']:,} products", f"{first['products_per_second']:,.0f} products/s",
                 "single run", "–", "–"])
    rows.append(["incremental rebuild, 1% new photos", f"{inc['p50']:.1f} s", f"{inc['p95']:.1f} s",
                 speed(first["summary"]["seconds"], inc["p50"]), f"the full build "
                 f"({first['summary']['seconds']:.1f} s)"])
    from bench.quality import checks

    quality = results["quality"]
    for name, worst, ok in checks(quality):
        rows.append([f"quality: HNSW efSearch {name.removeprefix('hnsw_ef')} vs exact", f"worst change {worst:+.4f}",
                     "–", "passes (≤ 0.01 lost)" if ok else "**fails** (> 0.01 lost)", "exact search, same vectors"])
    cost = next(q for q in results["cost"]["queries"] if q["query"] == "text")
    rows.append([f"Lambda cost per 1,000 text queries ({results['cost']['memory_mb']:,} MB)",
                 f"${cost['at_p50']['total']:.4f}", f"${cost['at_p95']['total']:.4f}", "–",
                 f"{cost['at_p50']['gb_s']:.1f} GB-s at p50"])
    if "filters" in results:
        from bench.filters import headline as filters_headline

        rows.append(filters_headline(results["filters"]))
    if "keywords" in results:
        from bench.keywords import headline as keywords_headline

        rows.extend(keywords_headline(results["keywords"]))
    if "scale" in results:
        from bench.scale import headline as scale_headline

        rows.extend(scale_headline(results["scale"]))
    return table(["figure", "p50", "p95", "ratio", "baseline (same run)"], rows, right=(1, 2))


def _measured(section: dict[str, Any]) -> str:
    """When, at which commit and with which model bundle a section was measured (unrecorded before runs kept it)."""
    run = section.get("_run")
    if run is None:
        return "an earlier run (not recorded)"
    return f"{run['finished']} (`{run['commit']}`, model `{run['model']}`)"


def render(results: dict[str, Any], ctx: Context) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    minutes = sum(results[n]["_cpu"]["seconds"] for n, _ in SECTIONS if n in results) / 60
    noisy = [name for name, _ in SECTIONS if results.get(name, {}).get("_cpu", {}).get("cores_other", 0) > SHARED_CORES]
    runs = [[heading, f"{results[name]['_cpu']['seconds']:.0f}", f"{results[name]['_cpu']['cores_busy']:.2f}",
             f"{results[name]['_cpu']['cores_other']:.2f}", _measured(results[name])]
            for name, heading in SECTIONS if name in results]
    parts = [
        "# Benchmarks",
        f"Measured by `{meta['command']}` on {meta['finished']} (commit `{meta['commit']}`"
        f"{', quick mode: small sizes and few runs, for smoke tests only' if meta['quick'] else ''}); "
        f"the sections took {minutes:.1f} min. Every figure below was measured on this machine, each section "
        "in the run the table below names (`--only` re-measures some and keeps the others' figures); estimates "
        "are marked as such and state their assumptions. Raw results: `bench-results/results*.json` (not "
        "committed).",
        f"**Machine:** {machine['description']} ({', '.join(machine['simd']) or 'no AVX'}), {machine['cores']} "
        f"cores, {machine['memory_gb']} GB RAM, Linux {machine['kernel']}; Python {machine['python']}, numpy "
        f"{machine['numpy']}, FAISS {machine['faiss']}. Load average at the start: {meta['load_start']:.2f}.",
        ("**The machine was shared** during " + ", ".join(noisy) + ": other processes kept "
         f"more than {SHARED_CORES} cores busy on average (table below), so those figures are noisier and "
         "slower than on a quiet machine." if noisy else
         "The machine was quiet: other processes used little CPU during every section (table below)."),
        table(["section", "seconds", "cores busy (avg)", "of which other processes", "measured (commit, model)"],
              runs, right=(1, 2, 3)),
        "## Headline",
        headline(results) if all(name in results for name in HEADLINE_SECTIONS) else
        "_Not every section has results yet._",
    ]
    for name, heading in SECTIONS:
        body = importlib.import_module(f"bench.{name}").render(results[name], ctx) if name in results else \
            "_Not measured yet._"
        parts += [f"## {heading}", body]
    parts += ["## Not measured here", NOT_MEASURED, *models_section(quick=meta["quick"])]
    return "\n\n".join(parts) + "\n"


def models_section(quick: bool = False) -> list[str]:
    """The model table `python -m model_export.model_table` measured and saved (docs/bench/models.json), after
    the numbered sections: this suite does not measure those models, but it rewrites the report."""
    import json

    from model_export.model_table import HEADING, SAVED, section

    if quick or not SAVED.is_file():
        return []
    return [f"## {HEADING}", section(json.loads(SAVED.read_text()))]
