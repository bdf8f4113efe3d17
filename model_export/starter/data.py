"""The fashion feed as training and evaluation data: products, the validation split, captions, pixels.

No torch here: the evaluation (model_export.evaluate) and the benchmark import this module too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashion_search.model.bundle import ImageSpec
from fashion_search.model.embedder import image_to_array
from fashion_search.model.images import decode_image

# ../shared/data relative to the repository root (model_export/starter/data.py -> parents[2]).
DEFAULT_FEED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fashion" / "feed.jsonl"
CACHE_DIR = Path.home() / ".cache" / "fashion-search" / "starter"

VALIDATION_PERCENT = 5
VALIDATION_RULE = (
    f"a product is in the validation split iff int(sha256(id as UTF-8).hexdigest()[:8], 16) % 100 "
    f"< {VALIDATION_PERCENT}"
)
# The honest split: ids rise with time in this feed, so the newest ids stand for next week's arrivals.
# The hash split above interleaves with training ids (near-twins of each held-out product are trained
# on); it is kept for comparison with earlier models. Training uses neither split.
TIME_SPLIT_PERCENT = 5
TIME_SPLIT_RULE = (f"a product is in the time split iff its numeric id is among the highest {TIME_SPLIT_PERCENT}% "
                   "of the feed's ids (the newest products)")

# The unisex products are for anyone: a "for unisex" query is no shopper's, so it has no entry here.
GENDER_WORD = {"Men": "men", "Women": "women", "Boys": "boys", "Girls": "girls"}
_GENDER_WORD = {**GENDER_WORD, "Unisex": "unisex"}
_GENDER_POSSESSIVE = {"Men": "men's", "Women": "women's", "Boys": "boys'", "Girls": "girls'", "Unisex": "unisex"}
# How a shopper spells the catalog's article types (plural); the rest are just lower-cased.
_TYPE_PLURAL = {"Tshirts": "t-shirts", "Bra": "bras", "Trunk": "trunks", "Perfume and Body Mist": "perfumes",
                "Free Gifts": "gifts", "Lehenga Choli": "lehenga cholis", "Night suits": "night suits"}
# Singular forms that do not come from dropping a trailing "s".
_TYPE_SINGULAR = {"Tshirts": "t-shirt", "Jeans": "jeans", "Shorts": "shorts", "Trousers": "trousers",
                  "Capris": "capris", "Leggings": "leggings", "Jeggings": "jeggings", "Briefs": "briefs",
                  "Boxers": "boxers", "Sunglasses": "sunglasses", "Track Pants": "track pants",
                  "Lounge Pants": "lounge pants", "Lounge Shorts": "lounge shorts", "Tights": "tights",
                  "Stockings": "stockings", "Churidar": "churidar", "Salwar": "salwar", "Patiala": "patiala",
                  "Swimwear": "swimwear", "Innerwear Vests": "innerwear vest", "Dresses": "dress",
                  "Watches": "watch", "Sarees": "saree", "Accessory Gift Set": "accessory gift set",
                  "Fragrance Gift Set": "fragrance gift set", "Perfume and Body Mist": "perfume",
                  "Free Gifts": "gift", "Necklace and Chains": "necklace", "Cufflinks": "cufflinks",
                  "Kurta Sets": "kurta set", "Night suits": "night suit", "Tracksuits": "tracksuit",
                  "Lehenga Choli": "lehenga choli", "Suspenders": "suspenders", "Flip Flops": "flip flops",
                  "Mufflers": "muffler", "Bra": "bra", "Trunk": "trunks", "Scarves": "scarf",
                  "Shoe Accessories": "shoe accessory"}
_COLOUR_WORD = {"Multi": "multicolour", "NA": ""}

# Shopper vocabulary for training-caption augmentation (see synonym_captions): a general lexicon of
# common names and shades for each of the catalog's 45 base colours, and everyday words for some
# article types. Frozen MiniLM knows few colour names ("crimson dress" sits nearer brown and purple
# dresses than red ones), so the trained head has to learn them from captions. No entry is itself a
# catalog colour, and no colour entry contains the word of another catalog colour ("dark red" is not
# Maroon's, "hot pink" is not Magenta's), so the augmentation never contradicts a catalog word.
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "Black": ("jet black", "ebony", "onyx", "pitch black"),
    "White": ("snow white", "pure white", "optic white", "bright white"),
    "Blue": ("cobalt", "azure", "sapphire", "royal blue", "sky blue", "cerulean"),
    "Brown": ("chestnut", "walnut", "cocoa", "hazel"),
    "Grey": ("gray", "ash grey", "dove grey", "smoke grey"),
    "Red": ("crimson", "scarlet", "ruby", "cherry", "vermilion", "cherry red"),
    "Green": ("emerald", "forest green", "bottle green", "jade"),
    "Navy Blue": ("navy", "midnight blue", "dark blue", "ink blue"),
    "Purple": ("violet", "plum", "grape", "amethyst", "aubergine"),
    "Pink": ("blush", "baby pink", "rose pink", "bubblegum pink"),
    "Beige": ("sand", "fawn", "stone"),
    "Yellow": ("lemon", "canary yellow", "sunflower"),
    "Maroon": ("wine", "claret"),
    "Silver": ("silvery", "platinum"),
    "Orange": ("tangerine", "amber", "pumpkin"),
    "Olive": ("moss", "army", "olive drab"),
    "Gold": ("golden", "gilt"),
    "Cream": ("ivory", "vanilla", "eggshell"),
    "Steel": ("stainless steel", "chrome"),
    "Charcoal": ("graphite", "slate", "anthracite"),
    "Off White": ("ecru", "natural white"),
    "Multi": ("multicoloured", "multicolored", "colourful", "rainbow"),
    "Tan": ("camel", "caramel", "cognac"),
    "Khaki": (),
    "Lavender": ("lilac", "wisteria"),
    "Magenta": ("fuchsia", "cerise"),
    "Peach": ("apricot", "coral", "salmon"),
    "Copper": ("coppery",),
    "Teal": ("peacock", "petrol", "dark cyan"),
    "Grey Melange": ("heather grey", "marl grey", "heather gray"),
    "Mustard": ("ochre", "turmeric"),
    "Turquoise Blue": ("turquoise", "aqua", "cyan"),
    "Rust": ("terracotta", "brick", "sienna"),
    "Metallic": ("shimmery",),
    "Bronze": ("brass",),
    "Skin": (),
    "Coffee Brown": ("espresso", "mocha", "dark brown", "chocolate brown"),
    "Burgundy": ("bordeaux", "oxblood"),
    "NA": (),
    "Nude": ("flesh",),
    "Sea Green": ("mint", "mint green", "seafoam"),
    "Taupe": ("greige", "mushroom"),
    "Mauve": ("dusty rose", "old rose"),
    "Fluorescent Green": ("neon green",),
    "Lime Green": ("lime", "chartreuse"),
}
# Everyday words for article types, as (singular, plural); none is a catalog article type.
TYPE_SYNONYMS: dict[str, tuple[tuple[str, str], ...]] = {
    "Dresses": (("gown", "gowns"), ("frock", "frocks")),
    "Watches": (("timepiece", "timepieces"), ("wristwatch", "wristwatches")),
    "Sunglasses": (("shades", "shades"),),
    "Casual Shoes": (("sneakers", "sneakers"), ("trainers", "trainers")),
    "Sports Shoes": (("trainers", "trainers"), ("running shoes", "running shoes"), ("sneakers", "sneakers")),
    "Formal Shoes": (("dress shoes", "dress shoes"), ("oxfords", "oxfords")),
    "Heels": (("pumps", "pumps"), ("stilettos", "stilettos")),
    "Handbags": (("purse", "purses"), ("tote", "totes")),
    "Tshirts": (("tee", "tees"),),
    "Tops": (("blouse", "blouses"),),
    "Trousers": (("pants", "pants"), ("slacks", "slacks")),
    "Jeans": (("denims", "denims"),),
    "Track Pants": (("joggers", "joggers"),),
    "Sweaters": (("jumper", "jumpers"), ("pullover", "pullovers")),
    "Wallets": (("billfold", "billfolds"),),
}


@dataclass(frozen=True)
class Product:
    """One catalog row reduced to what training and evaluation use."""

    id: str
    title: str
    image: Path
    gender: str
    colour: str
    article_type: str

    @property
    def attributes(self) -> tuple[str, str, str]:
        """(gender, colour, article type): equal triples are relevant to the same attribute query."""
        return (self.gender, self.colour, self.article_type)


def load_products(feed: str | Path = DEFAULT_FEED) -> list[Product]:
    """Read a fashion feed (JSONL); image paths are resolved against the feed's folder."""
    feed = Path(feed).resolve()
    products = []
    with feed.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            attrs = row.get("attributes", {})
            products.append(Product(
                id=str(row["id"]),
                title=row["title"],
                image=feed.parent / row["image"],
                gender=str(attrs.get("gender", "")),
                colour=str(attrs.get("baseColour", "")),
                article_type=str(row.get("category", "")),
            ))
    return products


