// The search page: inputs, the one-request-at-a-time search loop, results, filters, "Show more",
// "More like this" and the details dialog.

import * as api from "./api.js";
import { createFilters } from "./filters.js";
import { PhotoError, preparePhoto } from "./image.js";
import { MAX_NEGATIVES, chooseFields, parseSearchText, withoutNegative } from "./query.js";
import {
  appendCards, formatCount, renderCards, renderChips, renderDetails, renderDetailsMessage, renderSkeletons,
} from "./render.js";

const SLIDER_DEBOUNCE_MS = 200;
const MAX_DEPTH = 200; // the API pages up to offset + top_k = 200
const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), text: $("text"), photo: $("photo"), dropZone: $("drop-zone"), prompt: $("drop-prompt"),
  preview: $("preview"), previewImg: $("preview-img"), previewCaption: $("preview-caption"),
  removePhoto: $("remove-photo"), blend: $("blend"), blendHelp: $("blend-help"), alpha: $("alpha"), alphaValue: $("alpha-value"),
  topK: $("top-k"), error: $("error"), results: $("results"), summary: $("summary"),
  empty: $("empty"), noMatch: $("no-match"), grid: $("grid"), status: $("status"), footer: $("footer-info"),
  details: $("details"), detailsBody: $("details-body"),
  reference: $("reference"), referenceImg: $("reference-img"), referenceTitle: $("reference-title"),
  clearReference: $("clear-reference"), refinements: $("refinements"), chips: $("chips"), clearAll: $("clear-all"),
  layout: document.querySelector(".results-layout"), filters: $("filters"), filtersToggle: $("filters-toggle"),
  filterCount: $("filter-count"), more: $("more"), showMore: $("show-more"), moreError: $("more-error"),
};

const state = {
  photo: null, // {dataUrl, previewUrl, ...} from preparePhoto, or null
  reference: null, // "More like this": {id, title, imageUrl} of the product searched by, or null (never with a photo)
  searched: false, // whether results (or an error) for some query are on screen
  inFlight: false,
  queued: null, // the latest job asked for while a request was in flight
  details: null, // the product id the details dialog was last opened for
  shown: null, // the query whose results are on screen ({...query, count, hasMore}), for "Show more"
  fields: null, // a promise of chooseFields()' answer for the live index
  indexVersion: null,
};

const filters = createFilters({
  facets: $("facets"), priceForm: $("price-filter"), priceMin: $("price-min"), priceMax: $("price-max"),
  priceError: $("price-error"), inStockOption: $("in-stock-option"), inStock: $("in-stock"),
}, () => search());

// -- searching ------------------------------------------------------------------------------

function currentQuery() {
  const { text, negatives } = parseSearchText(els.text.value);
  return {
    text,
    negatives,
    image: state.photo?.dataUrl,
    productId: state.reference?.id,
    alpha: Number(els.alpha.value),
    topK: Number(els.topK.value),
    filters: filters.request(),
  };
}

/** A new search from offset 0 with what the form and the filters say; `reveal` scrolls to its results. */
function search({ reveal = false } = {}) {
  const query = currentQuery();
  if (query.negatives.length > MAX_NEGATIVES) {
    showError(`Leave out at most ${MAX_NEGATIVES} words at a time (this search has ${query.negatives.length}).`);
    els.text.focus();
    return;
  }
  if (!query.text && !query.image && !query.productId) {
    showError(query.negatives.length
      ? "Say what you’re looking for too, not only what to leave out — or add a photo."
      : "Type a description or add a photo to search.");
    els.text.focus();
    return;
  }
  showRefinements(query);
  run({ query, reveal });
}

function showMore() {
  if (!state.shown || state.inFlight) return;
  run({ query: state.shown, append: true });
}

