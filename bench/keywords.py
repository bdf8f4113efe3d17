"""Keyword signal: do the query's words (`Query.keywords`, on by default) help shoppers, and at what weight?

"On" means two lexical signals (serve/ranking.py): BM25 over titles, brands and categories (index/keywords.py,
tantivy), fused with the vector ranking by reciprocal rank at `serve.ranking.KEYWORD_WEIGHT`; and the catalog
values the text names (serve/attributes.py: "navy blue shirts for men" names colour, category and gender
values), whose nearest holders join the candidates and gain up to `serve.ranking.ATTRIBUTE_BONUS` standard
deviations of score. "Off" is the vector ranking alone (neither).

Every query goes through `SearchService.search(Query(text=..., keywords=...))` over an index version built
by `fashion-search build` with the starter model (so it holds the keyword index and the filter columns the
named values are read from): the DummyJSON legacy catalog (100 products) and the fashion feed as the build
section indexed it (its embeddings reused, the version rebuilt when the build section's predates keyword
indexes). Configurations: keywords off, and on with `KEYWORD_WEIGHT` 0.5, 1 and 2 (monkeypatched here; the
service's default is on, 1); the named-values boost is on, at `ATTRIBUTE_BONUS`, in every "on" configuration.

Query sets, each with its relevance rule, decided from the catalog's fields, never from results:
- (a) DummyJSON brand and model queries ("iPhone", "Huawei P30", "OPPO F19"): relevant = every word of the
  query is a word of the product's title or brand, or the query's letters and digits run together are in
  the brand's and title's run together ("OPPO F19" finds "OPPOF19");
- (b) fashion brands: the most frequent brands among the indexed titles (titles start with the brand; a
  brand is its first word, extended while one next word follows it in at least 75 % of its titles, gender
  words excepted: "United Colors of Benetton", "Lino Perros"); relevant = the title holds the brand's words;
- (c) shopper queries that must not get worse: DummyJSON category queries
  (model_export.other_catalogs.DUMMYJSON_QUERIES, relevant = the category) and the fashion attribute
  queries of the time split's held-out products ("navy blue shirts for men", model_export.evaluate,
  relevant = same gender, colour and article type; queries with at least 10 relevant products).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.build import feed_rows
from bench.common import Context, log, ms, percentiles, table

WEIGHTS = (0.5, 1.0, 2.0)
# (name, keywords on, KEYWORD_WEIGHT)
CONFIGS: tuple[tuple[str, bool, float | None], ...] = (("off", False, None),
                                                       *((f"on, w={w:g}", True, w) for w in WEIGHTS))
# A configuration may cost the shopper-query sets (c) at most this much of any P@k against "off".
SHOPPER_TOLERANCE = 0.01
BRAND_COUNT = 30
# Written by reading the catalog's titles and brands (brands, model names, brand + model).
DUMMYJSON_BRAND_QUERIES = (
    "Apple", "iPhone", "iPhone 9", "iPhone X", "Samsung", "Samsung Universe 9", "Samsung Galaxy Book", "Galaxy",
    "Huawei", "Huawei P30", "OPPO", "OPPO F19", "MacBook", "MacBook Pro", "Microsoft Surface", "Surface Laptop 4",
    "Infinix", "Infinix INBOOK", "HP Pavilion", "L'Oreal", "LouisWill", "SKMEI", "Naviforce", "Copenhagen Luxe",
    "Ghazi Fabric", "IELGY", "Eastern Watches", "Royal Mirage", "Fog Scent Xpressio", "Qualcomm",
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
GENDER_WORDS = frozenset({"men", "women", "boys", "girls", "boy", "girl", "kids", "kid", "unisex", "mens", "womens",
                          "men's", "women's", "boys'", "girls'", "infant", "infants"})
SETS = {  # name -> (label, role)
    "dummyjson_brands": ("(a) DummyJSON brand/model queries", "brand"),
    "fashion_brands": ("(b) fashion feed brand names", "brand"),
    "dummyjson_categories": ("(c) DummyJSON category queries", "shopper"),
    "fashion_attributes": ("(c) fashion attribute queries", "shopper"),
}


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def squeezed(text: str) -> str:
    return "".join(words(text))


def names_product(query: str, title: str, brand: str | None) -> bool:
    """Relevance of a brand/model query (a): each of its words is a word of the title or brand, or its letters
    and digits run together are in the brand's and title's run together."""
    held = set(words(f"{title} {brand or ''}"))
    return all(w in held for w in words(query)) or squeezed(query) in squeezed(f"{brand or ''} {title}")


def fashion_brands(titles: Sequence[str], count: int = BRAND_COUNT, min_products: int = 5) -> list[tuple[str, int]]:
    """(brand as most titles spell it, titles holding it) for the `count` most frequent brands of the titles."""
    split = [t.split() for t in titles]
    folded = [[w.casefold() for w in t] for t in split]
    out: list[tuple[str, int]] = []
    for first, _ in Counter(t[0] for t in folded if t).most_common():
        if len(out) >= count:
            break
        prefix = [first]
        while True:
            starts = [t for t in folded if t[: len(prefix)] == prefix and len(t) > len(prefix)]
            if not starts:
                break
            word, n = Counter(t[len(prefix)] for t in starts).most_common(1)[0]
            if n < 0.75 * len(starts) or word in GENDER_WORDS:
                break
            prefix.append(word)
        if len(squeezed(" ".join(prefix))) < 2 or any(squeezed(" ".join(prefix)) == squeezed(b) for b, _ in out):
            continue  # a one-letter "brand" is no query
        spelled = Counter(" ".join(s[: len(prefix)]) for s, f in zip(split, folded, strict=True)
                          if f[: len(prefix)] == prefix).most_common(1)[0][0]
        holding = sum(title_holds(t, spelled) for t in titles)
        if holding >= min_products:
            out.append((spelled, holding))
    return out


def title_holds(title: str, brand: str) -> bool:
    """The title holds the brand's words, in order, as whole words."""
    t, b = words(title), words(brand)
    return any(t[i : i + len(b)] == b for i in range(len(t) - len(b) + 1))


