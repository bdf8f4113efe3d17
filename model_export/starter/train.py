"""`fashion-search train-starter`: train the offline starter model and write it as a bundle.

Frozen all-MiniLM-L6-v2 (its sentence vectors are computed once and cached) + a trained projection
head meet a compact CNN trained from scratch with symmetric InfoNCE (learned temperature) on the
fashion feed, minus a validation split held out by id. Runs on 2 CPU cores; seeds are fixed.

    python -m model_export.starter.train --out models/fashion-starter
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fashion_search.bundle import ImageSpec
from model_export.evaluate import (
    FREE_TEXT_QUERIES,
    AttributeQueries,
    attribute_precision,
    exact_search,
    title_recall,
)
from model_export.starter.data import (
    CACHE_DIR,
    DEFAULT_FEED,
    Product,
    attribute_captions,
    load_pixels,
    load_products,
    split_indices,
    synonym_captions,
)
from model_export.starter.models import ImageTower, TextHead, encode_sentences

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models" / "fashion-starter"


@dataclass
class TrainConfig:
    """Every setting that shapes the model; recorded in bundle.json and the model card."""

    epochs: int = 28
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.1  # share of steps of the one-cycle warm-up
    dim: int = 256
    widths: tuple[int, ...] = (48, 96, 192, 384)
    stem_stride: int = 2
    head_hidden: int = 1024
    dropout: float = 0.1
    hard_share: float = 0.5  # share of each batch made of same-gender-and-type runs (see batches)
    hard_from: float = 0.5  # hard batches start after this share of the epochs
    group_size: int = 32
    attribute_weight: float = 1.0  # loss weight of the attribute captions next to the titles
    synonym_share: float = 0.3  # chance an attribute caption uses lexicon words (data.synonym_captions)
    label_smoothing: float = 0.1
    init_temperature: float = 0.07
    max_shift: int = 4  # random translation in pixels (white fill); plus horizontal flips
    max_tokens: int = 64
    bf16: bool = True  # bfloat16 autocast for the CNN (about 2x faster on AVX-512 CPUs)
    seed: int = 0
    threads: int = 2
    image: ImageSpec = field(default_factory=lambda: ImageSpec(height=80, width=60, resize="pad"))

    def record(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["image"] = self.image.model_dump(mode="json")
        return out

    @classmethod
    def from_record(cls, record: dict) -> TrainConfig:
        return cls(**{**record, "widths": tuple(record["widths"]), "image": ImageSpec(**record["image"])})


@dataclass
class Corpus:
    """Products with their pixels and the frozen MiniLM vector of every caption and evaluation query."""

    products: list[Product]
    pixels: np.ndarray  # uint8 [N, H, W, 3]
    train: np.ndarray
    val: np.ndarray
    texts: list[str]
    features: np.ndarray  # [len(texts), 384]
    title_ids: np.ndarray  # [N] row of each product's title in texts
    attribute_ids: list[list[int]]  # per product, rows of its attribute captions
    synonym_ids: list[list[tuple[int, int]]]  # per product, (row of a synonym caption, row of its catalog-word caption)
    queries: AttributeQueries  # evaluation attribute queries of the validation split

    def text_rows(self, texts: list[str]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.texts)}
        return np.array([index[t] for t in texts])


def load_corpus(config: TrainConfig, feed: Path, cache_dir: Path | None, limit: int | None = None) -> Corpus:
    """Read the feed, decode/cache the pixels, and encode/cache every caption with frozen MiniLM."""
    products = load_products(feed)[:limit]
    train, val = split_indices(products)
    pixels = load_pixels(products, config.image, cache_dir)
    queries = AttributeQueries.from_products([products[i] for i in val])
    per_product = [attribute_captions(p) for p in products]
    # Synonym captions depend only on (gender, colour, type): built once per triple.
    by_triple: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for p in products:
        if p.attributes not in by_triple:
            by_triple[p.attributes] = synonym_captions(p)
    synonyms = [by_triple[p.attributes] for p in products]
    # Every caption that training can draw is in `texts`, so its MiniLM vector is encoded (and the
    # cache key, a hash of all texts, changes with the caption set).
    texts = sorted({p.title for p in products} | {c for cs in per_product for c in cs}
                   | {c for pairs in synonyms for c, _ in pairs} | set(queries.texts) | set(FREE_TEXT_QUERIES))
    index = {t: i for i, t in enumerate(texts)}
    print(f"corpus: {len(train)} training / {len(val)} validation products, {len(texts)} distinct texts",
          flush=True)
    features = encode_sentences(texts, max_tokens=config.max_tokens, cache_dir=cache_dir)
    return Corpus(products, pixels, train, val, texts, features,
                  np.array([index[p.title] for p in products]),
                  [[index[c] for c in cs] for cs in per_product],
                  [[(index[c], index[base]) for c, base in pairs] for pairs in synonyms], queries)


class StarterModel(nn.Module):
    """The two trained parts and the learned temperature."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.text = TextHead(hidden=config.head_hidden, out_dim=config.dim, dropout=config.dropout)
        self.image = ImageTower(config.widths, config.stem_stride, config.dim, config.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))


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
    row, so it is a positive of every photo drawn with "red dress for women"; otherwise one of the
    product's own captions (key = its row). With synonym_share 0 the draws are those of earlier runs."""
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


