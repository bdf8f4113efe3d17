// What the search box means, and which catalog fields the page offers as filters. No DOM here.

/** The API takes at most this many negative terms. */
export const MAX_NEGATIVES = 5;

// "-leather" or -"faux fur", at the start or after a space: "t-shirt" and a lone "-" are not negatives.
const NEGATIVE = /(^|\s)-(?:"([^"]*)"|([^\s"-][^\s"]*))/g;

const cleanTerm = (term) => term.trim().replace(/[.,;:!?]+$/, "");

/** "red dress -leather -black" → {text: "red dress", negatives: ["leather", "black"]} (case-insensitively unique). */
export function parseSearchText(raw) {
  const negatives = [];
  const seen = new Set();
  const text = raw.replace(NEGATIVE, (match, space, quoted, word) => {
    const term = cleanTerm(quoted ?? word);
    if (!term) return match;
    if (!seen.has(term.toLowerCase())) {
      seen.add(term.toLowerCase());
      negatives.push(term);
    }
    return space;
  });
  return { text: squeeze(text), negatives };
}

/** The search box's text without the negative `term` ("red -leather dress", "leather" → "red dress"). */
export function withoutNegative(raw, term) {
  const key = term.toLowerCase();
  return squeeze(raw.replace(NEGATIVE, (match, space, quoted, word) =>
    (cleanTerm(quoted ?? word).toLowerCase() === key ? space : match)));
}

const squeeze = (text) => text.replace(/\s+/g, " ").trim();

// -- filterable fields --------------------------------------------------------------------------

const PREFERRED_FACETS = ["category", "brand", "gender", "baseColour"];
const MAX_FACETS = 4;
const OTHER_FACET_VALUES = { min: 2, max: 100 }; // fewer is no choice, more is no list

/**
 * From GET /fields' list, what the page offers: up to 4 keyword fields as facets (category, brand,
 * gender and baseColour first, then other fields with 2–100 values), a price range when the index has
 * a "price" number field, and "in stock only" when it has "stock" numbers.
 */
export function chooseFields(fields) {
  const keyword = fields.filter((field) => field.type === "keyword" && field.name !== "in_stock"
    && (field.values ?? 0) >= OTHER_FACET_VALUES.min);
  const preferred = PREFERRED_FACETS.map((name) => keyword.find((field) => field.name === name)).filter(Boolean);
  const others = keyword.filter((field) => !PREFERRED_FACETS.includes(field.name)
    && field.values <= OTHER_FACET_VALUES.max);
  const price = fields.find((field) => field.name === "price" && field.type === "number");
  return {
    facets: [...preferred, ...others].slice(0, MAX_FACETS).map((field) => field.name),
    price: price ? { min: price.min ?? null, max: price.max ?? null } : null,
    // The API's in_stock filter reads the catalog's "stock" numbers.
    inStock: fields.some((field) => field.name === "in_stock" || (field.name === "stock" && field.type === "number")),
  };
}

const LABELS = { baseColour: "Colour", masterCategory: "Department", subCategory: "Type", usage: "Occasion" };

/** A field's name for shoppers: "category" → "Category", "baseColour" → "Colour", "sub_type" → "Sub type". */
export const fieldLabel = (name) => LABELS[name]
  ?? name.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/_/g, " ").toLowerCase().replace(/^./, (c) => c.toUpperCase());