// One request in flight at a time: a job asked for meanwhile waits, and only the latest one is sent.
// A response is shown only if no newer job is waiting (otherwise it is already stale).
async function run(job) {
  if (state.inFlight) {
    state.queued = job;
    return;
  }
  state.inFlight = true;
  setLoading(true, job);
  try {
    const response = job.append ? await fetchNextPage(job.query) : await fetchFirstPage(job.query);
    if (!state.queued) {
      if (job.append) appendResults(response);
      else showResults(job.query, response, job.reveal);
    }
  } catch (error) {
    if (!state.queued) {
      if (job.append) showMoreFailure(readable(error));
      else showFailure(readable(error), job.reveal);
    }
    if (!(error instanceof api.ApiError)) throw error;
  } finally {
    state.inFlight = false;
    const next = state.queued;
    state.queued = null;
    if (next) run(next);
    else setLoading(false);
  }
}

// The first page, with facet counts. The API counts a field the query filters on without that field's
// own filter, so its other values stay on offer (any-of within a field) with their counts.
async function fetchFirstPage(query) {
  const { facets } = await state.fields;
  return api.search({ ...query, facets });
}

// The page after the cards on screen: same query and filters, no facets; never past the API's depth.
function fetchNextPage(query) {
  return api.search({ ...query, offset: query.count, topK: Math.min(query.topK, MAX_DEPTH - query.count) });
}

function setLoading(loading, job) {
  els.grid.setAttribute("aria-busy", String(loading));
  els.showMore.disabled = loading;
  if (!loading) {
    els.results.classList.remove("loading");
    els.showMore.textContent = "Show more";
    return;
  }
  if (job.append) {
    els.showMore.textContent = "Loading more…";
    els.moreError.hidden = true;
    return;
  }
  els.results.classList.add("loading");
  hideError();
  els.empty.hidden = true;
  els.noMatch.hidden = true;
  els.summary.textContent = "Searching…";
  // Re-ranking keeps the current cards in place; a first search shows placeholders.
  if (!els.grid.querySelector(".card")) renderSkeletons(els.grid, Math.min(Number(els.topK.value), 12));
}

function showResults(query, response, reveal) {
  state.searched = true;
  const count = response.results.length;
  state.shown = { ...query, count, hasMore: Boolean(response.has_more) };
  renderCards(els.grid, response.results);
  filters.render(response.facets);
  showFilterPanel();
  showSummary(response);
  showMoreButton();
  if (!count) {
    if (query.filters) setEmpty("No products match these filters.", "Remove a filter, or try other words.");
    else setEmpty("No products matched.", "Try other words or another photo.");
  }
  // good_match null: the model is not calibrated, so the page cannot tell; it says nothing.
  els.noMatch.hidden = !(count && response.good_match === false);
  els.grid.classList.toggle("weak", Boolean(count && response.good_match === false));
  if (reveal) revealResults(els.results);
  if (state.indexVersion && response.index_version !== state.indexVersion) state.fields = loadFields(); // a new index
  state.indexVersion = response.index_version;
}

function appendResults(response) {
  const first = els.grid.children.length;
  appendCards(els.grid, response.results);
  state.shown = { ...state.shown, count: state.shown.count + response.results.length, hasMore: Boolean(response.has_more) };
  showSummary(response);
  showMoreButton();
  // Keyboard and screen-reader users carry on from the first new product.
  els.grid.children[first]?.querySelector(".card")?.focus();
}

function showSummary(response) {
  const count = state.shown.count;
  els.summary.textContent = count
    ? `${formatCount(count)} ${count === 1 ? "product" : "products"} · ${searchKind(state.shown, response)} · ${response.query_time < 1 ? "<1" : Math.round(response.query_time)} ms`
    : "";
}

function searchKind(query, response) {
  const percent = Math.round(response.alpha_used * 100);
  const kind = query.productId
    ? { text: "text search", image: "similar products", hybrid: `text + similar products, ${percent}% product` }
    : { text: "text search", image: "photo search", hybrid: `text + photo, ${percent}% photo` };
  const without = query.negatives?.length ? ` without ${query.negatives.join(", ")}` : "";
  return kind[response.search_type] + without;
}

function showMoreButton() {
  const { count, hasMore } = state.shown ?? {};
  els.more.hidden = !(hasMore && count < MAX_DEPTH);
  els.moreError.hidden = true;
}

