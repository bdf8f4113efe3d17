// The search page: inputs, the one-request-at-a-time search loop, results and the details dialog.

import * as api from "./api.js";
import { PhotoError, preparePhoto } from "./image.js";
import { formatCount, renderCards, renderDetails, renderDetailsMessage, renderSkeletons } from "./render.js";

const SLIDER_DEBOUNCE_MS = 200;
const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), text: $("text"), photo: $("photo"), dropZone: $("drop-zone"), prompt: $("drop-prompt"),
  preview: $("preview"), previewImg: $("preview-img"), previewCaption: $("preview-caption"),
  removePhoto: $("remove-photo"), blend: $("blend"), blendHelp: $("blend-help"), alpha: $("alpha"), alphaValue: $("alpha-value"),
  topK: $("top-k"), error: $("error"), results: $("results"), summary: $("summary"),
  empty: $("empty"), noMatch: $("no-match"), grid: $("grid"), status: $("status"), footer: $("footer-info"),
  details: $("details"), detailsBody: $("details-body"),
};

const state = {
  photo: null, // {dataUrl, previewUrl, ...} from preparePhoto, or null
  searched: false, // whether results (or an error) for some query are on screen
  inFlight: false,
  queued: null, // the latest query asked for while a request was in flight
  details: null, // the product id the details dialog was last opened for
};

// -- searching ------------------------------------------------------------------------------

function currentQuery() {
  return {
    text: els.text.value.trim(),
    image: state.photo?.dataUrl,
    alpha: Number(els.alpha.value),
    topK: Number(els.topK.value),
  };
}

function search() {
  const query = currentQuery();
  if (!query.text && !query.image) {
    showError("Type a description or add a photo to search.");
    els.text.focus();
    return;
  }
  run(query);
}

// One request in flight at a time: a query asked for meanwhile waits, and only the latest one is sent.
// A response is shown only if no newer query is waiting (otherwise it is already stale).
async function run(query) {
  if (state.inFlight) {
    state.queued = query;
    return;
  }
  state.inFlight = true;
  setLoading(true);
  try {
    const response = await api.search(query);
    if (!state.queued) showResults(response);
  } catch (error) {
    if (!state.queued) showFailure(readable(error));
    if (!(error instanceof api.ApiError)) throw error;
  } finally {
    state.inFlight = false;
    const next = state.queued;
    state.queued = null;
    if (next) run(next);
    else setLoading(false);
  }
}

function setLoading(loading) {
  els.grid.setAttribute("aria-busy", String(loading));
  els.results.classList.toggle("loading", loading);
  if (!loading) return;
  hideError();
  els.empty.hidden = true;
  els.noMatch.hidden = true;
  els.summary.textContent = "Searching…";
  // Re-ranking keeps the current cards in place; a first search shows placeholders.
  if (!els.grid.querySelector(".card")) renderSkeletons(els.grid, Math.min(Number(els.topK.value), 12));
}

function showResults(response) {
  state.searched = true;
  renderCards(els.grid, response.results);
  const count = response.total_results;
  const kind = {
    text: "text search",
    image: "photo search",
    hybrid: `text + photo, ${Math.round(response.alpha_used * 100)}% photo`,
  }[response.search_type];
  els.summary.textContent = count
    ? `${formatCount(count)} ${count === 1 ? "product" : "products"} · ${kind} · ${response.query_time < 1 ? "<1" : Math.round(response.query_time)} ms`
    : "";
  if (!count) setEmpty("No products matched.", "Try other words or another photo.");
  // good_match null: the model is not calibrated, so the page cannot tell; it says nothing.
  els.noMatch.hidden = !(count && response.good_match === false);
  els.grid.classList.toggle("weak", Boolean(count && response.good_match === false));
}

function showFailure(message) {
  state.searched = true;
  els.grid.replaceChildren();
  els.noMatch.hidden = true;
  els.summary.textContent = "";
  showError(message);
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

// -- inputs ---------------------------------------------------------------------------------

// The slider blends text and photo, so it is active only when both are given (and says so otherwise).
function updateBlend() {
  const ready = Boolean(els.text.value.trim() && state.photo);
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
    if (!els.blend.disabled) run(currentQuery());
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
  els.previewImg.src = state.photo.previewUrl;
  const resized = photo.width !== photo.originalWidth ? `${photo.originalWidth}×${photo.originalHeight} → ` : "";
  els.previewCaption.textContent = `${file.name} · ${resized}${photo.width}×${photo.height} · ${Math.ceil(photo.blob.size / 1024)} KB`;
  els.preview.hidden = false;
  els.prompt.hidden = true;
  updateBlend();
  search();
}

function clearPhoto() {
  if (state.photo) URL.revokeObjectURL(state.photo.previewUrl);
  state.photo = null;
  els.photo.value = "";
  els.previewImg.removeAttribute("src");
  els.previewCaption.textContent = "";
  els.preview.hidden = true;
  els.prompt.hidden = false;
  updateBlend();
}

// -- product details ------------------------------------------------------------------------

async function openDetails(productId) {
  state.details = productId;
  renderDetailsMessage(els.detailsBody, "Loading product…");
  els.details.showModal();
  try {
    const product = await api.product(productId);
    if (state.details === productId) renderDetails(els.detailsBody, product, () => searchWithImage(product));
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
  els.results.focus();
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
  search();
});
els.text.addEventListener("input", updateBlend);
els.alpha.addEventListener("input", onSlide);
els.topK.addEventListener("change", () => {
  if (state.searched && (els.text.value.trim() || state.photo)) search();
});

els.photo.addEventListener("change", () => {
  if (els.photo.files.length) usePhoto(els.photo.files[0]);
});
els.removePhoto.addEventListener("click", () => {
  clearPhoto();
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
  const card = event.target.closest(".card");
  if (card) openDetails(card.closest("li").dataset.productId);
});
els.details.addEventListener("click", (event) => {
  if (event.target === els.details) els.details.close(); // a click on the backdrop
});

showAlpha();
updateBlend();
showHealth();
