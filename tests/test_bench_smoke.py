"""Smoke test of the benchmark suite's cheapest parts on tiny inputs: the search section's
measurement and its fresh-process memory probe, the efSearch choice, the cost arithmetic, the
quality section on both held-out splits, the encoder tables against the previous starter, filtered
search by selectivity, the keyword signal's query sets and service runs, the model table's saved
section, and the markdown they render (the full suite is `make bench`, the CI smoke run `make bench-quick`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import cost, encoders, filters, hybrid, keywords, load, quality, report, search
from bench.cold_start import products_jsonl
from bench.common import Context
from tests.conftest import FASHION_FEED

pytestmark = pytest.mark.heavy


@pytest.fixture
def ctx(tmp_path: Path, tiny_bundle: Path) -> Context:
    return Context(quick=True, model=tiny_bundle, feed=FASHION_FEED, work=tmp_path / "work",
                   plots=tmp_path / "plots", report=tmp_path / "BENCHMARKS.md")


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around 50 centres: a stand-in for a catalog's embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, count)] + 0.3 * rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_search_section_measures_and_renders(ctx: Context, tmp_path: Path) -> None:
    real = clustered(1500, 32, seed=0)
    sigma = search.NOISE_FRACTION * search.nn_distance(real) / math.sqrt(32)
    vectors = search.synthetic(real, 3000, sigma)
    assert np.array_equal(vectors[:1500], real)  # the real vectors come first, untouched
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    queries = np.concatenate([clustered(40, 32, seed=1), search.perturb(real[:40], sigma, np.random.default_rng(2))])
    kinds = np.array(["text"] * 40 + ["photo"] * 40)
    sizes = []
    for size_vectors in (real, vectors):
        measured = search.measure(size_vectors, queries, kinds, efs=(16, 64, 256), exact_queries=20,
                                  index_out=tmp_path / f"index-{len(size_vectors)}.faiss")
        measured["memory"] = search.index_memory(tmp_path / f"index-{len(size_vectors)}.faiss")
        sizes.append(measured)
    big = sizes[-1]
    assert big["size"] == 3000 and big["memory"]["ntotal"] == 3000 and big["file_bytes"] > 3000 * 32 * 4
    recalls = [r["recall"] for r in big["hnsw"]]
    assert all(0.0 <= r <= 1.0 for r in recalls) and recalls[-1] >= recalls[0]
    assert recalls[-1] > 0.95 and {"recall_text", "recall_photo"} <= big["hnsw"][0].keys()
    pick = search.pick_ef(sizes, target=0.9)
    assert pick["chosen"] in (16, 64, 256)
    result = {"sizes": sizes, "sigma": sigma, "nn_distance": 0.1, "noise_fraction": search.NOISE_FRACTION,
              "real": 1500, "text_queries": 40, "photo_queries": 40, "pick": pick}
    markdown = search.render(result, ctx)
    assert "| vectors | efSearch | p50 ms | p95 ms | recall@10 |" in markdown
    assert "| 3,000 | exact (baseline) |" in markdown
    assert "| vectors | HNSW build s |" in markdown
    assert f"**Default efSearch: {pick['chosen']}**" in markdown
    assert (ctx.plots / "search.png").stat().st_size > 1000


def test_pick_ef_needs_the_target_at_every_size() -> None:
    def size(n: int, recalls: dict[int, float]) -> dict:
        return {"size": n, "hnsw": [{"ef_search": ef, "recall": r} for ef, r in recalls.items()]}

    sizes = [size(1000, {16: 0.99, 64: 0.995}), size(10_000, {16: 0.95, 64: 0.985})]
    assert search.pick_ef(sizes) == {"target": 0.98, "chosen": 64,
                                     "per_size": [{"size": 1000, "ef": 16}, {"size": 10_000, "ef": 64}]}
    assert search.pick_ef([size(1000, {16: 0.5, 64: 0.9})])["chosen"] is None


def test_cost_arithmetic_and_table(ctx: Context, fashion_store: Path) -> None:
    at_p50 = cost.lambda_per_1000(49.2, 2048)  # billed as 50 ms
    assert at_p50["billed_s"] == 0.05 and at_p50["gb_s"] == pytest.approx(100.0)
    assert at_p50["total"] == pytest.approx(100.0 * cost.LAMBDA_GB_S + 1000 * cost.LAMBDA_REQUEST)
    per, products = cost.measured_bytes(str(fashion_store))
    assert products == 400 and {"thumbnails", "index.faiss", "embeddings.npy", "products.jsonl"} <= per.keys()
    storage = cost.storage_per_products(per, versions_kept=5)
    thumbnails = next(r for r in storage if r["item"] == "thumbnails")
    index = next(r for r in storage if r["item"] == "index.faiss")
    assert thumbnails["copies"] == 1 and index["copies"] == 5
    assert index["gb"] == pytest.approx(per["index.faiss"] * 100_000 * 5 / 1e9)
    result = {"memory_mb": 2048, "versions_kept": 5, "bytes_per_product": per, "products": products,
              "storage": storage, "threads": 2,
              "queries": [{"query": q, "p50": 49.2, "p95": 80.0, "one_thread_adjust": 0.0, "at_p50": at_p50,
                           "at_p95": cost.lambda_per_1000(80.0, 2048)} for q in ("text", "image", "hybrid")]}
    markdown = cost.render(result, ctx)
    assert "1,000 × 0.050 s × 2 GB = **100.0 GB-s**" in markdown
    assert "| item | bytes per product | arithmetic | per month |" in markdown
    assert "$0.0000166667 per GB-s" in markdown


def test_synthetic_products_get_unique_ids() -> None:
    lines = ['{"product_id": "a", "title": "x"}', '{"product_id": "b", "title": "y"}']
    rows = products_jsonl(lines, 5).decode().splitlines()
    assert [r.split('"')[3] for r in rows] == ["a", "b", "a~1", "b~1", "a~2"]


def test_quality_section_reports_both_splits(ctx: Context, fashion_store: Path) -> None:
    results = {"build": {"store": str(fashion_store), "products": 400},
               "encoders": {"image_int8": {"static": {"kept": False, "p50": 9.0, "shipped_p50": 6.0}}}}
    result = quality.run_section(ctx, results)
    exact = result["variants"]["exact"]
    assert {k.split(".")[0] for k in exact} == {"time_split", "hash_split"}
    assert "image_int8" not in result["variants"] and len(result["variants"]) == 2  # exact, HNSW at its default
    assert result["splits"]["time_split"]["held_out"] == 20  # the newest 5% of 400
    assert [ok for _, _, ok in quality.checks(result)] == [True]  # HNSW over 400 vectors is near exact
    markdown = quality.render(result, ctx)
    hash_held_out = result["splits"]["hash_split"]["held_out"]
    assert markdown.index("**Time split** (20 held-out products)") < \
        markdown.index(f"**Hash split** ({hash_held_out} held-out products)")
    assert "| title → image R@10 (full gallery) |" in markdown
    assert f"**Only 400 of the feed's {result['feed_products']:,} products are indexed here**" in markdown
    assert "Image tower static int8: not evaluated for this bundle — not faster than the shipped image tower " \
           "(9.00 vs 6.00 ms" in markdown
    assert "the bundle records no fp32 figures" in markdown
    recorded = {"time_split.title_full.R@10": 0.5, "hash_split.title_full.R@10": 0.6, "fakestore.text_P@1": 0.4}
    markdown = quality.render({**result, "text_int8_recorded": recorded,
                               "text_fp32_recorded": {**recorded, "time_split.title_full.R@10": 0.52}}, ctx)
    assert "| Time split | title → image R@10 (full gallery) | 0.5000 | 0.5200 | -0.0200 |" in markdown
    assert "| FakeStore | text P@1 | 0.4000 | 0.4000 | +0.0000 |" in markdown


def _encoder_rows(previous: bool) -> list[dict]:
    """Batch-1/16 one-thread rows of the baseline and the starters: p50 ms per item (text, image)."""
    p50 = {"baseline": (40.0, 90.0), "shipped": (1.5, 5.0), "previous": (1.0, 2.5), "static": (None, 3.0)}
    models = {"baseline": "CLIP ViT-B/32 (random weights)", "shipped": "fashion-starter (shipped)",
              "previous": encoders.PREVIOUS_MODEL, "static": "fashion-starter, image static int8 (made here)"}
    rows = []
    for role, per_tower in p50.items():
        for tower, value in zip(("text", "image"), per_tower, strict=True):
            if value is None or (role == "previous" and not previous):
                continue
            for batch in encoders.BATCHES:
                rows.append({"model": models[role], "role": role,
                             "runtime": "PyTorch" if role == "baseline" else "onnxruntime",
                             "weights": "int8" if tower == "text" else "fp32", "tower": tower, "batch": batch,
                             "threads": 1, "file_mb": 10.0, "p50": value * batch, "p95": value * batch * 1.2,
                             "n": 8, "baseline_p50": p50["baseline"][tower == "image"] * batch})
    return rows


def test_hybrid_section_compares_fusions_by_alpha(ctx: Context, fashion_store: Path) -> None:
    result = hybrid.run_section(ctx, {"build": {"store": str(fashion_store), "products": 400}})
    composed = result["shipped"]
    assert composed["queries"] > 0 and list(composed["soft AND"]) == [f"{a / 10:.1f}" for a in range(11)]
    for fusion in ("seed mix", "soft AND"):  # the ends of the slider are the same search for both fusions
        assert composed[fusion]["0.0"] == composed["soft AND"]["0.0"]
        assert composed[fusion]["1.0"] == composed["soft AND"]["1.0"]
    assert 0.0 <= result["good_match"]["junk_no_match"] <= 1.0  # conftest calibrates the tiny bundle
    served = result["served"]
    assert served["top10_sharing_a_photo"]["collapsed"] == 0 and 0.0 <= served["P@10_alpha_0.5"] <= 1.0
    markdown = hybrid.render(result, ctx)
    assert "| alpha |" in markdown and "soft AND (after)" in markdown and (ctx.plots / "hybrid_alpha.png").is_file()
    assert ("previous" in result) != ("previous_skipped" in result)


def test_load_runs_its_three_phases(ctx: Context, tmp_path: Path, tiny_bundle: Path) -> None:
    """Seconds-long phases over 60 products: the mechanics (builds publish, bombs are refused), not the figures."""
    result = load.run_load(tiny_bundle, tmp_path / "load", products=60, clients=2, seconds=3)
    _, reindex, bomb = result["phases"]
    assert [p["name"] for p in result["phases"]] == ["quiet", "reindex", "bomb"]
    assert all(p["requests"] > 0 and p["non_2xx"] == 0 for p in result["phases"])
    assert reindex["builds_published"] >= 1 and sum(bomb["bomb_statuses"].values()) >= 3
    assert all(key.rsplit(": ", 1)[1].startswith("4") for key in bomb["bomb_statuses"]), bomb["bomb_statuses"]
    assert "| bomb |" in load.render(result, ctx)


def test_encoders_compare_the_starter_with_the_previous_one(ctx: Context) -> None:
    result = {"rows": _encoder_rows(previous=True), "threads": [1], "texts": 64, "clip_tokens_mean": 9.0,
              "starter_tokens_mean": 8.0, "starter_image": "224x224", "shipped_float16": True,
              "shipped_weights": {"text": "int8", "image": "fp32"},
              "previous": {"commit": encoders.PREVIOUS_COMMIT, "dim": 256, "image": "60x80", "tokens_mean": 8.0,
                           "weights": {"text": "int8", "image": "fp32"}},
              "image_int8": {"static": {"kept": True, "p50": 3.0, "shipped_p50": 5.0},
                             "dynamic": {"kept": False, "p50": 90.0, "shipped_p50": 5.0}}}
    markdown = encoders.render(result, ctx)
    assert "| p50 ms per item | vs baseline | vs previous starter |" in markdown
    assert "| fashion-starter (shipped) | onnxruntime | fp32 | 10 | 1 | 1 | 5.00 | 6.00 | 5.00 | 18.0× faster | " \
           "2.0× slower |" in markdown
    assert "starter: 224x224 padded; previous starter: 60x80 padded" in markdown
    assert "image ≤ 6 ms — 5.00 ms in this run, **met**" in markdown
    assert "- Image tower dynamic int8: not reported for this bundle — 90.0 ms against 5.00 ms" in markdown
    assert "static int8: not reported" not in markdown
    assert (ctx.plots / "encoders.png").stat().st_size > 1000
    row = report.encoder_row(result, "image")
    assert row[3] == "**2.0× slower** than the previous starter; target ≤ 6 ms **met**; 18.0× faster than CLIP"
    assert row[4].startswith(f"previous starter ({encoders.PREVIOUS_COMMIT}, fp32, 2.50 ms); PyTorch CLIP")
    alone = {**result, "rows": _encoder_rows(previous=False), "previous": {"skipped": "git is not installed"}}
    assert "is not measured: git is not installed." in encoders.render(alone, ctx)
    assert report.encoder_row(alone, "text")[3].endswith("target ≤ 2 ms **met**; previous starter not measured")


def test_previous_starter_is_skipped_without_its_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders, "PREVIOUS_COMMIT", "0" * 40)
    bundle, why = encoders.previous_starter(tmp_path)
    assert bundle is None and why.startswith(f"`git archive {'0' * 40} models/fashion-starter` failed")


def test_filters_section_measures_the_paths_and_renders(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from fashion_search.index import FaissHnswIndex, HnswParams, faiss_hnsw

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32)).astype(np.float32)
    category = rng.integers(0, 20, 3000).astype(np.int32)
    vectors = centres[category] + 0.3 * rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = np.concatenate([clustered(6, 32, seed=1), vectors[:6]])
    kinds = np.array(["text"] * 6 + ["photo"] * 6)
    # 3000 rows: scanning costs more than the graph from 600 rows kept (20% and 50% probe, then HNSW); 2% is exact.
    monkeypatch.setattr(faiss_hnsw, "SCAN_ROW_COST", 100.0)
    search_method = FaissHnswIndex._search
    result = filters.measure(HnswParams().build(vectors), vectors, category, queries, kinds,
                             selectivities=(0.5, 0.2, 0.02), efs=(256, 1024), warmup=1)
    assert faiss_hnsw.SCAN_ROW_COST == 100.0 and faiss_hnsw.PROBE_MIN_PASSING == 10  # the bench's patches are undone
    assert FaissHnswIndex._search is search_method
    assert result["constants"]["SCAN_ROW_COST"] == 100.0
    assert len(result["rows"]) == 3 * 3 * (3 + 2)  # kinds of mask × selectivities × configurations
    rows = {(r["config"], r["mask"], r["selectivity"], r["ef_search"] if r["config"] == "graph_fixed" else None): r
            for r in result["rows"]}
    shipped = {s: rows["shipped", "random", s, None] for s in (0.5, 0.2, 0.02)}
    assert shipped[0.02]["strategy"] == "exact" and shipped[0.02]["allowed"] == 60
    assert shipped[0.02]["decisions"] == {"exact": 12}
    assert shipped[0.2]["strategy"] == "hnsw" and shipped[0.2]["ef_search"] == 1280  # 2 × 256 × (1 / 0.2 / 2)
    assert sum(shipped[0.2]["decisions"].values()) == 12 and set(shipped[0.2]["decisions"]) <= {"hnsw", "probe→scan"}
    assert rows["scan", "far", 0.2, None]["decisions"] == {"scan": 12}
    assert rows["graph", "far", 0.2, None]["decisions"] == {"hnsw": 12}  # no probe: the graph whatever passes
    assert rows["graph_fixed", "random", 0.02, 1024]["decisions"] == {"hnsw": 12}
    assert rows["graph", "random", 0.02, None]["strategy"] == "exact"  # no more rows than k: always exact
    assert all(r["recall@10"] == 1.0 for r in result["rows"] if "hnsw" not in r["decisions"])
    assert all(0.0 <= r["recall@10"] <= 1.0 and r["p50"] > 0 for r in result["rows"])
    far = rows["shipped", "far", 0.2, None]["decisions"]
    assert filters.fell_back(far) == far.get("probe→scan", 0) / 12
    result["analysis"] = filters.analyse(result)
    result["inputs"] = {"reused_search_data": True, "category_count": 20}
    analysis = result["analysis"]
    assert [p["selectivity"] for p in analysis["per_selectivity"]] == [0.5, 0.2, 0.02]
    assert analysis["strategies"]["scan"]["met"] and analysis["strategies"]["scan"]["worst_recall"] == 1.0
    markdown = filters.render(result, ctx)
    assert "| selectivity | rows kept | path picked | random rows: recall@10 |" in markdown
    assert "| 2.00% | 60 | exact |" in markdown and "| 20.00% | 600 | probe, then HNSW ef 1280 |" in markdown
    assert "**Acceptance: recall@10 ≥ 0.99 at every selectivity (50.00%, 20.00%, 2.00%)" in markdown
    assert ("): holds.**" in markdown) == analysis["all_met"] != ("does not hold.**" in markdown)
    assert "| strategy | recall@10 ≥ 0.99 everywhere |" in markdown and "| selectivity | ef 256 | ef 1024 |" in markdown
    assert (ctx.plots / "filters.png").stat().st_size > 1000
    assert filters.headline(result)[0].startswith("filtered search, 3,000 vectors, selectivity 2.00%–50%")


def test_model_table_section_renders_from_its_saved_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import json

    from model_export import model_table

    row = {"key": "clip-vit-b32", "precision": "int8", "dim": 512, "image_px": 224, "seq": 16, "towers_mb": 160.6,
           **{c: 4.4 for c in ("text_1", "text_2", "image_1", "image_2")},
           **{f"{c}_min": 4.0 for c in ("text_1", "text_2", "image_1", "image_2")}}
    model_table.save(tmp_path / "models.json", [row], argparse.Namespace(runs=5, only=None), 0.54)
    saved = json.loads((tmp_path / "models.json").read_text())
    assert saved["runs"] == 5 and saved["rows"] == [row] and saved["command"].endswith("--runs 5")
    markdown = model_table.section(saved)
    assert "| CLIP ViT-B/32 (HF CLIPModel) (openai/clip-vit-base-patch32, FashionCLIP 2.0) | int8 | 512 | 161 MB | " \
           "4.4 (4.0) | 4.4 (4.0) |" in markdown
    assert f"Other processes used 54% of the {saved['cores']} cores" in markdown and "(in brackets)" in markdown
    assert model_table.QUALITY in markdown
    monkeypatch.setattr(model_table, "SAVED", tmp_path / "models.json")
    assert report.models_section() == [f"## {model_table.HEADING}", markdown]
    assert report.models_section(quick=True) == []
    monkeypatch.setattr(model_table, "SAVED", tmp_path / "none.json")
    assert report.models_section() == []


def test_keyword_relevance_rules() -> None:
    assert keywords.names_product("OPPO F19", "OPPOF19", "OPPO")  # run together
    assert keywords.names_product("Apple", "MacBook Pro", "Apple")  # the brand
    assert not keywords.names_product("iPhone X", "iPhone 9", "Apple")
    assert keywords.names_product("L'Oreal", "Hyaluronic Acid Serum", "L'Oreal Paris")
    titles = ["Nike Men Black Shoes", "Nike Women Red Top", "Nike Men Blue Tshirt", "Lino Perros Women Bag",
              "Lino Perros Men Belt", "Lino Perros Women Wallet", "W Women Kurta", "W Women Top", "Puma Men Cap"]
    assert keywords.fashion_brands(titles, count=5, min_products=2) == [("Nike", 3), ("Lino Perros", 3)]
    assert keywords.title_holds("United Colors of Benetton Men Shirt", "united colors of benetton")
    assert not keywords.title_holds("Leeway Men Shirt", "Lee")


def test_keywords_section_compares_off_and_on(ctx: Context, fashion_store: Path) -> None:
    from fashion_search.serve import ranking

    weight = ranking.KEYWORD_WEIGHT
    result = keywords.run_section(ctx, {"build": {"store": str(fashion_store), "products": 400}})
    assert weight == ranking.KEYWORD_WEIGHT  # the bench's patch is undone
    assert set(result["sets"]) == set(keywords.SETS) and result["configs"][0] == "off"
    assert result["stores"]["fashion"]["store"] == str(fashion_store)  # it has a keyword index: used as it is
    brands = result["sets"]["dummyjson_brands"]
    assert brands["queries"] == len(keywords.DUMMYJSON_BRAND_QUERIES) and min(brands["relevant"]) >= 1
    for s in result["sets"].values():
        for config in result["configs"]:
            assert 0.0 <= s["configs"][config]["P@5"] <= 1.0
    assert result["verdict"]["best"] in result["configs"]
    markdown = keywords.render(result, ctx)
    assert "| query set | queries | measure | off | on, w=0.5 | on, w=1 | on, w=2 |" in markdown
    assert "| (a) DummyJSON brand/model queries | 30 | P@5 capped |" in markdown
    again = keywords.run_section(ctx, {"build": {"store": str(fashion_store), "products": 400}})
    assert not again["stores"]["dummyjson"]["built"]  # this run's DummyJSON store is reused


def test_the_report_names_the_run_that_measured_each_section() -> None:
    """`--only` re-measures some sections and keeps the others' figures: each row says which run it is from."""
    run = {"finished": "2026-11-30 12:00 UTC", "commit": "abc1234", "model": "0123456789ab"}
    assert report._measured({"_run": run}) == "2026-11-30 12:00 UTC (`abc1234`, model `0123456789ab`)"
    assert report._measured({}) == "an earlier run (not recorded)"