function showFailure(message, reveal) {
  state.searched = true;
  state.shown = null;
  els.grid.replaceChildren();
  els.noMatch.hidden = true;
  els.more.hidden = true;
  els.summary.textContent = "";
  showError(message);
  if (reveal) revealResults(els.error);
}

function showMoreFailure(message) {
  els.moreError.textContent = message;
  els.moreError.hidden = false;
}

const readable = (error) =>
  (error instanceof api.ApiError ? error.message : "Something went wrong on this page. Reload and try again.");

function setEmpty(title, detail) {
  els.empty.querySelector(".empty-title").textContent = title;
  els.empty.querySelector(".empty-title + p").textContent = detail;
  els.empty.hidden = false;
}

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = false;
}

function hideError() {
  els.error.hidden = true;
  els.error.textContent = "";
}

// On a phone the form fills the first screen: after a search the page scrolls to what it found
// (or to the error), unless that is already in view.
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
const coarsePointer = window.matchMedia("(pointer: coarse)");
function revealResults(element) {
  if (coarsePointer.matches && document.activeElement === els.text) els.text.blur(); // the on-screen keyboard
  const { top } = element.getBoundingClientRect();
  if (top >= 0 && top <= window.innerHeight - 200) return;
  element.scrollIntoView({ block: "start", behavior: reducedMotion.matches ? "auto" : "smooth" });
}

// -- filters and chips ------------------------------------------------------------------------

function loadFields() {
  return api.fields().then((answer) => chooseFields(answer.fields ?? []), (error) => {
    if (!(error instanceof api.ApiError)) throw error;
    return chooseFields([]); // an API without /fields: the page searches without filters
  }).then((config) => {
    filters.configure(config);
    return config;
  });
}

function showFilterPanel() {
  const { facets, price, inStock } = filters.config;
  const offered = Boolean(facets.length || price || inStock);
  els.filters.hidden = !(state.searched && offered);
  els.layout.classList.toggle("with-filters", !els.filters.hidden);
}

// What narrows the results on screen: the filters, then the words left out; each chip removes itself.
function showRefinements(query) {
  const chips = [
    ...filters.chips(),
    ...query.negatives.map((term) => ({ label: `Without: ${term}`, remove: () => {
      els.text.value = withoutNegative(els.text.value, term);
    } })),
  ];
  renderChips(els.chips, chips, (index) => {
    chips[index].remove();
    search();
    // Focus stays in the chip list (on the chip that took this one's place), else goes to the results.
    const buttons = els.chips.querySelectorAll("button");
    (buttons[Math.min(index, buttons.length - 1)] ?? els.results).focus();
  });
  els.refinements.hidden = !chips.length;
  const active = filters.count;
  els.filterCount.textContent = active ? `(${active})` : "";
}

function clearAll() {
  filters.clear();
  for (const term of parseSearchText(els.text.value).negatives) els.text.value = withoutNegative(els.text.value, term);
  search();
  els.results.focus();
}

// -- inputs ---------------------------------------------------------------------------------

// The slider blends text and photo (or the product of "More like this"), so it is active only when both
// are given (and says so otherwise).
function updateBlend() {
  const ready = Boolean(parseSearchText(els.text.value).text && (state.photo || state.reference));
  els.blend.disabled = !ready;
  els.blendHelp.hidden = ready;
  if (ready) els.alpha.removeAttribute("aria-describedby");
  else els.alpha.setAttribute("aria-describedby", "blend-help");
}

function showAlpha() {
  const percent = Math.round(Number(els.alpha.value) * 100);
  els.alphaValue.textContent = `${percent}% image`;
  els.alpha.setAttribute("aria-valuetext", `${percent}% photo, ${100 - percent}% text`);
}

let sliderTimer;
function onSlide() {
  showAlpha();
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(() => {
    if (!els.blend.disabled) search();
  }, SLIDER_DEBOUNCE_MS);
}

