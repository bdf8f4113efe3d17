"""The core package's import rules (docs/architecture.md), read from the source with `ast`: every import
counts, at module level, inside a function, or under `if TYPE_CHECKING:`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "fashion_search"
ROOT = Path(__file__).resolve().parents[1] / "layers" / "core" / PACKAGE

# The package's rooms: its subpackages and its top-level modules ("__init__" is the package's own, __version__).
ROOMS = {"model", "store", "index", "build", "serve", "http", "cli", "config", "errors", "records", "__init__"}

# What each room may import besides itself: a room, or one module of a room ("model.images"). Anything else,
# of ours, is a violation; third-party and standard-library imports are not checked.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "records": set(),  # the product record an index version stores: build writes it, serve reads it
    "__init__": set(),
    "model": {"errors"},
    "store": {"errors"},
    "index": {"errors"},
    "config": {"errors"},  # the settings of every entry point; it imports no room
    "build": {"model", "index", "store", "records", "errors"},
    "serve": {"model", "index", "store", "records", "config", "errors"},
    # The image errors and limits it answers with (413, 415) and the package's __version__ (OpenAPI document).
    "http": {"serve", "records", "model.images", "errors", "__init__"},
    "cli": {"build", "serve", "http", "model", "index", "store", "records", "config", "errors"},  # the composition root
}


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    """`fashion_search.serve.service` -> "serve"; `fashion_search.cli` -> "cli"; the package itself -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, what) for every import of ours in `source`, `module`'s code: what = the imported module's name
    under the package ("serve.query"), or a name the package itself defines ("__init__")."""
    found: list[tuple[int, str]] = []
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == PACKAGE:  # `from fashion_search import x`: x is a room, or a name of the package's own
                targets = [f"{PACKAGE}.{a.name}" if a.name in ROOMS else f"{PACKAGE}.__init__" for a in node.names]
            else:
                targets = [f"{base}.{a.name}" for a in node.names]  # a submodule, or a name in module `base`
        else:
            continue
        found += [(node.lineno, t.removeprefix(f"{PACKAGE}.")) for t in targets if t.startswith(f"{PACKAGE}.")]
    return found


def _allowed(room: str, target: str) -> bool:
    if target.split(".")[0] == room:
        return True
    return any(target == rule or target.startswith(rule + ".") for rule in ALLOWED.get(room, ()))


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    room = room_of(module)
    if room not in ROOMS:
        return [f"{module}: in no room of docs/architecture.md (add it to one, or add a room and its rules)"]
    return [f"{module}:{line} imports {PACKAGE}.{target}: {room} may import only {sorted(ALLOWED[room]) or 'nothing'}"
            for line, target in imports(module, source, is_package) if not _allowed(room, target)]


def package_files() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_the_package_keeps_its_import_rules() -> None:
    found = [v for path in package_files()
             for v in violations(module_name(path), path.read_text(), path.name == "__init__.py")]
    assert found == []


def test_the_rules_see_the_package_s_real_imports() -> None:
    """The checker reads what is there (relative imports resolved): the arrows of the two paths are all found."""
    edges = {(room_of(module_name(path)), target.split(".")[0]) for path in package_files()
             for _, target in imports(module_name(path), path.read_text(), path.name == "__init__.py")}
    assert {("build", "model"), ("build", "index"), ("build", "store"), ("serve", "model"), ("serve", "index"),
            ("serve", "store"), ("serve", "config"), ("http", "serve"), ("http", "model"), ("http", "__init__"),
            ("cli", "build"), ("cli", "http"), ("build", "records"), ("serve", "records"), ("store", "errors"),
            ("index", "errors"), ("model", "errors")} <= edges
    assert {room_of(module_name(path)) for path in package_files()} == ROOMS


@pytest.mark.parametrize(("module", "source"), [
    ("fashion_search.build.pipeline", "from ..serve.service import SearchService"),
    ("fashion_search.build.catalog.feed", "from ...serve import fusion"),
    ("fashion_search.serve.service", "from fashion_search.build import pipeline"),
    ("fashion_search.serve.live_index", "if TYPE_CHECKING:\n    from ..build.pipeline import BuildOptions"),
    ("fashion_search.serve.service", "def f():\n    from ..http.api import create_handler"),
    ("fashion_search.http.api", "from ..index import open_index"),
    ("fashion_search.http.local_server", "from ..store import KeyNotFound"),
    ("fashion_search.http.api", "from ..model.embedder import Embedder"),
    ("fashion_search.http.schemas", "import fashion_search.build.pipeline"),
    ("fashion_search.index.faiss_hnsw", "from ..store import versions"),
    ("fashion_search.index", "from .. import config"),
    ("fashion_search.store.versions", "from ..model.bundle import BundleSpec"),
    ("fashion_search.store.s3", "def f():\n    import fashion_search.index"),
    ("fashion_search.model.embedder", "from fashion_search import __version__"),
    ("fashion_search.errors", "from .config import Settings"),
    ("fashion_search.config", "from .serve.service import SearchService"),
])
def test_a_violation_is_caught(module: str, source: str) -> None:
    assert len(violations(module, source, is_package=module == "fashion_search.index")) == 1


@pytest.mark.parametrize(("module", "source"), [
    ("fashion_search.http.api", "from ..model.images import ImageError\nfrom .. import __version__"),
    ("fashion_search.http.api", "from ..serve.query import Query\nfrom . import schemas"),
    ("fashion_search.build.catalog.api", "from ...errors import FashionSearchError\nfrom ..fetch import Fetcher"),
    ("fashion_search.store", "from .base import KeyNotFound\nfrom ..errors import FashionSearchError"),
    ("fashion_search.cli", "from .build.pipeline import build_index\nfrom .http.api import create_handler"),
    ("fashion_search.serve.service", "import numpy as np\nfrom http import HTTPStatus"),
])
def test_what_the_rules_allow_passes(module: str, source: str) -> None:
    assert violations(module, source, is_package=module == "fashion_search.store") == []


def test_a_module_outside_every_room_is_a_violation() -> None:
    assert violations("fashion_search.helpers", "import json") != []
