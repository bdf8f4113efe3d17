"""The page with the shipped starter model: the slider blends a photo with a modifier, and a search
with no close match says so. Real Chromium, `fashion-search serve`, an index of 800 fashion products."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import CLI, FASHION_FEED, REPO, Server
from tests.e2e.test_search_page import TEXT_LABEL, Screenshot, cards, ids, one_search

pytestmark = pytest.mark.browser

STARTER = REPO / "models" / "fashion-starter"
PRODUCTS = 800


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    lines = [json.loads(line) for _, line in zip(range(PRODUCTS), FASHION_FEED.open(), strict=False)]
    for product in lines:
        product["image"] = str(FASHION_FEED.parent / product["image"])
    return {p["id"]: p for p in lines}


@pytest.fixture(scope="module")
def starter_server(catalog: dict[str, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("starter-e2e")
    feed = root / "feed.jsonl"
    feed.write_text("".join(json.dumps(p) + "\n" for p in catalog.values()))
    built = subprocess.run([CLI, "build", "--catalog", str(feed), "--store", str(root / "store"),
                            "--allow-images-under", str(FASHION_FEED.parent),
                            "--model", str(STARTER), "--quiet"], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    server = Server(root / "store", STARTER)
    yield server
    server.stop()


def attributes(product: dict) -> tuple[str, str, str]:
    a = product.get("attributes", {})
    return a.get("gender", ""), a.get("baseColour", ""), product["category"]


def search_text(page: Page, text: str) -> dict:
    page.get_by_label(TEXT_LABEL).fill(text)
    with one_search(page) as exchange:
        page.get_by_label(TEXT_LABEL).press("Enter")
    return exchange["received"]


def test_no_close_match_is_said_and_the_nearest_products_still_shown(
        page: Page, starter_server: Server, screenshot: Screenshot) -> None:
    page.goto(f"{starter_server.url}/")
    expect(page.locator("#status")).to_contain_text(f"{PRODUCTS} products · model fashion-starter")
    received = search_text(page, "qwzx plorf")
    assert received["good_match"] is False
    expect(page.locator("#no-match")).to_be_visible()
    expect(page.locator("#no-match")).to_contain_text("No close match")
    assert len(cards(page)) == 24  # the nearest products stay below the notice
    screenshot(page, "no-close-match")

    received = search_text(page, "black t-shirt for men")
    assert received["good_match"] is True
    expect(page.locator("#no-match")).to_be_hidden()
    found = cards(page)
    assert found[0]["relevance"] >= 0.5 and found[0]["badge"] == f"{round(found[0]['relevance'] * 100)}%"


def test_slider_blends_a_photo_with_a_modifier(page: Page, starter_server: Server, catalog: dict[str, dict],
                                               screenshot: Screenshot) -> None:
    """A blue t-shirt's photo + "in black": photo only finds its own colour, text only finds black
    things of any kind, the middle finds black t-shirts."""
    shirt = next(p for p in catalog.values() if attributes(p) == ("Men", "Blue", "Tshirts"))
    page.goto(f"{starter_server.url}/")
    search_text(page, "in black")
    with one_search(page):
        page.set_input_files("#photo", shirt["image"])
    slider = page.get_by_role("slider", name="Weight of the photo against the text")
    rankings: dict[float, list[str]] = {}
    for key, alpha in (("Home", 0.0), ("End", 1.0)):
        with one_search(page) as exchange:
            slider.press(key)
        assert exchange["sent"]["alpha"] == alpha
        rankings[alpha] = ids(page)
        screenshot(page, f"blend-alpha-{alpha:g}")
    for _ in range(10):  # debounced: the page sends few requests, the last one for 0.5
        slider.press("ArrowLeft")
    expect(page.locator("#summary")).to_contain_text("50% photo")
    expect(page.locator("#grid")).to_have_attribute("aria-busy", "false")
    rankings[0.5] = ids(page)
    screenshot(page, "blend-alpha-0.5")
    assert len({tuple(r) for r in rankings.values()}) == 3

    assert rankings[1.0][0] == shirt["id"]


def test_the_middle_of_the_slider_finds_what_neither_half_finds(starter_server: Server,
                                                                 catalog: dict[str, dict]) -> None:
    """Over ten men's t-shirt photos in other colours + "in black", through the page's API: black men's
    t-shirts in the top 10 at alpha 0.5, against text only (black things) and photo only (its colour)."""
    photos = [p for p in catalog.values() if attributes(p)[::2] == ("Men", "Tshirts") and attributes(p)[1] != "Black"]
    found = {0.0: 0, 0.5: 0, 1.0: 0}
    for product in photos[:10]:
        image = base64.b64encode(Path(product["image"]).read_bytes()).decode()
        for alpha in found:
            response = httpx.post(f"{starter_server.url}/api/v1/search", timeout=30,
                                  json={"text": "in black", "image": image, "alpha": alpha, "top_k": 10})
            found[alpha] += sum(attributes(catalog[r["product_id"]]) == ("Men", "Black", "Tshirts")
                                for r in response.json()["results"])
    assert found[0.5] > max(found[0.0], found[1.0]) + 10, found