async function usePhoto(file) {
  hideError();
  const summary = els.summary.textContent;
  els.summary.textContent = "Preparing photo…"; // decoding a 12 MB photo takes a moment on a phone
  let photo;
  try {
    photo = await preparePhoto(file);
  } catch (error) {
    if (!(error instanceof PhotoError)) throw error;
    els.summary.textContent = summary;
    els.photo.value = ""; // the photo shown before, if any, stays
    showError(error.message);
    return;
  }
  clearPhoto();
  state.photo = { ...photo, previewUrl: URL.createObjectURL(photo.blob) };
  const resized = photo.width !== photo.originalWidth ? `${photo.originalWidth}×${photo.originalHeight} → ` : "";
  showPreview(state.photo.previewUrl, `${file.name} · ${resized}${photo.width}×${photo.height} · ${Math.ceil(photo.blob.size / 1024)} KB`,
    "Remove photo");
  updateBlend();
  search({ reveal: true });
}

/** Empties the photo slot: the photo, or the product of "More like this". */
function clearPhoto() {
  if (state.photo) URL.revokeObjectURL(state.photo.previewUrl);
  state.photo = null;
  state.reference = null;
  els.reference.hidden = true;
  els.photo.value = "";
  els.previewImg.removeAttribute("src");
  els.previewCaption.textContent = "";
  els.preview.hidden = true;
  els.prompt.hidden = false;
  updateBlend();
}

function showPreview(src, caption, removeLabel, alt = "Your photo") {
  els.previewImg.alt = alt;
  if (src) els.previewImg.src = src;
  else els.previewImg.removeAttribute("src");
  els.previewCaption.textContent = caption;
  els.removePhoto.setAttribute("aria-label", removeLabel);
  els.preview.hidden = false;
  els.prompt.hidden = true;
}

// -- more like this -------------------------------------------------------------------------

// "More like this" searches by the product's stored vector, in the photo's place: the text box is
// emptied (the results are like the product alone), and words typed afterwards blend with it on the
// slider as with a photo. Filters stay. The product itself is never among the results.
function moreLike(product) {
  clearPhoto();
  state.reference = { id: product.product_id, title: product.title, imageUrl: product.image_url };
  els.text.value = "";
  showPreview(product.image_url, `More like “${product.title}”`, "Clear “More like this”", product.title);
  els.referenceTitle.textContent = product.title;
  if (product.image_url) els.referenceImg.src = product.image_url;
  else els.referenceImg.removeAttribute("src");
  els.clearReference.setAttribute("aria-label", `Clear “More like ${product.title}”`);
  els.reference.hidden = false;
  updateBlend();
  search({ reveal: true });
  els.results.focus({ preventScroll: true }); // the card or dialog button clicked is about to go
}

// Clearing "More like this" searches the words typed, if any, else goes back to the empty page.
function clearReference() {
  clearPhoto();
  if (els.text.value.trim()) {
    search();
    return;
  }
  state.searched = false;
  state.shown = null;
  els.grid.replaceChildren();
  els.summary.textContent = "";
  els.noMatch.hidden = true;
  els.more.hidden = true;
  showFilterPanel();
  showRefinements({ negatives: [] });
  setEmpty("Find it by words, by picture, or both.", "Type a description, drop a photo, then slide between them to refine.");
}

// ?like=<id> (a card's "More like this" link, opened in a new tab say) opens the page on those results.
async function moreLikeFromAddress() {
  const id = new URLSearchParams(window.location.search).get("like");
  if (!id) return;
  window.history.replaceState(null, "", window.location.pathname); // the page keeps no other state in its address
  try {
    moreLike(await api.product(id));
  } catch (error) {
    showError(readable(error));
    if (!(error instanceof api.ApiError)) throw error;
  }
}

// -- product details ------------------------------------------------------------------------

