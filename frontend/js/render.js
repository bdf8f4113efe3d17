// DOM building for result cards, loading skeletons and the product details. Text from the API is
// always inserted as text, never as HTML.

const priceFormat = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
const numberFormat = new Intl.NumberFormat();

/** An element: h("p", {className: "x"}, "text", child, ...). null/undefined/false children are skipped. */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key in element && !key.includes("-")) element[key] = value;
    else element.setAttribute(key, value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

const formatPrice = (price) => (typeof price === "number" ? priceFormat.format(price) : null);
export const formatCount = (count) => numberFormat.format(count);

/** The badge and bar: the calibrated relevance when the model has one, else the cosine (negatives as 0). */
const matchPercent = (hit) => Math.round(Math.min(1, Math.max(0, hit.relevance ?? hit.similarity_score)) * 100);

const matchTooltip = (hit) => (hit.relevance === null || hit.relevance === undefined
  ? `Cosine similarity between your search and this product: ${hit.similarity_score.toFixed(3)}`
  : `How likely this product is what you asked for: ${Math.round(hit.relevance * 100)}% `
    + `(cosine similarity ${hit.similarity_score.toFixed(3)})`);

export function renderCards(grid, results) {
  grid.replaceChildren(...results.map((hit, rank) => {
    const percent = matchPercent(hit);
    const price = formatPrice(hit.price);
    const tooltip = matchTooltip(hit);
    return h("li", { "data-product-id": hit.product_id, "data-score": hit.similarity_score,
      "data-relevance": hit.relevance ?? null },
      h("button", { type: "button", className: "card", "data-rank": rank + 1 },
        h("span", { className: "card-media" },
          hit.image_url ? h("img", { src: hit.image_url, alt: "", decoding: "async" }) : null,
          h("span", { className: "badge", title: tooltip }, `${percent}%`,
            h("span", { className: "visually-hidden" }, " match"))),
        h("span", { className: "card-body" },
          h("span", { className: "card-title" }, hit.title),
          h("span", { className: "card-meta" },
            h("span", { className: "card-category" }, hit.category ?? ""),
            price ? h("span", { className: "card-price" }, price) : null),
          h("span", { className: "bar", title: tooltip, "aria-hidden": "true" },
            h("span", { style: `width: ${percent}%` })))));
  }));
}

export function renderSkeletons(grid, count) {
  grid.replaceChildren(...Array.from({ length: count }, () => h("li", { className: "skeleton", "aria-hidden": "true" })));
}

/** The details dialog's content; `onSearchImage` is called by its "search with this image" button. */
export function renderDetails(container, product, onSearchImage) {
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
      product.image_url
        ? h("button", { type: "button", className: "primary", id: "search-with-image", onclick: onSearchImage },
          "Search with this product’s image")
        : null));
}

export function renderDetailsMessage(container, message, { error = false } = {}) {
  container.replaceChildren(h("p", { className: error ? "error" : "", role: error ? "alert" : null, id: "details-title" }, message));
}

const humanize = (key) => key.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/_/g, " ");