# -- index versions with a keyword index ------------------------------------------------------
def _live_manifest(store_path: Path) -> Any | None:
    from fashion_search.store import open_store, versions

    if not (store_path / "current.json").is_file():
        return None
    store = open_store(str(store_path))
    pointer = versions.read_pointer(store)
    return None if pointer is None else versions.read_manifest(store, pointer.version)


def _has_keywords(manifest: Any | None, model_hash: str) -> bool:
    """The version has a keyword index and the columns the named values are read from, for this model."""
    from fashion_search.index.columns import FILE as COLUMNS
    from fashion_search.index.keywords import FILE

    return manifest is not None and {FILE, COLUMNS} <= set(manifest.files) and manifest.model.get("hash") == model_hash


def dummyjson_store(ctx: Context, model_hash: str, feed: Path) -> dict[str, Any]:
    """A store of the DummyJSON legacy feed with a keyword index: this run's work folder's, else built now."""
    from bench.build import cli_build

    store = ctx.work / "keywords" / "dummyjson-store"
    manifest = _live_manifest(store)
    if _has_keywords(manifest, model_hash) and manifest.catalog.get("source") == str(feed):
        return {"store": str(store), "version": manifest.version, "built": False}
    shutil.rmtree(store, ignore_errors=True)
    log(f"keywords: building {feed} into {store}")
    summary = cli_build(feed, store, ctx.model)["summary"]
    return {"store": str(store), "version": summary["version"], "built": True}


