"""Refining a search on the page as a shopper does: facet filters with counts, a price range, "More like
this" (from a card, from the details, from a ?like= link), "-word" exclusions, "Show more", and the
scroll to the results on a phone. Real Chromium, the real local server, the e2e index of conftest."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import PHONE, Catalog, Server
from tests.e2e.test_search_page import TEXT_LABEL, Screenshot, cards, ids, is_search, one_search, open_page

pytestmark = pytest.mark.browser

FACETS = ["category", "brand", "gender", "baseColour"]  # what the page picks from GET /api/v1/fields here


def search_for(page: Page, text: str) -> dict:
    page.get_by_label(TEXT_LABEL).fill(text)
    with one_search(page) as exchange:
        page.get_by_label(TEXT_LABEL).press("Enter")
    return exchange


def filters_panel(page: Page) -> Locator:
    return page.get_by_role("complementary", name="Filters")


def facet(page: Page, legend: str) -> Locator:
    return filters_panel(page).get_by_role("group", name=legend, exact=True)


def option(page: Page, legend: str, value: str, count: int | None = None) -> Locator:
    name = f"{value} ({count})" if count is not None else re.compile(rf"^{re.escape(value)} \(\d+\)$")
    return facet(page, legend).get_by_role("checkbox", name=name, exact=True)


def attribute(catalog: Catalog, product_id: str, field: str) -> str:
    product = catalog.products[product_id]
    value = product.get(field, product.get("attributes", {}).get(field))
    return str(value).lower()


def recorder(page: Page) -> list[dict]:
    """The bodies of the search requests the page sends from now on."""
    sent: list[dict] = []
    page.on("request", lambda request: sent.append(request.post_data_json) if is_search(request) else None)
    return sent


def test_facets_filter_the_results_any_of_within_a_field_and_across_fields(
        page: Page, server: Server, catalog: Catalog, screenshot: Screenshot) -> None:
    open_page(page, server)
    exchange = search_for(page, "shoes")
    assert exchange["sent"]["facets"] == FACETS and "filters" not in exchange["sent"]
    counted = exchange["received"]["facets"]
    # Each facet shows its most common values with their counts, as the API counted them (6 until "Show all").
    for field, legend in (("category", "Category"), ("gender", "Gender"), ("baseColour", "Colour")):
        shown = facet(page, legend).get_by_role("checkbox")
        expect(shown).to_have_count(min(6, len(counted[field])))
        for entry in counted[field][:6]:
            expect(option(page, legend, entry["value"], entry["count"])).not_to_be_checked()
    category = counted["category"]
    assert len(category) > 6
    show_all = facet(page, "Category").get_by_role("button", name=f"Show all {len(category)}")
    show_all.click()
    expect(facet(page, "Category").get_by_role("checkbox")).to_have_count(len(category))
    expect(facet(page, "Category").get_by_role("button", name="Show fewer")).to_have_attribute("aria-expanded", "true")

    # Keyboard: Space on a value filters by it; focus stays on that checkbox once the results are in.
    second, first = category[1]["value"], category[0]["value"]
    option(page, "Category", second).focus()
    with one_search(page) as exchange:
        page.keyboard.press("Space")
    assert exchange["sent"]["filters"] == {"category": [second]} and "offset" not in exchange["sent"]
    assert page.evaluate("document.activeElement.dataset.value") == second
    expect(option(page, "Category", second)).to_be_checked()
    found = ids(page)
    assert found and all(attribute(catalog, i, "category") == second.lower() for i in found)
    assert all(card["category"] == second for card in cards(page))
    expect(page.get_by_role("button", name=f"Remove Category: {second}")).to_be_visible()
    expect(page.locator("#filter-count")).to_have_text("(1)")

    # The field's other values stay on offer: a second one widens the results (any of them).
    with one_search(page) as exchange:
        option(page, "Category", first).check()
    assert exchange["sent"]["filters"] == {"category": [second, first]}
    assert {attribute(catalog, i, "category") for i in ids(page)} == {first.lower(), second.lower()}

    # Another field narrows them (all of the fields); its counts are those of the filtered candidates.
    gender = next(e for e in exchange["received"]["facets"]["gender"] if e["value"] in ("Men", "Women"))
    with one_search(page) as exchange:
        option(page, "Gender", gender["value"], gender["count"]).check()
    assert exchange["sent"]["filters"] == {"category": [second, first], "gender": [gender["value"]]}
    found = ids(page)
    assert found and all(attribute(catalog, i, "gender") == gender["value"].lower()
                         and attribute(catalog, i, "category") in (first.lower(), second.lower()) for i in found)
    for entry in exchange["received"]["facets"]["category"][:6]:
        expect(option(page, "Category", entry["value"], entry["count"])).to_be_visible()
    screenshot(page, "facets")

    # A chip removes its filter; "Clear all" the rest.
    with one_search(page) as exchange:
        page.get_by_role("button", name=f"Remove Category: {second}").click()
    assert exchange["sent"]["filters"] == {"category": [first], "gender": [gender["value"]]}
    expect(option(page, "Category", second)).not_to_be_checked()
    with one_search(page) as exchange:
        page.get_by_role("button", name="Clear all").click()
    assert "filters" not in exchange["sent"]
    expect(page.locator("#refinements")).to_be_hidden()
    expect(filters_panel(page).get_by_role("checkbox", checked=True)).to_have_count(0)


def test_price_range_and_in_stock(page: Page, server: Server, catalog: Catalog) -> None:
    open_page(page, server)
    search_for(page, "women's dress")
    panel = filters_panel(page)
    sent = recorder(page)
    panel.get_by_label("Lowest price").fill("100")
    panel.get_by_label("Highest price").fill("20")
    panel.get_by_label("Highest price").press("Enter")
    expect(panel.get_by_role("alert")).to_have_text("The lowest price is above the highest.")
    assert sent == []  # nothing asked of the API

    panel.get_by_label("Lowest price").fill("20")
    panel.get_by_label("Highest price").fill("100")
    with one_search(page) as exchange:
        panel.get_by_role("button", name="Apply").click()
    assert exchange["sent"]["filters"] == {"price": {"gte": 20, "lte": 100}}
    expect(panel.get_by_role("alert")).to_be_hidden()
    prices = [float(card["price"].strip("$").replace(",", "")) for card in cards(page)]
    assert prices and all(20 <= price <= 100 for price in prices)
    expect(page.get_by_role("button", name="Remove Price: $20.00 – $100.00")).to_be_visible()

    # "In stock only" (the API's in_stock, over the catalog's stock numbers), with the price range.
    with one_search(page) as exchange:
        panel.get_by_role("checkbox", name="In stock only").check()
    assert exchange["sent"]["filters"] == {"price": {"gte": 20, "lte": 100}, "in_stock": True}
    found = ids(page)
    assert found and all(catalog.products[i].get("attributes", {}).get("stock", 0) > 0 for i in found)
    expect(page.get_by_role("button", name="Remove In stock only")).to_be_visible()


def test_more_like_this_from_a_card_the_details_and_a_link_leaves_the_product_out(
        page: Page, server: Server, catalog: Catalog, screenshot: Screenshot) -> None:
    open_page(page, server)
    search_for(page, "white shirt")
    target = cards(page)[2]
    item = page.locator("#grid > li").nth(2)
    with one_search(page) as exchange:
        item.get_by_role("link", name=f"More like this: {target['title']}").click()
    sent = exchange["sent"]
    assert sent["product_id"] == target["id"] and "text" not in sent and "image" not in sent
    found = ids(page)
    # The tiny model's image tower ranks a product's own photo first: here it must be left out.
    assert len(found) == 24 and target["id"] not in found
    expect(page.locator("#reference")).to_have_text(re.compile(rf"More like {re.escape(target['title'])}"))
    expect(page.locator("#preview-caption")).to_have_text(f"More like “{target['title']}”")
    expect(page.get_by_label(TEXT_LABEL)).to_have_value("")
    expect(page.locator("#summary")).to_contain_text("similar products")
    assert page.evaluate("document.activeElement.id") == "results"
    screenshot(page, "more-like-this")

    # Words typed afterwards blend with the product, as with a photo.
    exchange = search_for(page, "in red")
    assert exchange["sent"]["product_id"] == target["id"] and exchange["sent"]["text"] == "in red"
    assert exchange["received"]["search_type"] == "hybrid" and target["id"] not in ids(page)
    expect(page.get_by_role("slider")).to_be_enabled()

    # Clearing it searches the words alone.
    with one_search(page) as exchange:
        page.get_by_role("button", name=f"Clear “More like {target['title']}”").click()
    assert "product_id" not in exchange["sent"] and exchange["sent"]["text"] == "in red"
    expect(page.locator("#reference")).to_be_hidden()
    expect(page.locator("#preview")).to_be_hidden()

    # From the details dialog.
    product_id = ids(page)[0]
    page.locator("#grid > li").first.locator(".card").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_have_text(catalog.products[product_id]["title"])
    with one_search(page) as exchange:
        dialog.get_by_role("button", name="More like this").click()
    expect(dialog).to_be_hidden()
    assert exchange["sent"]["product_id"] == product_id and "text" not in exchange["sent"]
    assert product_id not in ids(page) and len(ids(page)) == 24

    # The card's link works on its own too (opened in a new tab, say).
    href = page.locator("#grid > li").first.get_by_role("link").get_attribute("href")
    linked = ids(page)[0]
    assert href == f"?like={linked}"
    with one_search(page) as exchange:
        page.goto(f"{server.url}/{href}")
    assert exchange["sent"]["product_id"] == linked and linked not in ids(page)
    expect(page.locator("#reference")).to_contain_text(catalog.products[linked]["title"])


def test_minus_words_are_sent_as_negative_text(page: Page, server: Server) -> None:
    open_page(page, server)
    expect(page.get_by_label(TEXT_LABEL)).to_have_accessible_description(
        "Leave things out with a minus: red dress -leather -black")
    exchange = search_for(page, "red dress -leather -black")
    assert exchange["sent"]["text"] == "red dress" and exchange["sent"]["negative_text"] == ["leather", "black"]
    assert len(cards(page)) == 24
    expect(page.locator("#summary")).to_contain_text("without leather, black")
    chips = page.locator("#chips button")
    expect(chips).to_have_text(["Without: leather", "Without: black"])

    # Removing a chip takes the word out of the box and searches again.
    with one_search(page) as exchange:
        page.get_by_role("button", name="Remove Without: leather").click()
    expect(page.get_by_label(TEXT_LABEL)).to_have_value("red dress -black")
    assert exchange["sent"]["negative_text"] == ["black"]
    expect(chips).to_have_text(["Without: black"])

    # Hyphenated words are words; more than the API's 5 exclusions is refused before sending.
    exchange = search_for(page, "t-shirt -x-ray")
    assert exchange["sent"]["text"] == "t-shirt" and exchange["sent"]["negative_text"] == ["x-ray"]
    sent = recorder(page)
    page.get_by_label(TEXT_LABEL).fill("dress -a -b -c -d -e -f")
    page.get_by_label(TEXT_LABEL).press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Leave out at most 5 words at a time (this search has 6).")
    assert sent == []


def test_show_more_appends_pages_without_duplicates_up_to_the_api_depth(page: Page, server: Server) -> None:
    open_page(page, server)
    page.get_by_label("Show").select_option("48")
    exchange = search_for(page, "shoes")
    assert exchange["received"]["has_more"] is True
    shown = ids(page)
    assert len(shown) == 48
    button = page.get_by_role("button", name="Show more")
    while button.is_visible():
        with one_search(page) as exchange:
            button.click()
        sent, received = exchange["sent"], exchange["received"]
        assert sent["offset"] == len(shown) and sent["top_k"] == min(48, 200 - len(shown))
        assert sent["text"] == "shoes" and "facets" not in sent
        page_ids = [hit["product_id"] for hit in received["results"]]
        assert ids(page) == shown + page_ids  # appended in order, the earlier cards untouched
        shown = ids(page)
        assert len(set(shown)) == len(shown)
        # Focus moves to the first new card, for keyboard and screen-reader users.
        assert page.evaluate("document.activeElement.closest('li').dataset.productId") == page_ids[0]
        expect(page.locator("#summary")).to_contain_text(f"{len(shown)} products")
        if not received["has_more"]:
            break
    assert len(shown) == 200 or not received["has_more"]
    expect(button).to_be_hidden()


def test_on_a_phone_a_search_scrolls_to_the_results(page: Page, server: Server, screenshot: Screenshot) -> None:
    page.set_viewport_size(PHONE)
    open_page(page, server)
    assert page.locator("#results").bounding_box()["y"] > PHONE["height"] / 2  # the form fills the screen
    search_for(page, "blue jeans")
    page.wait_for_function("""() => {
        const top = document.getElementById('results').getBoundingClientRect().top;
        return top >= 0 && top < 100;
    }""")
    # The first row of results is wholly on screen (unscrolled, it would start near the bottom edge).
    first = page.locator("#grid > li").first.bounding_box()
    assert first and first["y"] >= 0 and first["y"] + first["height"] <= PHONE["height"]
    assert page.evaluate("window.scrollY") > 0
    screenshot(page, "phone-results")

    # The filters fold away on a phone, behind a button.
    toggle = page.get_by_role("button", name=re.compile("^Filters"))
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(filters_panel(page).get_by_role("checkbox").first).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(filters_panel(page).get_by_role("checkbox").first).to_be_visible()
    with one_search(page) as exchange:
        filters_panel(page).get_by_role("checkbox").nth(1).check()
    assert exchange["sent"]["filters"]
    page.get_by_role("button", name="Show results").click()  # folds the panel, back to the results
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_have_text(re.compile(r"Filters\s+\(1\)"))
    page.wait_for_function("Math.abs(document.getElementById('results').getBoundingClientRect().top) < 100")
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
