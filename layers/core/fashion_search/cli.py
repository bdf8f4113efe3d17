"""`fashion-search`: the command line over the same core the Lambdas and the local server use."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .build.catalog import CatalogOptions
from .build.fetch import FetchOptions
from .build.progress import Progress
from .config import default_frontend_dir, default_model_dir, models_dir
from .errors import FashionSearchError
from .index import HnswParams, HnswSq8Params, IndexParams, S3VectorsParams
from .store.base import StoreError
from .store.versions import DEAD_BUILD_SECONDS

if TYPE_CHECKING:
    from .serve.query import SearchResult
    from .serve.service import SearchService

# `build --index`: the kinds of vector index a version may hold (the default first).
INDEX_KINDS = ("hnsw", "hnsw-sq8", "s3vectors")


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _index_params(args: argparse.Namespace) -> IndexParams:
    """`build --index`'s kind, built as its flags say."""
    if args.index == "s3vectors":
        if not args.vector_bucket:
            raise ValueError("--index s3vectors needs --vector-bucket NAME, the S3 Vectors vector bucket to write to")
        return S3VectorsParams(args.vector_bucket, args.vector_index_prefix)
    if args.vector_bucket:
        raise ValueError("--vector-bucket goes with --index s3vectors")
    kind = HnswParams if args.index == "hnsw" else HnswSq8Params
    return kind(m=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search)


def _vector_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vector-bucket", metavar="NAME",
                        help="the S3 Vectors vector bucket that holds the versions' indexes (with --index s3vectors)")
    parser.add_argument("--vector-index-prefix", metavar="PREFIX", default=S3VectorsParams.prefix,
                        help="a version's S3 Vectors index is named PREFIX-<version>")


def _build(args: argparse.Namespace) -> int:
    from .build.pipeline import BuildOptions, build_index
    from .model.embedder import Embedder
    from .store import open_store

    chunks = args.chunks or args.workers or 1
    if args.workers and chunks < args.workers:
        raise ValueError(f"--chunks {chunks} leaves workers idle: give at least --workers ({args.workers}) chunks")
    options = BuildOptions(
        limit=args.limit,
        index=_index_params(args),
        fetch=FetchOptions(concurrency=args.concurrency, timeout=args.timeout, retries=args.retries,
                           image_hosts=tuple(args.image_host)),
        catalog=CatalogOptions(max_products=args.max_products, max_pages=args.max_pages,
                               image_roots=tuple(Path(d) for d in args.allow_images_under)),
        keep_versions=args.keep,
        incremental=not args.full,
        chunks=chunks,
    )
    progress = Progress(enabled=not args.quiet)
    if args.workers:  # plan here, chunks in worker processes (as the state machine runs them), merge here
        from .build.workers import build_with_workers

        summary = build_with_workers(args.catalog, args.store, args.model, options, args.workers,
                                     args.chunk_retries, progress)
    else:  # plan, the chunks one after another, merge: all in this process
        summary = asyncio.run(build_index(args.catalog, open_store(args.store), Embedder(args.model), options,
                                          progress))
    _print_json(dataclasses.asdict(summary))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from .build.pipeline import prune
    from .store import open_store

    params = S3VectorsParams(args.vector_bucket, args.vector_index_prefix) if args.vector_bucket else None
    _print_json(prune(open_store(args.store), args.keep, params, grace_seconds=args.grace_minutes * 60))
    return 0


def _model_for(store: str, model: str | None) -> Path:
    """The bundle to serve `store` with: `model` when given; else the default one, or, when the live version
    was built with another, the bundle under the models folder that has its hash (the manifest records it)."""
    from .model.bundle import BundleError, find_bundle, read_bundle
    from .store import open_store, versions

    if model is not None:
        return Path(model)
    default = default_model_dir()
    try:
        pointer = versions.read_pointer(open_store(store))
        built_with = versions.read_manifest(open_store(store), pointer.version).model if pointer else {}
    except (versions.VersionError, StoreError):
        return default  # the service says what is wrong
    wanted = built_with.get("hash")
    if not isinstance(wanted, str):
        return default
    try:
        if read_bundle(default).hash == wanted:
            return default
    except BundleError:
        pass  # no default bundle here: look for the index's own
    found = find_bundle(models_dir(), wanted)
    if found is not None:
        print(f"the index was built with model {built_with.get('name')!r}: serving it with {found}", file=sys.stderr)
        return found
    return default  # the service refuses the index, naming the model it was built with