def fashion_store(ctx: Context, results: dict[str, Any], model_hash: str) -> dict[str, Any]:
    """The build section's store when its live version has a keyword index; else a copy of that version rebuilt
    by `fashion-search build` (every embedding reused) in this section's work folder, kept for later runs."""
    from bench.build import cli_build

    source = Path(results["build"]["store"])
    manifest = _live_manifest(source)
    assert manifest is not None, f"the build section's store {source} has no live version"
    if _has_keywords(manifest, model_hash):
        return {"store": str(source), "version": manifest.version, "built": False, "from": manifest.version}
    store = ctx.work / "keywords" / "fashion-store"
    marker = store.parent / "fashion-store.json"
    ours = _live_manifest(store)
    if _has_keywords(ours, model_hash) and marker.is_file() and json.loads(marker.read_text()) == manifest.version:
        return {"store": str(store), "version": ours.version, "built": False, "from": manifest.version}
    shutil.rmtree(store, ignore_errors=True)
    (store / "versions").mkdir(parents=True)
    shutil.copytree(source / "versions" / manifest.version, store / "versions" / manifest.version)
    shutil.copy2(source / "current.json", store / "current.json")
    log(f"keywords: rebuilding the build section's version {manifest.version} with a keyword index "
        "(embeddings reused)")
    summary = cli_build(Path(manifest.catalog["source"]), store, ctx.model)["summary"]
    marker.write_text(json.dumps(manifest.version))
    return {"store": str(store), "version": summary["version"], "built": True, "from": manifest.version,
            "reused_embeddings": summary["reused_embeddings"], "encoded": summary["encoded"]}


# -- query sets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuerySet:
    name: str
    catalog: str  # "dummyjson" or "fashion": which service answers
    texts: list[str]
    relevant: list[frozenset[str]]  # product ids, per query
    ks: tuple[int, ...]



def dummyjson_sets(feed: Path) -> list[QuerySet]:
    from model_export.other_catalogs import DUMMYJSON_QUERIES

    rows = feed_rows(feed)
    brands = [frozenset(str(r["id"]) for r in rows if names_product(q, r["title"], r.get("brand")))
              for q in DUMMYJSON_BRAND_QUERIES]
    categories = [frozenset(str(r["id"]) for r in rows if r["category"] in cats) for cats in DUMMYJSON_QUERIES.values()]
    return [QuerySet("dummyjson_brands", "dummyjson", list(DUMMYJSON_BRAND_QUERIES), brands, (5, 10)),
            QuerySet("dummyjson_categories", "dummyjson", list(DUMMYJSON_QUERIES), categories, (5, 10))]


def fashion_sets(feed: Path, indexed: int, brand_count: int = BRAND_COUNT) -> list[QuerySet]:
    """Brand queries over the indexed products (the feed's first `indexed`), and the time split's attribute
    queries with at least 10 relevant products among them."""
    from model_export.evaluate import AttributeQueries
    from model_export.starter.data import load_products, time_split_indices

    rows = feed_rows(feed, indexed)
    titles = [r["title"] for r in rows]
    brands = fashion_brands(titles, brand_count)
    brand_relevant = [frozenset(str(r["id"]) for r in rows if title_holds(r["title"], b)) for b, _ in brands]
    products = load_products(feed)[:indexed]
    queries = AttributeQueries.from_products([products[i] for i in time_split_indices(products)[1]])
    by_triple: dict[tuple[str, str, str], set[str]] = {}
    for p in products:
        by_triple.setdefault(p.attributes, set()).add(p.id)
    attribute = [(text, frozenset(by_triple.get(triple, ()))) for triple, text in
                 zip(queries.attributes, queries.texts, strict=True) if len(by_triple.get(triple, ())) >= 10]
    return [QuerySet("fashion_brands", "fashion", [b for b, _ in brands], brand_relevant, (5, 10)),
            QuerySet("fashion_attributes", "fashion", [t for t, _ in attribute], [r for _, r in attribute], (5, 10))]


# -- measurement ------------------------------------------------------------------------------
@contextmanager
def keyword_weight(weight: float | None) -> Iterator[None]:
    """serve.ranking.KEYWORD_WEIGHT set for the block (rank() reads it at call time)."""
    from fashion_search.serve import ranking

    saved = ranking.KEYWORD_WEIGHT
    ranking.KEYWORD_WEIGHT = saved if weight is None else weight
    try:
        yield
    finally:
        ranking.KEYWORD_WEIGHT = saved


