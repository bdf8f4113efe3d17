// HTTP access to the search API. The base URL comes from /config.json ("" = same origin).

/** A failure worth showing to the shopper as is: its message is readable, never a JSON dump. */
export class ApiError extends Error {}

let baseUrl = null; // a promise of the base URL, shared by concurrent requests

async function loadConfig() {
  let response;
  try {
    response = await fetch("config.json", { cache: "no-cache" });
  } catch {
    throw new ApiError("Can’t reach the site to load its configuration. Check your connection and reload.");
  }
  if (!response.ok) {
    throw new ApiError(`The site’s configuration could not be loaded (HTTP ${response.status}).`);
  }
  const config = await response.json().catch(() => {
    throw new ApiError("The site’s configuration (config.json) is not valid JSON.");
  });
  return String(config.apiBaseUrl ?? "").replace(/\/+$/, "");
}

async function request(path, init = {}) {
  baseUrl ??= loadConfig().catch((error) => {
    baseUrl = null; // try again on the next request
    throw error;
  });
  const base = await baseUrl;
  let response;
  try {
    response = await fetch(`${base}/api/v1${path}`, { ...init, headers: { Accept: "application/json", ...init.headers } });
  } catch {
    throw new ApiError("Can’t reach the search service. Check your connection and try again.");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    // Our API answers {"error": {"code", "message"}}; API Gateway's own errors answer {"message"}.
    const message = body?.error?.message ?? body?.message ?? `The search service answered HTTP ${response.status}.`;
    throw new ApiError(capitalize(message));
  }
  if (body === null) throw new ApiError("The search service sent a response this page can’t read.");
  return body;
}

const capitalize = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/**
 * POST /search. `query`: {text?, negatives? [terms], image? (data URL), productId?, alpha, topK, offset?,
 * filters? {field: [values] | true | {gte?, lte?}}, facets? [fields]}. Optional parts are sent only when set.
 */
export function search(query) {
  const body = { alpha: query.alpha, top_k: query.topK };
  if (query.text) body.text = query.text;
  if (query.negatives?.length) body.negative_text = query.negatives;
  if (query.image) body.image = query.image;
  if (query.productId) body.product_id = query.productId;
  if (query.filters && Object.keys(query.filters).length) body.filters = query.filters;
  if (query.facets?.length) body.facets = query.facets;
  if (query.offset) body.offset = query.offset;
  return request("/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** GET /fields: what the live index can filter and facet on, [{name, type: "keyword"|"number", values?, min?, max?}]. */
export const fields = () => request("/fields");

export const product = (id) => request(`/products/${encodeURIComponent(id)}`);

export const health = () => request("/health");