def _service(args: argparse.Namespace, require_index: bool = True, **settings: object) -> SearchService:
    from .config import ServiceSettings
    from .serve.service import SearchService

    model = _model_for(args.store, args.model)
    service = SearchService(ServiceSettings(store=args.store, model=model, **settings))  # type: ignore[arg-type]
    if require_index and service.live is None:
        raise FashionSearchError(service.health()["problem"])
    return service


def _serve(args: argparse.Namespace) -> int:
    # Local runs print no CloudWatch metric records (EMF) unless asked to.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from .http.api import create_handler
    from .http.local_server import LocalServer

    # Like the Lambda, the server starts without an index: it answers 503 until a build publishes one.
    service = _service(args, require_index=False, allowed_origins=tuple(args.allow_origin))
    frontend = Path(args.frontend) if args.frontend else None
    server = LocalServer(create_handler(service), service.store, frontend=frontend, host=args.host, port=args.port)
    live = service.live
    index = (f"index {live.version} ({len(live.products):,} products)" if live
             else f"NO INDEX YET ({service.health()['problem']})")
    print(f"serving {server.url}/ : {index}, model {service.embedder.name}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0


def _scalar(text: str) -> str | float | bool:
    """A filter value as typed: true/false, a number, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _filter(spec: str) -> tuple[str, object]:
    """`FIELD=VALUE[,VALUE...]` (any of them) or `FIELD=LOW..HIGH` (a range; either end may be left out)."""
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{spec!r}: give FIELD=VALUE[,VALUE...] or FIELD=LOW..HIGH")
    if ".." in value:
        low, _, high = value.partition("..")
        try:
            return name, {**({"gte": float(low)} if low else {}), **({"lte": float(high)} if high else {})}
        except ValueError:
            raise argparse.ArgumentTypeError(f"{spec!r}: a range's ends must be numbers") from None
    return name, [_scalar(v) for v in value.split(",")]


def _search_fields(args: argparse.Namespace) -> dict[str, object]:
    """The command line's search fields, named as the API's (http/schemas.SearchRequest)."""
    fields: dict[str, object] = {"text": args.text, "alpha": args.alpha, "top_k": args.top_k,
                                 "collapse_duplicates": not args.keep_duplicates, "product_id": args.like,
                                 "negative_text": args.negative or None, "filters": dict(args.filter),
                                 "facets": args.facet, "offset": args.offset, "keywords": args.keywords}
    return {k: v for k, v in fields.items() if v is not None}


def _query_one(service: SearchService, fields: dict[str, object], image: str | None) -> SearchResult:
    """One search, its fields validated by the API's own request model (the same limits and messages)."""
    from .http.schemas import SearchRequest
    from .serve.query import Query

    request = SearchRequest.model_validate({k: v for k, v in fields.items() if k not in ("id", "image")})
    return service.search(Query(**request.query_fields(), image=Path(image).read_bytes() if image else None))


def _query(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .http.schemas import search_response

    service = _service(args, refresh_seconds=math.inf)
    defaults = _search_fields(args)
    if not args.queries:
        if args.text is None and args.image is None and args.like is None:
            raise FashionSearchError("give --text, --image, --like PRODUCT_ID (or a mix), or --queries FILE")
        try:
            result = _query_one(service, defaults, args.image)
        except ValidationError as exc:
            raise FashionSearchError(_validation_summary(exc)) from None
        print(search_response(result, "thumbnails/").model_dump_json())
        return 0
    failures = 0
    queries = Path(args.queries)
    for number, line in enumerate(queries.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        spec: dict = {}
        try:
            spec = json.loads(line)
            image = spec.get("image")
            image = str(queries.parent / image) if image else None  # relative to the queries file
            result = _query_one(service, {**{k: v for k, v in defaults.items() if k != "text"}, **spec}, image)
            hits = [{"product_id": h.product.product_id, "similarity_score": h.score, "relevance": h.relevance}
                    for h in result.hits]
            _print_json({"id": spec.get("id"), "good_match": result.good_match, "results": hits,
                         **({"facets": result.facets} if result.facets else {})})
        except ValidationError as exc:
            failures += 1
            _print_json({"id": spec.get("id"), "error": f"line {number}: {_validation_summary(exc)}"})
        except (FashionSearchError, OSError, ValueError, AttributeError) as exc:
            failures += 1
            _print_json({"id": spec.get("id") if isinstance(spec, dict) else None,
                         "error": f"line {number}: {exc}"})
    return 1 if failures else 0


def _validation_summary(exc: Exception) -> str:
    from pydantic import ValidationError

    assert isinstance(exc, ValidationError)
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                     for e in exc.errors(include_input=False, include_url=False)[:3])


# Offline model tooling: its options and code live in model_export and need the `export` extra
# (torch, transformers), so they are imported only when one of these commands runs.
MODEL_COMMANDS = {
    "export-clip": ("model_export.clip_export", "convert a Hugging Face CLIP checkpoint into a model bundle"),
    "export-model": ("model_export.export_model", "convert a CLIP, SigLIP or open_clip model into a model bundle"),
    "train-starter": ("model_export.starter.train", "train the offline starter model and write its bundle"),
    "calibrate": ("model_export.calibrate", "fit a bundle's relevance scores and no-close-match threshold"),
}


def _model_command(name: str, argv: Sequence[str]) -> int:
    module_name, help_text = MODEL_COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"fashion-search {name}: needs the export extra ({exc.name} is missing): "
              "pip install 'fashion-search[export]'", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"fashion-search {name}", description=help_text)
    module.configure_parser(parser)
    return _run(name, module.run, parser.parse_args(argv))


def _alpha(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fashion-search", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="index a catalog into a store as a new live version")
    build.add_argument("--catalog", required=True, help="JSONL feed path, or http(s) URL of a products API")
    build.add_argument("--store", required=True, help="folder, file://..., or s3://bucket/prefix")
    build.add_argument("--model", default=str(default_model_dir()), help="model bundle folder")
    build.add_argument("--limit", type=_positive, help="index only the first N products")
    build.add_argument("--keep", type=_positive, help="after publishing, prune all but the last N versions")
    build.add_argument("--full", action="store_true", help="re-encode every image (no reuse)")
    build.add_argument("--index", choices=INDEX_KINDS, default="hnsw",
                       help="hnsw: HNSW over float32 vectors; hnsw-sq8: over 8-bit codes, a third of the "
                            "memory for large catalogs (README, Scale); s3vectors: an Amazon S3 Vectors index in "
                            "--vector-bucket, for catalogs past one function's memory (README, Vector backends)")
    _vector_flags(build)
    build.add_argument("--hnsw-m", type=_positive, default=HnswParams.m)
    build.add_argument("--ef-construction", type=_positive, default=HnswParams.ef_construction)
    build.add_argument("--ef-search", type=_positive, default=HnswParams.ef_search)
    build.add_argument("--concurrency", type=_positive, default=FetchOptions.concurrency)
    build.add_argument("--timeout", type=float, default=FetchOptions.timeout, help="seconds per request")
    build.add_argument("--retries", type=int, default=FetchOptions.retries)
    build.add_argument("--allow-images-under", action="append", default=[], metavar="DIR",
                       help="a feed's local images may also be in DIR (repeatable; by default only the feed's "
                            "folder; a remote catalog never names local files)")
    build.add_argument("--image-host", action="append", default=[], metavar="HOST",
                       help="image URLs, redirects included, must be on HOST (repeatable; default: any host)")
    build.add_argument("--max-products", type=_positive, default=CatalogOptions.max_products,
                       help="refuse a catalog with more entries than this")
    build.add_argument("--max-pages", type=_positive, default=CatalogOptions.max_pages,
                       help="refuse an API catalog that needs more page requests than this")
    build.add_argument("--workers", type=_positive, metavar="N",
                       help="fetch and encode the chunks in N worker processes, as the state machine's Lambdas "
                            "do (default: all in this process)")
    build.add_argument("--chunks", type=_positive, metavar="M",
                       help="split the catalog into M chunks (default: one per worker, else 1)")
    build.add_argument("--chunk-retries", type=int, choices=range(0, 11), metavar="0..10", default=2,
                       help="with --workers: run a chunk whose worker failed or died again up to this many times")
    build.add_argument("--quiet", action="store_true", help="no progress on stderr")
    build.set_defaults(run=_build)

    serve = commands.add_parser("serve", help="serve the API, thumbnails and search page locally")
    serve.add_argument("--store", required=True)
    serve.add_argument("--model", help="model bundle folder (default: the one the live index was built with, "
                                        "from the models folder, else the default bundle)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    frontend = default_frontend_dir()
    serve.add_argument("--frontend", default=str(frontend) if frontend else None,
                       help="folder of the static search page (default: $FASHION_SEARCH_FRONTEND or ./frontend)")
    serve.add_argument("--allow-origin", action="append", default=[], help="CORS origin to allow (repeatable)")
    serve.set_defaults(run=_serve)

    query = commands.add_parser("query", help="search the live index from the command line")
    query.add_argument("--store", required=True)
    query.add_argument("--model", help="model bundle folder (default: as serve's)")
    query.add_argument("--text")
    query.add_argument("--image", help="path of a JPEG, PNG or WebP photo")
    query.add_argument("--alpha", type=_alpha, default=0.5, help="image weight when both are given")
    query.add_argument("--top-k", type=int, choices=range(1, 101), metavar="1..100", default=10)
    query.add_argument("--keep-duplicates", action="store_true",
                       help="let products with the same photo take several slots (collapsed by default)")
    query.add_argument("--like", metavar="PRODUCT_ID", help="more like this product (its photo; with --text, a blend)")
    query.add_argument("--negative", action="append", default=[], metavar="TERM",
                       help="push products like TERM down (repeatable)")
    query.add_argument("--filter", action="append", default=[], type=_filter, metavar="FIELD=VALUE",
                       help="FIELD=VALUE[,VALUE...] (any of them) or FIELD=LOW..HIGH; in_stock=true (repeatable)")
    query.add_argument("--facet", action="append", default=[], metavar="FIELD",
                       help="count FIELD's values over the candidates (repeatable)")
    query.add_argument("--offset", type=int, default=0, help="results to skip (paging)")
    query.add_argument("--keywords", action=argparse.BooleanOptionalAction, default=None,
                       help="the keyword (BM25) signal; default: on")
    query.add_argument("--queries", help='JSONL batch: one search per line, the API\'s fields ({"id", "text", '
                                         '"image": a path, "filters", ...}); the flags above are defaults')
    query.set_defaults(run=_query)

    for name, (_, help_text) in MODEL_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)  # parsed by _model_command

    prune = commands.add_parser("prune", help="delete all but the last N index versions, and dead builds' leftovers")
    prune.add_argument("--store", required=True)
    prune.add_argument("--keep", type=_positive, required=True)
    prune.add_argument("--grace-minutes", type=float, default=DEAD_BUILD_SECONDS / 60,
                       help="incomplete versions, staging folders and temporary files untouched for longer are "
                            "a dead build's and are deleted (younger ones may be a build in progress)")
    # A pruned version's S3 Vectors index goes too: its manifest names it; a dead build's is looked for in
    # --vector-bucket.
    _vector_flags(prune)
    prune.set_defaults(run=_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MODEL_COMMANDS:
        return _model_command(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    return _run(args.command, args.run, args)


def _run(command: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; what the user can fix is one line on stderr (exit 2), never a traceback."""
    try:
        return run(args)
    except (FashionSearchError, StoreError, OSError, ValueError) as exc:
        print(f"fashion-search {command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fashion-search {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