def evaluate(search: Callable[[str, bool], tuple[list[str], float]], qs: QuerySet) -> dict[str, Any]:
    """P@k (hits / k) and capped P@k (hits / min(k, relevant)) of every configuration over one query set;
    `search(text, keywords)` answers (product ids best first, service ms). Each query goes through every
    configuration in turn (a new random order each), so other work on the machine weighs on their times alike."""
    depth = max(qs.ks)
    per_query = {name: {f"P@{k}{c}": [] for k in qs.ks for c in ("", "_capped")} for name, _, _ in CONFIGS}
    times: dict[str, list[float]] = {name: [] for name, _, _ in CONFIGS}
    order = np.random.default_rng(len(qs.texts))
    for text, relevant in zip(qs.texts, qs.relevant, strict=True):
        for name, on, weight in (CONFIGS[c] for c in order.permutation(len(CONFIGS))):
            with keyword_weight(weight):
                found, query_ms = search(text, on)
            times[name].append(query_ms)
            for k in qs.ks:
                hits = sum(pid in relevant for pid in found[:k])
                per_query[name][f"P@{k}"].append(hits / k)
                per_query[name][f"P@{k}_capped"].append(hits / min(k, len(relevant)) if relevant else float("nan"))
    out = {name: {**{m: float(np.nanmean(v)) for m, v in per_query[name].items()}, "per_query": per_query[name],
                  "service_ms": percentiles(times[name])} for name, _, _ in CONFIGS}
    return {"queries": len(qs.texts), "depth": depth, "texts": qs.texts,
            "relevant": [len(r) for r in qs.relevant], "configs": out}


def service_search(service: Any, depth: int) -> Callable[[str, bool], tuple[list[str], float]]:
    from fashion_search.serve.query import Query

    def search(text: str, keywords: bool) -> tuple[list[str], float]:
        result = service.search(Query(text=text, top_k=depth, keywords=keywords))
        return [h.product.product_id for h in result.hits], result.query_ms

    return search


def run_section(ctx: Context, results: dict[str, Any]) -> dict[str, Any]:
    from fashion_search.config import ServiceSettings
    from fashion_search.model.embedder import Embedder
    from fashion_search.serve import ranking, service
    from fashion_search.serve.service import SearchService
    from model_export.other_catalogs import DUMMYJSON_FEED

    embedder = Embedder(ctx.model)
    stores = {"dummyjson": dummyjson_store(ctx, embedder.model_hash, DUMMYJSON_FEED.resolve()),
              "fashion": fashion_store(ctx, results, embedder.model_hash)}
    sets = dummyjson_sets(DUMMYJSON_FEED) + fashion_sets(ctx.feed, results["build"]["products"],
                                                         ctx.size(BRAND_COUNT, 10))
    out: dict[str, Any] = {"stores": stores, "default": {"keywords": service.KEYWORDS_BY_DEFAULT,
                                                         "weight": ranking.KEYWORD_WEIGHT,
                                                         "attribute_bonus": ranking.ATTRIBUTE_BONUS},
                           "configs": [name for name, _, _ in CONFIGS], "sets": {}}
    for catalog, info in stores.items():
        svc = SearchService(ServiceSettings(store=info["store"], model=ctx.model, refresh_seconds=1e9), embedder)
        assert svc.live is not None and svc.live.keywords is not None, f"{info['store']}: no keyword index"
        assert svc.live.attributes is not None, f"{info['store']}: no columns, so no named values"
        info["products"] = len(svc.live.products)
        for qs in (s for s in sets if s.catalog == catalog):
            search = service_search(svc, max(qs.ks))
            for text in qs.texts:  # encode every query once: the timed runs below read the embedding cache
                search(text, False)
            log(f"keywords: {SETS[qs.name][0]}: {len(qs.texts)} queries × {len(CONFIGS)} configurations")
            out["sets"][qs.name] = evaluate(search, qs)
    out["verdict"] = decide(out)
    return out


