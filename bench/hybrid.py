"""Hybrid search and relevance: composed queries by alpha, before and after, and good_match rates.

Composed queries (model_export.composed): the photo of a product of the time split + "in <colour>" or
"for <gender>", over the build section's gallery, exact search. Before: the seed's mix of the two
vectors, for the shipped bundle and the previous starter (encoded here: the bundle the issue measured
on). After: the soft AND the service runs. good_match: the shipped bundle's calibration on the time
split's attribute queries, junk queries and new photos. Served: the same composed queries at alpha
0.5 through `SearchService` over the build's index (HNSW, 256 candidates, duplicates collapsed), with
and without collapsing: how often two of a top 10 share a photo.
"""

from __future__ import annotations

from typing import Any

from bench.common import Context, image_link, log, plot_path, save_figure, table
from bench.encoders import PREVIOUS_COMMIT, previous_starter
from bench.quality import built_gallery
from fashion_search.model.embedder import Embedder


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    from model_export.composed import evaluate_composed, evaluate_good_match
    from model_export.evaluate import encode_gallery

    built = built_gallery(ctx, results)
    shipped = Embedder(ctx.model, batch_size=64)
    log(f"hybrid: composed queries over {len(built.products):,} products, shipped bundle")
    out: dict[str, Any] = {"products": len(built.products),
                           "shipped": evaluate_composed(built.products, built.vectors, shipped.encode_texts)}
    calibration = shipped.spec.calibration
    out["good_match"] = (evaluate_good_match(calibration, built.products, built.vectors, shipped.encode_texts)
                         if calibration else None)
    out["served"] = served(ctx, results, built.products)
    previous, skipped = previous_starter()
    if previous is None:
        out["previous_skipped"] = skipped
    else:
        log(f"hybrid: previous starter ({PREVIOUS_COMMIT}): encoding {len(built.products):,} photos")
        old = Embedder(previous, batch_size=64)
        out["previous"] = evaluate_composed(built.products, encode_gallery(old, built.products, log=False),
                                            old.encode_texts)
    return out


SERVED_ALPHAS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def served_store(ctx: Context, results: dict[str, Any]) -> str:
    """The build section's index, brought up to this code's version files (filter columns, keyword index) by an
    incremental rebuild of a copy: every embedding is reused, nothing is re-encoded."""
    import asyncio
    import shutil
    from pathlib import Path

    from fashion_search.build.pipeline import build_index
    from fashion_search.store import open_store, versions

    source = results["build"]["store"]
    store = open_store(source)
    pointer = versions.read_pointer(store)
    assert pointer is not None
    files = versions.read_manifest(store, pointer.version).files
    if "columns.npz" in files and "keywords.tar" in files:
        return source
    copy = ctx.work / "hybrid-store"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(Path(source.removeprefix("file://")), copy)
    log("hybrid: the build's index predates filter columns and keywords: rebuilding a copy (embeddings reused)")
    asyncio.run(build_index(str(ctx.feed), open_store(str(copy)), Embedder(ctx.model)))
    return str(copy)


def served(ctx: Context, results: dict[str, Any], products: list[Any]) -> dict[str, Any]:
    """The composed queries through the service (the ranking a shopper gets: soft AND, keyword signal and named
    catalog values), by alpha; and at 0.5, how often two of a top 10 share a photo with and without collapsing."""
    import numpy as np

    from fashion_search.config import ServiceSettings
    from fashion_search.serve.query import Query
    from fashion_search.serve.service import SearchService
    from model_export.composed import composed_queries, relevant
    from model_export.starter.data import time_split_indices

    service = SearchService(ServiceSettings(store=served_store(ctx, results), model=ctx.model, refresh_seconds=1e9))
    assert service.live is not None
    queries = composed_queries(products, time_split_indices(products)[1])
    feed_row = {p.id: i for i, p in enumerate(products)}
    by_alpha: dict[str, dict[str, list[float]]] = {f"{a:.1f}": {"on": [], "off": []} for a in SERVED_ALPHAS}
    shared = {True: 0, False: 0}
    for q in queries:
        photo = products[q.row].image.read_bytes()
        mask = relevant(q, products)
        for alpha in SERVED_ALPHAS:
            for lexical in (True, False):
                found = service.search(Query(text=q.text, image=photo, alpha=alpha, top_k=10, keywords=lexical)).hits
                by_alpha[f"{alpha:.1f}"]["on" if lexical else "off"].append(
                    float(np.mean([mask[feed_row[h.product.product_id]] for h in found])))
        for collapse in (True, False):
            for text, image in ((q.text, photo), (q.text, None), (None, photo)):
                found = service.search(Query(text=text, image=image, alpha=0.5, top_k=10,
                                             collapse_duplicates=collapse)).hits
                keys = [h.product.thumbnail for h in found]
                shared[collapse] += len(set(keys)) < len(keys)
    curves = {a: {kind: float(np.mean(v)) for kind, v in sides.items()} for a, sides in by_alpha.items()}
    return {"queries": len(queries), "searches": 3 * len(queries), "P@10_alpha_0.5": curves["0.5"]["on"],
            "P@10_by_alpha": curves,
            "top10_sharing_a_photo": {"collapsed": shared[True], "not_collapsed": shared[False]}}


