// The filter panel: facet values with counts as checkboxes (any-of within a field, AND across fields),
// a price range and "in stock only"; what is selected, as the API's "filters" object and as chips.

import { formatPrice, h } from "./render.js";
import { fieldLabel } from "./query.js";

const VALUES_SHOWN = 6; // per field until "Show all"

/**
 * `els`: {facets, priceForm, priceMin, priceMax, priceError, inStockOption, inStock};
 * `onChange()` is called whenever the shopper changes a filter.
 */
export function createFilters(els, onChange) {
  let config = { facets: [], price: null, inStock: false };
  const selected = new Map(); // field → Map(lower-cased value → value as the API wrote it)
  let price = null; // {gte?, lte?}
  const expanded = new Set(); // fields showing all their values

  const keyOf = (value) => String(value).toLowerCase();

  function configure(next) {
    config = next;
    for (const field of selected.keys()) if (!config.facets.includes(field)) selected.delete(field);
    els.priceForm.hidden = !config.price;
    if (!config.price) price = null;
    else {
      // Placeholders show the catalog's range, in whole dollars.
      if (config.price.min !== null) els.priceMin.placeholder = `Min ${Math.floor(config.price.min)}`;
      if (config.price.max !== null) els.priceMax.placeholder = `Max ${Math.ceil(config.price.max)}`;
    }
    els.inStockOption.hidden = !config.inStock;
    if (!config.inStock) els.inStock.checked = false;
  }

  /** The API's "filters" object (undefined when nothing is selected). */
  function request() {
    const filters = {};
    for (const [field, values] of selected) {
      if (values.size) filters[field] = [...values.values()];
    }
    if (price) filters.price = { ...price };
    if (els.inStock.checked && config.inStock) filters.in_stock = true;
    return Object.keys(filters).length ? filters : undefined;
  }

  const isSelected = (field, value) => selected.get(field)?.has(keyOf(value)) ?? false;

  function toggle(field, value, on) {
    if (!selected.has(field)) selected.set(field, new Map());
    if (on) selected.get(field).set(keyOf(value), value);
    else selected.get(field).delete(keyOf(value));
  }

  /** The facet groups for the response's counts ({field: [{value, count}]}), keeping focus where it was. */
  function render(facets) {
    const active = document.activeElement;
    const focused = els.facets.contains(active)
      ? { field: active.closest("[data-field]")?.dataset.field, value: active.dataset.value, more: active.classList.contains("facet-more") }
      : null;
    els.facets.replaceChildren(...config.facets.map((field) => group(field, facets[field] ?? [])).filter(Boolean));
    if (!focused) return;
    const group_ = els.facets.querySelector(`[data-field="${CSS.escape(focused.field ?? "")}"]`);
    const target = focused.more
      ? group_?.querySelector(".facet-more")
      : [...(group_?.querySelectorAll("input") ?? [])].find((input) => input.dataset.value === focused.value);
    (target ?? els.facets.querySelector("input"))?.focus();
  }

  function group(field, counted) {
    const values = [...counted];
    // A selected value the counts leave out (none of the nearest products has it) stays, at 0, to be unticked.
    for (const [key, value] of selected.get(field) ?? []) {
      if (!values.some((entry) => keyOf(entry.value) === key)) values.push({ value, count: 0 });
    }
    if (!values.length) return null;
    const all = expanded.has(field);
    const shown = values.filter((entry, index) => all || index < VALUES_SHOWN || isSelected(field, entry.value));
    return h("fieldset", { className: "facet", "data-field": field },
      h("legend", {}, fieldLabel(field)),
      h("ul", { className: "facet-values" }, shown.map(({ value, count }) => h("li", {},
        h("label", { className: "facet-option" },
          h("input", { type: "checkbox", checked: isSelected(field, value), "data-value": String(value),
            onchange: (event) => { toggle(field, value, event.target.checked); onChange(); } }),
          " ", h("span", { className: "facet-value" }, String(value)),
          " ", h("span", { className: "facet-count" }, `(${count})`))))),
      values.length > VALUES_SHOWN
        ? h("button", { type: "button", className: "text-button facet-more", "aria-expanded": String(all),
          onclick: () => {
            if (all) expanded.delete(field);
            else expanded.add(field);
            render(lastFacets);
          } }, all ? "Show fewer" : `Show all ${values.length}`)
        : null);
  }

  let lastFacets = {};
  const renderCounts = (facets) => {
    lastFacets = facets ?? {};
    render(lastFacets);
  };

  els.priceForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const read = (input) => (input.value.trim() === "" ? null : Number(input.value));
    const [min, max] = [read(els.priceMin), read(els.priceMax)];
    let problem = null;
    if ([min, max].some((bound) => bound !== null && !(Number.isFinite(bound) && bound >= 0))) {
      problem = "Enter prices as positive numbers.";
    } else if (min !== null && max !== null && min > max) {
      problem = "The lowest price is above the highest.";
    }
    els.priceError.textContent = problem ?? "";
    els.priceError.hidden = !problem;
    if (problem) return;
    const next = min === null && max === null ? null : { ...(min !== null && { gte: min }), ...(max !== null && { lte: max }) };
    if (JSON.stringify(next) === JSON.stringify(price)) return;
    price = next;
    onChange();
  });
  els.inStock.addEventListener("change", onChange);

  /** What is selected, for the chips: [{label, remove()}]. */
  function chips() {
    const list = [];
    for (const [field, values] of selected) {
      for (const [key, value] of values) {
        list.push({ label: `${fieldLabel(field)}: ${value}`, remove: () => {
          values.delete(key);
          const box = els.facets.querySelector(`[data-field="${CSS.escape(field)}"] input[data-value="${CSS.escape(String(value))}"]`);
          if (box) box.checked = false;
        } });
      }
    }
    if (price) list.push({ label: `Price: ${priceLabel(price)}`, remove: clearPrice });
    if (els.inStock.checked && config.inStock) list.push({ label: "In stock only", remove: () => { els.inStock.checked = false; } });
    return list;
  }

  function clearPrice() {
    price = null;
    els.priceMin.value = "";
    els.priceMax.value = "";
    els.priceError.hidden = true;
  }

  function clear() {
    selected.clear();
    clearPrice();
    els.inStock.checked = false;
    for (const box of els.facets.querySelectorAll("input")) box.checked = false;
  }

  return {
    configure, request, render: renderCounts, chips, clear,
    get config() { return config; },
    get count() { return chips().length; },
  };
}

function priceLabel({ gte, lte }) {
  if (gte !== undefined && lte !== undefined) return `${formatPrice(gte)} – ${formatPrice(lte)}`;
  return gte !== undefined ? `from ${formatPrice(gte)}` : `up to ${formatPrice(lte)}`;
}
