// DOM building for result cards, loading skeletons and the product details. Text from the API is
// always inserted as text, never as HTML.

const priceFormat = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
const numberFormat = new Intl.NumberFormat();

/** An element: h("p", {className: "x"}, "text", child, ...). null/undefined/false children are skipped. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key in element && !key.includes("-")) element[key] = value;
    else element.setAttribute(key, value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export const formatPrice = (price) => (typeof price === "number" ? priceFormat.format(price) : null);
export const formatCount = (count) => numberFormat.format(count);

/** The badge and bar: the calibrated relevance when the model has one, else the cosine (negatives as 0). */
const matchPercent = (hit) => Math.round(Math.min(1, Math.max(0, hit.relevance ?? hit.similarity_score)) * 100);

const matchTooltip = (hit) => (hit.relevance === null || hit.relevance === undefined
  ? `Cosine similarity between your search and this product: ${hit.similarity_score.toFixed(3)}`
  : `How likely this product is what you asked for: ${Math.round(hit.relevance * 100)}% `
    + `(cosine similarity ${hit.similarity_score.toFixed(3)})`);

/** The result cards, replacing the grid's content. */
export function renderCards(grid, results) {
  grid.replaceChildren(...results.map((hit, index) => card(hit, index + 1)));
}

/** Another page of results after the cards on screen ("Show more"). */
export function appendCards(grid, results) {
  const shown = grid.querySelectorAll(".card").length;
  grid.append(...results.map((hit, index) => card(hit, shown + index + 1)));
}

// A card is a button (it opens the details) with a "More like this" link beside it (a link, not a nested
// button: ?like=<id> also opens the page on those results, in a new tab say).
function card(hit, rank) {
  const percent = matchPercent(hit);
  const price = formatPrice(hit.price);
  const tooltip = matchTooltip(hit);
  return h("li", { "data-product-id": hit.product_id, "data-score": hit.similarity_score,
    "data-relevance": hit.relevance ?? null },
    h("button", { type: "button", className: "card", "data-rank": rank },
      h("span", { className: "card-media" },
        hit.image_url ? h("img", { src: hit.image_url, alt: "", decoding: "async" }) : null,
        h("span", { className: "badge", title: tooltip }, `${percent}%`,
          h("span", { className: "visually-hidden" }, " match"))),
      h("span", { className: "card-body" },
        hit.brand ? h("span", { className: "card-brand" }, hit.brand) : null,
        h("span", { className: "card-title" }, hit.title),
        h("span", { className: "card-meta" },
          h("span", { className: "card-category" }, hit.category ?? ""),
          price ? h("span", { className: "card-price" }, price) : null),
        h("span", { className: "bar", title: tooltip, "aria-hidden": "true" },
          h("span", { style: `width: ${percent}%` })))),
    h("a", { className: "more-like", href: moreLikeHref(hit.product_id), "aria-label": `More like this: ${hit.title}` },
      moreLikeIcon(), "More like this"));
}

export const moreLikeHref = (productId) => `?like=${encodeURIComponent(productId)}`;

const SVG = "http://www.w3.org/2000/svg";
function moreLikeIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const [x, y] of [[4, 4], [13, 4], [4, 13], [13, 13]]) {
    const rect = document.createElementNS(SVG, "rect");
    for (const [name, value] of Object.entries({ x, y, width: 7, height: 7, rx: 1.5 })) rect.setAttribute(name, value);
    svg.append(rect);
  }
  return svg;
}

export function renderSkeletons(grid, count) {
  grid.replaceChildren(...Array.from({ length: count }, () => h("li", { className: "skeleton", "aria-hidden": "true" })));
}

/** The details dialog's content, with its "More like this" and "Search with this product’s image" buttons. */
export function renderDetails(container, product, { onMoreLike, onSearchImage }) {
  const price = formatPrice(product.price);
  const facts = [
    ["brand", product.brand],
    ["category", product.category],
    ["rating", typeof product.rating === "number" ? `${product.rating.toFixed(1)} / 5` : null],
    ...Object.entries(product.attributes ?? {}),
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  const source = /^https?:\/\//.test(product.source_image ?? "") ? product.source_image : null;
  container.replaceChildren(
    product.image_url ? h("img", { src: product.image_url, alt: product.title }) : h("div"),
    h("div", { className: "details-info" },
      h("h2", { id: "details-title" }, product.title),
      price ? h("p", { className: "price" }, price) : null,
      product.description ? h("p", {}, product.description) : null,
      facts.length ? h("dl", {}, facts.flatMap(([key, value]) => [h("dt", {}, humanize(key)), h("dd", {}, String(value))])) : null,
      source ? h("p", {}, h("a", { href: source, target: "_blank", rel: "noopener" }, "Original image")) : null,
      h("div", { className: "details-actions" },
        h("button", { type: "button", className: "primary", id: "more-like-this", onclick: onMoreLike }, "More like this"),
        product.image_url
          ? h("button", { type: "button", className: "secondary", id: "search-with-image", onclick: onSearchImage },
            "Search with this product’s image")
          : null)));
}

/** The chips of what narrows the results: [{label, remove: label for the remove action}]; `onRemove(index)`. */
export function renderChips(list, chips, onRemove) {
  list.replaceChildren(...chips.map((chip, index) => h("li", {},
    h("button", { type: "button", className: "chip", "aria-label": `Remove ${chip.label}`, onclick: () => onRemove(index) },
      chip.label, closeIcon()))));
}

function closeIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M6 6l12 12M18 6 6 18");
  svg.append(path);
  return svg;
}

export function renderDetailsMessage(container, message, { error = false } = {}) {
  container.replaceChildren(h("p", { className: error ? "error" : "", role: error ? "alert" : null, id: "details-title" }, message));
}

const humanize = (key) => key.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/_/g, " ");