def is_validation(product_id: str) -> bool:
    """The held-out split, a pure function of the id so any tool can reproduce it (VALIDATION_RULE)."""
    return int(hashlib.sha256(product_id.encode()).hexdigest()[:8], 16) % 100 < VALIDATION_PERCENT


def split_indices(products: list[Product]) -> tuple[np.ndarray, np.ndarray]:
    """(not in the hash validation split, in it) row indices."""
    val = np.array([is_validation(p.id) for p in products])
    return np.flatnonzero(~val), np.flatnonzero(val)


def time_split_indices(products: list[Product]) -> tuple[np.ndarray, np.ndarray]:
    """(older, newest TIME_SPLIT_PERCENT %) row indices by numeric id."""
    ids = np.array([int(p.id) for p in products])
    order = np.argsort(ids, kind="stable")
    newest = np.zeros(len(products), dtype=bool)
    newest[order[len(order) - round(len(order) * TIME_SPLIT_PERCENT / 100):]] = True
    return np.flatnonzero(~newest), np.flatnonzero(newest)


def training_indices(products: list[Product]) -> np.ndarray:
    """Rows in neither held-out split: the only products a model is trained on."""
    held_out = np.zeros(len(products), dtype=bool)
    held_out[split_indices(products)[1]] = True
    held_out[time_split_indices(products)[1]] = True
    return np.flatnonzero(~held_out)


