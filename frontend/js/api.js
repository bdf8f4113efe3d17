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

/** POST /search with {text?, image? (data URL), alpha, top_k}. */
export function search({ text, image, alpha, topK }) {
  const body = { alpha, top_k: topK };
  if (text) body.text = text;
  if (image) body.image = image;
  return request("/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

export const product = (id) => request(`/products/${encodeURIComponent(id)}`);

export const health = () => request("/health");
