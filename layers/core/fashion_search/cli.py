"""`fashion-search`: the command line over the same core the Lambdas and the local server use."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence

from .bundle import default_bundle_dir
from .errors import FashionSearchError
from .fetch import FetchOptions
from .progress import Progress
from .vector_index import HnswParams


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _build(args: argparse.Namespace) -> int:
    from .builder import BuildOptions, build_index
    from .embedder import Embedder
    from .store import open_store

    options = BuildOptions(
        limit=args.limit,
        hnsw=HnswParams(m=args.hnsw_m, ef_construction=args.ef_construction, ef_search=args.ef_search),
        fetch=FetchOptions(concurrency=args.concurrency, timeout=args.timeout, retries=args.retries),
        keep_versions=args.keep,
        incremental=not args.full,
    )
    embedder = Embedder(args.model)
    summary = asyncio.run(build_index(args.catalog, open_store(args.store), embedder, options,
                                      Progress(enabled=not args.quiet)))
    _print_json(dataclasses.asdict(summary))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from .store import open_store
    from .versions import prune

    _print_json(prune(open_store(args.store), args.keep))
    return 0


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
    build.add_argument("--model", default=str(default_bundle_dir()), help="model bundle folder")
    build.add_argument("--limit", type=_positive, help="index only the first N products")
    build.add_argument("--keep", type=_positive, help="after publishing, prune all but the last N versions")
    build.add_argument("--full", action="store_true", help="re-encode every image (no reuse)")
    build.add_argument("--hnsw-m", type=_positive, default=HnswParams.m)
    build.add_argument("--ef-construction", type=_positive, default=HnswParams.ef_construction)
    build.add_argument("--ef-search", type=_positive, default=HnswParams.ef_search)
    build.add_argument("--concurrency", type=_positive, default=FetchOptions.concurrency)
    build.add_argument("--timeout", type=float, default=FetchOptions.timeout, help="seconds per request")
    build.add_argument("--retries", type=int, default=FetchOptions.retries)
    build.add_argument("--quiet", action="store_true", help="no progress on stderr")
    build.set_defaults(run=_build)

    prune = commands.add_parser("prune", help="delete all but the last N index versions")
    prune.add_argument("--store", required=True)
    prune.add_argument("--keep", type=_positive, required=True)
    prune.set_defaults(run=_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (FashionSearchError, FileNotFoundError, ValueError) as exc:
        print(f"fashion-search {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fashion-search {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