def _lines(result: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(label, composed report, fusion) for each curve: before first."""
    lines = []
    if "previous" in result:
        lines.append((f"previous starter ({PREVIOUS_COMMIT}), seed's mix", result["previous"], "seed mix"))
    lines += [("shipped starter, seed's mix (before)", result["shipped"], "seed mix"),
              ("shipped starter, soft AND (after)", result["shipped"], "soft AND")]
    return lines


def plot(result: dict[str, Any], ctx: Context) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, report, fusion in _lines(result):
        alphas = [float(a) for a in report[fusion]]
        ax.plot(alphas, [v["all"] for v in report[fusion].values()], marker="o", label=label,
                linestyle="--" if fusion == "seed mix" else "-")
    by_alpha = (result.get("served") or {}).get("P@10_by_alpha")
    if by_alpha:
        alphas = [float(a) for a in by_alpha]
        ax.plot(alphas, [v["on"] for v in by_alpha.values()], marker="s", linewidth=2,
                label="served: soft AND + keywords + named catalog values")
        ax.plot(alphas, [v["off"] for v in by_alpha.values()], marker="s", linestyle=":",
                label="served, keywords off (soft AND, HNSW)")
    k = result["shipped"]["k"]
    ax.set_xlabel("alpha (0 = text only, 1 = photo only)")
    ax.set_ylabel(f"P@{k}")
    ax.set_title(f"Composed queries ({result['shipped']['queries']}): photo + modifier", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = plot_path(ctx, "hybrid_alpha.png")
    save_figure(fig, path)
    return path


def render(result: dict[str, Any], ctx: Context) -> str:
    composed = result["shipped"]
    k = composed["k"]
    kinds = ", ".join(f"{n} {kind}" for kind, n in composed["by_kind"].items())
    lines = _lines(result)
    rows = [[alpha, *(f"{report[fusion][alpha]['all']:.3f}" for _, report, fusion in lines)]
            for alpha in composed["soft AND"]]
    after = composed["soft AND"]
    best = max(after, key=lambda a: after[a]["all"])
    parts = [
        f"Composed queries over the build's {result['products']:,} products ({composed['queries']}: {kinds}); a "
        f"photo of a product of the time split plus a modifier, relevant = what both halves ask for; P@{k}, "
        "exact search (`python -m model_export.evaluate` prints the same table).",
        table(["alpha", *(label for label, _, _ in lines)], rows, right=range(1, len(lines) + 1)),
        f"After: P@{k} **{after['0.5']['all']:.3f}** at the default alpha 0.5 against text only "
        f"{after['0.0']['all']:.3f} and photo only {after['1.0']['all']:.3f}; best alpha {best} "
        f"({after[best]['all']:.3f}). By modifier at 0.5: "
        + ", ".join(f"{kind} {after['0.5'][kind]:.3f}" for kind in composed["by_kind"]) + ".",
        image_link(ctx, plot(result, ctx), "P@10 of composed queries against alpha"),
    ]
    s = result.get("served")
    if s:
        dup = s["top10_sharing_a_photo"]
        if "P@10_by_alpha" in s:
            curve = s["P@10_by_alpha"]
            best_served = max(curve, key=lambda a: curve[a]["on"])
            parts.append(
                "Served, as a shopper gets it (`SearchService`: the soft AND over 256 candidates, the keyword signal "
                "and the catalog values the text names, `serve/attributes.py`; duplicates collapsed), by alpha:")
            parts.append(table(["alpha", f"P@{k} served", f"P@{k} served, keywords off"],
                               [[a, f"{v['on']:.3f}", f"{v['off']:.3f}"] for a, v in curve.items()], right=(1, 2)))
            parts.append(
                f"At the default alpha 0.5: **{curve['0.5']['on']:.3f}**, against text only "
                f"{curve['0.0']['on']:.3f} and photo only {curve['1.0']['on']:.3f}; best alpha {best_served} "
                f"({curve[best_served]['on']:.3f}). "
                "The named values (\"in black\" names colour Black) do most of it: the photo still decides the kind "
                "of product, the catalog's colour field the colour.")
        parts.append(
            f"Served (`SearchService` over the build's index: HNSW, 256 candidates, duplicates collapsed): P@{k} "
            f"**{s['P@10_alpha_0.5']:.3f}** at alpha 0.5 over the same {s['queries']} queries. Top 10s with two "
            f"products sharing a photo, over their {s['searches']} searches (hybrid, text half, photo half): "
            f"**{dup['collapsed']}** collapsed (the default), {dup['not_collapsed']} with "
            "`collapse_duplicates: false`.")
    if "previous_skipped" in result:
        parts.append(f"The previous starter was not measured: {result['previous_skipped']}.")
    good = result.get("good_match")
    if good:
        parts.append(table(
            ["good_match", "share", "queries"],
            [["real shopper text queries (time split's attribute queries) → true", f"{good['real_good_match']:.1%}",
              good["real_queries"]],
             ["junk text queries (nonsense, out of catalog) → false", f"{good['junk_no_match']:.1%}",
              good["junk_queries"]],
             ["new photos (time split, themselves left out) → true", f"{good['photo_good_match']:.1%}",
              good["photo_queries"]]], right=(1, 2)))
    else:
        parts.append("The bundle is not calibrated: no good_match figures (`fashion-search calibrate`).")
    return "\n\n".join(parts)