def decide(result: dict[str, Any], tolerance: float = SHOPPER_TOLERANCE) -> dict[str, Any]:
    """The best configuration: the highest mean brand-set P@5 among those that cost no shopper set more than
    `tolerance` of any P@k against "off"; "off" when none gains on brands."""
    sets = result["sets"]
    brand = [n for n in sets if SETS[n][1] == "brand"]
    shopper = [n for n in sets if SETS[n][1] == "shopper"]

    def brand_p5(config: str) -> float:
        return float(np.mean([sets[n]["configs"][config]["P@5"] for n in brand]))

    rows = {}
    for config in result["configs"]:
        changes = {f"{SETS[n][0]}, {m}": sets[n]["configs"][config][m] - sets[n]["configs"]["off"][m]
                   for n in shopper for m in ("P@5", "P@10")}
        worst = min(changes, key=changes.__getitem__) if changes else None
        rows[config] = {"brand_P@5": brand_p5(config), "brand_gain": brand_p5(config) - brand_p5("off"),
                        "worst_shopper_change": changes[worst] if worst else 0.0, "worst_shopper": worst,
                        "qualifies": (changes[worst] if worst else 0.0) >= -tolerance}
    candidates = [c for c in result["configs"] if c != "off" and rows[c]["qualifies"] and rows[c]["brand_gain"] > 0]
    weight = {name: w for name, _, w in CONFIGS}
    # Ties go to the smaller cost to shoppers, then to the weight nearest 1.
    best = max(candidates, key=lambda c: (rows[c]["brand_P@5"], rows[c]["worst_shopper_change"],
                                          -abs((weight[c] or 1.0) - 1.0)), default="off")
    default = result["default"]
    default_name = f"on, w={default['weight']:g}" if default["keywords"] else "off"
    return {"best": best, "by_config": rows, "tolerance": tolerance, "today": default_name,
            "today_is_best": default_name == best}


# -- report -----------------------------------------------------------------------------------
def _signed_ms(value: float) -> str:
    return ("+" if value >= 0 else "−") + ms(abs(value))


def headline(result: dict[str, Any]) -> list[list[str]]:
    """The report's headline rows: today's default against keywords off, on brand and on shopper queries."""
    verdict = result["verdict"]
    today, off = verdict["by_config"].get(verdict["today"]), verdict["by_config"]["off"]
    if today is None or verdict["today"] == "off":
        return []
    change = today["worst_shopper_change"]
    return [[f"keyword signal ({verdict['today']}, today's default): brand/model queries, mean P@5 of "
             f"{', '.join(SETS[n][0].split(' ', 1)[0] for n in result['sets'] if SETS[n][1] == 'brand')}",
             f"{today['brand_P@5']:.3f}", "–", f"{today['brand_gain']:+.3f}", f"keywords off ({off['brand_P@5']:.3f})"],
            [f"keyword signal ({verdict['today']}): shopper queries (c), worst change of P@5/P@10",
             f"{change:+.3f}", "–", f"the figures say: {verdict['best']}",
             f"keywords off (worst: {today['worst_shopper']})"]]