def colour_word(colour: str) -> str:
    return _COLOUR_WORD.get(colour, colour.lower())


def type_plural(article_type: str) -> str:
    return _TYPE_PLURAL.get(article_type, article_type.lower())


def type_singular(article_type: str) -> str:
    if article_type in _TYPE_SINGULAR:
        return _TYPE_SINGULAR[article_type]
    lower = article_type.lower()
    if lower.endswith(("ches", "shes", "sses")):
        return lower[:-2]
    return lower[:-1] if lower.endswith("s") else lower


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def catalog_caption(p: Product) -> str:
    """The catalog's own attribute phrasing: "Men Navy Blue Shirts"."""
    return _join(p.gender, "" if p.colour == "NA" else p.colour, p.article_type)


def _shopper_captions(p: Product, colour: str, singular: str) -> list[str]:
    gender = _GENDER_WORD.get(p.gender, p.gender.lower())
    for_gender = "" if p.gender == "Unisex" else f"for {gender}"
    return [
        _join(colour, singular, for_gender),  # "navy blue shirt for men"
        _join(_GENDER_POSSESSIVE.get(p.gender, gender), colour, singular),  # "men's navy blue shirt"
        _join(colour, singular),  # "navy blue shirt"
    ]


def attribute_captions(p: Product) -> list[str]:
    """Ways a shopper describes the product's attributes, used as training captions.

    The evaluation's query phrasing (attribute_query: "navy blue shirts for men") is deliberately
    not among them, so the attribute metric measures phrasing the model was not trained on.
    """
    captions = [catalog_caption(p), *_shopper_captions(p, colour_word(p.colour), type_singular(p.article_type))]
    return list(dict.fromkeys(captions))


def synonym_captions(p: Product) -> list[tuple[str, str]]:
    """The shopper captions of attribute_captions with lexicon words (COLOUR_SYNONYMS, TYPE_SYNONYMS)
    in place of the catalog's colour and/or type word, each paired with the catalog-word caption it
    stands for: [("crimson dress for women", "red dress for women"), ("red gown for women", ...), ...].

    Training swaps some attribute captions for one of these (TrainConfig.synonym_share) and treats a
    synonym caption as the same positive as its catalog-word caption.
    """
    colour, singular = colour_word(p.colour), type_singular(p.article_type)
    colours = [colour, *COLOUR_SYNONYMS.get(p.colour, ())] if colour else [colour]
    types = [singular, *(s for s, _ in TYPE_SYNONYMS.get(p.article_type, ()))]
    canonical = _shopper_captions(p, colour, singular)
    out = {}
    for c in colours:
        for t in types:
            if (c, t) != (colour, singular):
                for caption, base in zip(_shopper_captions(p, c, t), canonical, strict=True):
                    out.setdefault(caption, base)
    return list(out.items())


def attribute_query(attributes: tuple[str, str, str]) -> str:
    """The evaluation's shopper query for a (gender, colour, type) triple: "navy blue shirts for men"."""
    gender, colour, article_type = attributes
    words = _join(colour_word(colour), type_plural(article_type))
    if gender == "Unisex":
        return f"unisex {words}"
    return _join(words, "for", _GENDER_WORD.get(gender, gender.lower()))


def load_pixels(products: list[Product], spec: ImageSpec, cache_dir: Path | None = CACHE_DIR) -> np.ndarray:
    """All product images as uint8 [N, H, W, 3], preprocessed exactly as the runtime Embedder does.

    Cached as .npy keyed by the image paths and the spec, so training epochs never decode JPEGs.
    """
    key = hashlib.sha256(json.dumps([[str(p.image) for p in products], spec.model_dump(mode="json")])
                         .encode()).hexdigest()[:16]
    path = cache_dir / f"pixels-{key}.npy" if cache_dir else None
    if path and path.is_file():
        return np.load(path)
    # Mean 0 / std 1 keeps image_to_array's resize/pad but leaves the values in [0, 1].
    raw = spec.model_copy(update={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})
    out = np.empty((len(products), spec.height, spec.width, 3), dtype=np.uint8)
    for i, p in enumerate(products):
        arr = image_to_array(decode_image(p.image.read_bytes()), raw)
        out[i] = np.clip(np.rint(arr.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), out)
        path.with_suffix(".tmp.npy").replace(path)
    return out