async function openDetails(productId) {
  state.details = productId;
  renderDetailsMessage(els.detailsBody, "Loading product…");
  els.details.showModal();
  try {
    const product = await api.product(productId);
    if (state.details === productId) {
      renderDetails(els.detailsBody, product, {
        onMoreLike: () => {
          els.details.close();
          moreLike(product);
        },
        onSearchImage: () => searchWithImage(product),
      });
    }
  } catch (error) {
    if (state.details === productId) renderDetailsMessage(els.detailsBody, readable(error), { error: true });
    if (!(error instanceof api.ApiError)) throw error;
  }
}

async function searchWithImage(product) {
  let blob;
  try {
    const response = await fetch(product.image_url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    blob = await response.blob();
  } catch {
    renderDetailsMessage(els.detailsBody, "The product’s image could not be loaded. Try again.", { error: true });
    return;
  }
  els.details.close();
  els.text.value = "";
  await usePhoto(new File([blob], `${product.title}.${blob.type.split("/")[1] || "img"}`, { type: blob.type }));
  els.results.focus({ preventScroll: true });
}

// -- service status -------------------------------------------------------------------------

async function showHealth() {
  try {
    const health = await api.health();
    const ok = health.status === "ok";
    els.status.textContent = ok
      ? `${formatCount(health.product_count)} products · model ${health.model}`
      : `Search unavailable: ${health.problem ?? "no index is loaded"}`;
    els.status.classList.toggle("warn", !ok);
    els.footer.textContent = ok
      ? `Index ${health.index_version}, built ${new Date(health.built_at).toLocaleString()} · model ${health.model} (${health.model_hash.slice(0, 12)})`
      : "";
  } catch (error) {
    els.status.textContent = readable(error);
    els.status.classList.add("warn");
    if (!(error instanceof api.ApiError)) throw error;
  }
}

// -- wiring ---------------------------------------------------------------------------------

els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  search({ reveal: true });
});
els.text.addEventListener("input", updateBlend);
els.alpha.addEventListener("input", onSlide);
els.topK.addEventListener("change", () => {
  if (state.searched && (els.text.value.trim() || state.photo || state.reference)) search();
});

els.photo.addEventListener("change", () => {
  if (els.photo.files.length) usePhoto(els.photo.files[0]);
});
els.removePhoto.addEventListener("click", () => {
  if (state.reference) clearReference();
  else clearPhoto();
  els.photo.focus();
});
for (const type of ["dragenter", "dragover"]) {
  els.dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    els.dropZone.classList.add("dragging");
  });
}
els.dropZone.addEventListener("dragleave", (event) => {
  if (!els.dropZone.contains(event.relatedTarget)) els.dropZone.classList.remove("dragging");
});
els.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  els.dropZone.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) usePhoto(file);
});
// A file dropped next to the zone must not navigate away from the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

els.grid.addEventListener("click", (event) => {
  const item = event.target.closest("li");
  if (!item) return;
  const link = event.target.closest("a.more-like");
  if (link) {
    // A plain click searches here; a ctrl/middle click opens the link (?like=<id>) in another tab.
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    moreLike({
      product_id: item.dataset.productId,
      title: item.querySelector(".card-title").textContent,
      image_url: item.querySelector(".card-media img")?.getAttribute("src") ?? null,
    });
  } else if (event.target.closest(".card")) {
    openDetails(item.dataset.productId);
  }
});
els.details.addEventListener("click", (event) => {
  if (event.target === els.details) els.details.close(); // a click on the backdrop
});

els.clearReference.addEventListener("click", () => {
  clearReference();
  els.results.focus();
});
els.clearAll.addEventListener("click", clearAll);
els.showMore.addEventListener("click", showMore);
function openFilters(open) {
  els.filtersToggle.setAttribute("aria-expanded", String(open));
  els.filters.classList.toggle("open", open);
}
els.filtersToggle.addEventListener("click", () => openFilters(els.filtersToggle.getAttribute("aria-expanded") !== "true"));
// On a phone the open panel covers the results: "Show results" folds it and goes to them.
$("filters-done").addEventListener("click", () => {
  openFilters(false);
  $("results-main").focus({ preventScroll: true });
  revealResults(els.results);
});

showAlpha();
updateBlend();
showHealth();
state.fields = loadFields();
moreLikeFromAddress();