def render(result: dict[str, Any], ctx: Context) -> str:
    configs, sets, verdict = result["configs"], result["sets"], result["verdict"]
    stores = result["stores"]
    parts = [
        "Through `SearchService.search(Query(text=..., keywords=off/on))`. **On** is both lexical signals: BM25 "
        "over title, brand and category (tantivy) fused with the vector ranking by reciprocal rank at "
        "`KEYWORD_WEIGHT` (text only: alpha 0, so the keyword rank weighs `KEYWORD_WEIGHT` in full), and the "
        "catalog values the text names (`serve/attributes.py`: colour, category, gender...), whose holders gain up "
        f"to `ATTRIBUTE_BONUS` = {result['default'].get('attribute_bonus', '?')} standard deviations of score "
        "whatever the weight; **off** is the vector ranking alone. Candidates: 256 vector neighbours + the 256 "
        "nearest holders of the named values + 256 BM25 matches, duplicates collapsed. Index versions built by "
        "`fashion-search build` with the starter model: DummyJSON legacy "
        f"({stores['dummyjson'].get('products', '?')} products) and the fashion feed as the build section indexed "
        f"it ({stores['fashion'].get('products', '?'):,} products"
        + (", rebuilt here with a keyword index, every embedding reused" if stores["fashion"].get("from") !=
           stores["fashion"]["version"] else "") + "). P@k = relevant among the top k / k; capped = relevant / "
        "min(k, relevant products) (a model name has one or two products). Relevance comes from the catalog's "
        "fields (module docstring of `bench/keywords.py`).",
    ]
    headers = ["query set", "queries", "measure", *configs]
    rows = []
    for name, s in sets.items():
        label = SETS[name][0]
        measures = ["P@5", "P@5_capped"] if SETS[name][1] == "brand" else ["P@5", "P@10"]
        for m in measures:
            values = [s["configs"][c][m] for c in configs]
            best = max(values)
            rows.append([label, s["queries"], m.replace("_capped", " capped"),
                         *(f"**{v:.3f}**" if v == best and v > min(values) else f"{v:.3f}" for v in values)])
    parts += ["**P@k with the keyword signal off and on** (bold: the best of a row)",
              table(headers, rows, right=tuple(range(1, len(headers))))]
    times = []
    for name, s in sets.items():
        off = s["configs"]["off"]["service_ms"]["p50"]
        times.append([SETS[name][0], *(f"{ms(s['configs'][c]['service_ms']['p50'])} / "
                                       f"{ms(s['configs'][c]['service_ms']['p95'])}" for c in configs),
                      _signed_ms(s["configs"][configs[2]]["service_ms"]["p50"] - off) if len(configs) > 2 else "–"])
    parts += ["Service time per query, p50 / p95 ms (`SearchResult.query_ms`; query embeddings cached, so ranking "
              "and keyword search only; configurations interleaved query by query)",
              table(["query set", *configs, f"{configs[2]} − off, p50 ms" if len(configs) > 2 else "–"], times,
                    right=tuple(range(1, len(configs) + 2)))]
    changed = []
    brands = sets.get("dummyjson_brands")
    if brands:
        on = verdict["today"] if verdict["today"] in configs else configs[-1]
        for i, text in enumerate(brands["texts"]):
            before = brands["configs"]["off"]["per_query"]["P@5"][i]
            after = brands["configs"][on]["per_query"]["P@5"][i]
            if after != before:
                changed.append(f"{text} {before:.1f}→{after:.1f}")
        parts.append(f"DummyJSON brand/model queries whose P@5 changes from off to {on}: "
                     + (", ".join(changed) if changed else "none") + ".")
    rows = []
    for config in configs:
        r = verdict["by_config"][config]
        change = "–" if config == "off" else f"{r['worst_shopper_change']:+.3f}" + (
            f" ({r['worst_shopper']})" if r["worst_shopper"] else "")
        rows.append([config, f"{r['brand_P@5']:.3f}", "–" if config == "off" else f"{r['brand_gain']:+.3f}", change,
                     "–" if config == "off" else "yes" if r["qualifies"] else "no"])
    parts += [table(["configuration", "brand sets' mean P@5", "vs off", "worst shopper-set change (P@5 or P@10)",
                     f"shoppers within {verdict['tolerance']}"], rows, right=(1, 2, 3))]
    if verdict["today_is_best"]:
        parts.append(f"**Default: {verdict['best']}** — the best brand/model figures at no cost to shopper queries "
                     f"beyond {verdict['tolerance']}; it is today's default (`KEYWORDS_BY_DEFAULT`, "
                     "`KEYWORD_WEIGHT`).")
    else:
        parts.append(f"**The figures say: {verdict['best']}**; today's default is {verdict['today']} "
                     "(`serve.service.KEYWORDS_BY_DEFAULT`, `serve.ranking.KEYWORD_WEIGHT`).")
    return "\n\n".join(parts)