class Pixels:
    """uint8 HWC arrays -> normalised float tensors, with the colour-preserving augmentations."""

    def __init__(self, spec: ImageSpec) -> None:
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)
        self.pad_value = torch.tensor(spec.pad_color, dtype=torch.float32).view(1, 3, 1, 1) / 255.0

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator | None = None,
                 max_shift: int = 0) -> torch.Tensor:
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        if rng is not None:
            flip = torch.from_numpy(rng.random(len(x)) < 0.5)
            x[flip] = x[flip].flip(3)
            if max_shift:
                x = self._shift(x, rng, max_shift)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def _shift(self, x: torch.Tensor, rng: np.random.Generator, s: int) -> torch.Tensor:
        """Translate each image by up to s pixels, filling with the background colour."""
        n, _, h, w = x.shape
        canvas = self.pad_value.expand(n, 3, h + 2 * s, w + 2 * s).clone()
        canvas[:, :, s : s + h, s : s + w] = x
        dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
        return torch.stack([canvas[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.inference_mode()
def encode_images(model: StarterModel, pixels: np.ndarray, to_tensor: Pixels, bf16: bool) -> np.ndarray:
    out = []
    for i in range(0, len(pixels), 512):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out.append(F.normalize(model.image(to_tensor(pixels[i : i + 512])).float(), dim=-1))
    return torch.cat(out).numpy()


@torch.inference_mode()
def encode_texts(model: StarterModel, features: np.ndarray) -> np.ndarray:
    return F.normalize(model.text(torch.from_numpy(features)), dim=-1).numpy()


def validate(model: StarterModel, corpus: Corpus, to_tensor: Pixels, bf16: bool) -> dict[str, float]:
    """Per-epoch check on unseen images: title R@1/R@10 and attribute P@10 over the validation gallery."""
    model.eval()
    gallery = encode_images(model, corpus.pixels[corpus.val], to_tensor, bf16)
    search = exact_search(gallery)
    titles = encode_texts(model, corpus.features[corpus.title_ids[corpus.val]])
    queries = encode_texts(model, corpus.features[corpus.text_rows(corpus.queries.texts)])
    recall = title_recall(titles, np.arange(len(corpus.val)), search)
    attrs = attribute_precision(queries, corpus.queries, [corpus.products[i].attributes for i in corpus.val],
                                search)
    model.train()
    return {**recall, "attrP@10c": attrs["P@10_capped"]}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: TrainConfig, corpus: Corpus, max_steps: int | None = None,
          log: bool = True) -> tuple[StarterModel, list[dict[str, float]]]:
    """Train from scratch; returns the model (eval mode) and the per-epoch history."""
    seed_everything(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    model = StarterModel(config)
    model.image.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    # All epochs' batches up front (own RNG), so the one-cycle schedule knows the exact step count.
    batch_rng = np.random.default_rng(config.seed + 1)
    plan = [batches(corpus, config, batch_rng, hard=epoch >= config.hard_from * config.epochs)
            for epoch in range(config.epochs)]
    total = sum(len(epoch) for epoch in plan) if max_steps is None else max_steps
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                    pct_start=config.warmup)
    to_tensor = Pixels(config.image)
    features = torch.from_numpy(corpus.features)
    history: list[dict[str, float]] = []
    start, step = time.monotonic(), 0
    model.train()
    for epoch, epoch_batches in enumerate(plan, 1):
        epoch_start, losses = time.monotonic(), []
        for rows in epoch_batches:
            images = to_tensor(corpus.pixels[rows], rng, config.max_shift)
            title_ids = torch.from_numpy(corpus.title_ids[rows])
            attr_ids, attr_keys = attribute_batch(corpus, rows, rng, config.synonym_share)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                image_vectors = model.image(images)
            image_vectors = F.normalize(image_vectors.float(), dim=-1)
            texts = F.normalize(model.text(features[torch.cat([title_ids, attr_ids])]), dim=-1)
            loss = contrastive_loss(image_vectors, texts[: len(rows)], title_ids, model.logit_scale,
                                    config.label_smoothing)
            if config.attribute_weight:
                loss = loss + config.attribute_weight * contrastive_loss(
                    image_vectors, texts[len(rows) :], attr_keys, model.logit_scale, config.label_smoothing)
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
                   **validate(model, corpus, to_tensor, config.bf16), "seconds": time.monotonic() - epoch_start}
        history.append(metrics)
        if log:
            elapsed = time.monotonic() - start
            eta = elapsed / epoch * (config.epochs - epoch)
            print(f"epoch {epoch:2d}/{config.epochs}  loss {metrics['loss']:.3f}  "
                  f"temp {metrics['temperature']:.3f}  val: title R@1 {metrics['R@1']:.3f} "
                  f"R@10 {metrics['R@10']:.3f}  attr P@10 {metrics['attrP@10c']:.3f}  "
                  f"[{metrics['seconds']:.0f} s/epoch, elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min]",
                  flush=True)
        if step == max_steps:
            break
    model.eval()
    return model, history


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feed", default=str(DEFAULT_FEED), help="fashion feed (JSONL) to train on")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="bundle folder to write")
    parser.add_argument("--cache-dir", default=str(CACHE_DIR),
                        help="where decoded pixels and MiniLM vectors are cached")
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
    if args.export_only:
        saved = torch.load(checkpoint, weights_only=True)
        config = TrainConfig.from_record(saved["config"])
        model = StarterModel(config)
        model.load_state_dict(saved["state_dict"])
        history, minutes = saved["history"], saved["minutes"]
    else:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, threads=args.threads)
        torch.set_num_threads(config.threads)
        started = time.monotonic()
        corpus = load_corpus(config, Path(args.feed), Path(args.cache_dir), args.limit)
        prepared = time.monotonic()
        model, history = train(config, corpus, args.max_steps)
        minutes = {"prepare": (prepared - started) / 60, "train": (time.monotonic() - prepared) / 60}
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": config.record(), "state_dict": model.state_dict(), "history": history,
                    "minutes": minutes}, checkpoint)
    export_bundle(model.eval(), config, history, Path(args.out), minutes=minutes, feed=Path(args.feed))
    return 0

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
