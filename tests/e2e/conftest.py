"""The search page in real headless Chromium (Debian's, driven by Playwright) against `fashion-search
serve` over a real index: the console scripts run as subprocesses, as a user runs them.

The catalog is the first 1,500 products of the fashion feed (no prices) plus DummyJSON's fashion
categories (with prices, brands, ratings and descriptions); the model is the tiny random bundle,
whose image tower finds a product's own photo first.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import FASHION_FEED

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CLI = str(Path(sys.executable).parent / "fashion-search")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DUMMYJSON_FEED = FASHION_FEED.parents[1] / "dummyjson" / "legacy_v1" / "feed.jsonl"
DUMMYJSON_FASHION = {"tops", "womens-dresses", "womens-shoes", "mens-shirts", "mens-shoes", "mens-watches",
                     "womens-watches", "womens-bags", "womens-jewellery", "sunglasses"}
FASHION_PRODUCTS = 1500
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


def _products(feed: Path) -> Iterator[dict]:
    """The feed's products with absolute image paths (relative ones resolve against the feed's folder)."""
    for line in feed.read_text().splitlines():
        product = json.loads(line)
        product["image"] = str(feed.parent / product["image"])
        product.pop("images", None)
        yield product


@dataclass(frozen=True)
class Catalog:
    feed: Path
    products: dict[str, dict]  # by id, images absolute


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    fashion = [p for _, p in zip(range(FASHION_PRODUCTS), _products(FASHION_FEED), strict=False)]
    priced = [p for p in _products(DUMMYJSON_FEED) if p["category"] in DUMMYJSON_FASHION]
    feed = tmp_path_factory.mktemp("e2e-catalog") / "feed.jsonl"
    feed.write_text("".join(json.dumps(p) + "\n" for p in fashion + priced))
    return Catalog(feed, {p["id"]: p for p in fashion + priced})


@pytest.fixture(scope="session")
def store(catalog: Catalog, tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e-store")
    built = subprocess.run([CLI, "build", "--catalog", str(catalog.feed), "--store", str(folder),
                            "--allow-images-under", str(FASHION_FEED.parents[1]),
                            "--model", str(tiny_bundle), "--quiet"], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["products_indexed"] == len(catalog.products)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fashion-search serve` in a subprocess, serving the repository's frontend/."""

    def __init__(self, store: Path, model: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [CLI, "serve", "--store", str(store), "--model", str(model), "--host", "127.0.0.1", "--port", port,
             "--frontend", str(REPO / "frontend")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"fashion-search serve exited: {self.process.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("fashion-search serve did not answer /api/v1/health within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def server(store: Path, tiny_bundle: Path) -> Iterator[Server]:
    server = Server(store, tiny_bundle)
    yield server
    server.stop()


@pytest.fixture
def start_server(store: Path, tiny_bundle: Path) -> Iterator[Callable[[], Server]]:
    """Another server over the same store, for tests that stop it; stopped at the end in any case."""
    started: list[Server] = []

    def start() -> Server:
        started.append(Server(store, tiny_bundle))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# Module-scoped: Playwright's sync API runs an asyncio loop in this thread for as long as it is
# started, and later tests that call asyncio.run() must not find it running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed: run `make test` (or apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh desktop-sized page; fails the test if the page's scripts threw."""
    # Playwright's wait_for_function evaluates its predicate as a string in the page, which the page's CSP
    # (no 'unsafe-eval') forbids: the tests bypass it; tests/test_hostile_http.py runs the page under it.
    context = browser.new_context(viewport=DESKTOP, locale="en-US", bypass_csp=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """Saves a screenshot (of the whole page, or of the viewport when a dialog is open), once its
    images have loaded, as test-artifacts/screenshots/<name>.png."""

    def take(page: Page, name: str) -> Path:
        page.wait_for_function("[...document.images].every((image) => image.complete)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=not page.locator("dialog[open]").count())
        return path

    return take
