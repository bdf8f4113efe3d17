"""Randomly initialised open_clip models saved as local folders (open_clip_config.json, weights, tokenizer),
as `hf-hub:` downloads them, for offline export tests and latency measurements.

- "siglip-tiny": the shape of open_clip's SigLIP configs (timm ViT with attention pooling, text tower without
  causal mask pooling the last position, a SentencePiece tokenizer.json with the "canonicalize" clean-up,
  squash resize, mean/std 0.5) at test size: timm's `test_vit3` (160 px) and a two-layer text tower.
- "clip-tiny": open_clip's CLIP class with its own ViT and OpenAI's BPE (SimpleTokenizer), 32 px.
- any built-in open_clip config name ("ViT-B-16-SigLIP", "ViT-B-16-SigLIP-256", ...): that architecture with
  random weights; SigLIP configs get the small SentencePiece vocabulary (the embedding table keeps its size).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

SIGLIP_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                     "resize_mode": "squash"}
_TINY_TEXT = {"width": 32, "heads": 2, "layers": 2}
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "siglip-tiny": {
        "embed_dim": 96,  # test_vit3's width: the attention pool's output is the embedding (timm_proj none)
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {"image_size": 160, "timm_model_name": "test_vit3", "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {"context_length": 64, "vocab_size": 160, "hf_tokenizer_name": "local",
                     "tokenizer_kwargs": {"clean": "canonicalize"}, **_TINY_TEXT, "no_causal_mask": True,
                     "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}},
    },
    "clip-tiny": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, **_TINY_TEXT},
    },
}


def _save_siglip_tokenizer(folder: Path) -> None:
    """A T5-style tokenizer.json (as timm/ViT-B-16-SigLIP ships) over the small SentencePiece vocabulary."""
    from transformers import T5Tokenizer

    from model_export.siglip_random import sentencepiece_model

    spm = folder / "spiece.model"
    spm.write_bytes(sentencepiece_model())
    T5Tokenizer(vocab_file=str(spm), extra_ids=0, pad_token="</s>", model_max_length=64).save_pretrained(str(folder))
    spm.unlink()  # tokenizer.json only, like the hub's


def make_random_open_clip(folder: str | Path, arch: str = "siglip-tiny", *, seed: int = 0) -> Path:
    """Save a random open_clip model of `arch` with its config, preprocessing and tokenizer to `folder`."""
    import open_clip
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if arch in TINY_CONFIGS:
        model_cfg = copy.deepcopy(TINY_CONFIGS[arch])
    else:
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise ValueError(f"unknown open_clip architecture {arch!r}")
    siglip = "hf_tokenizer_name" in model_cfg.get("text_cfg", {})
    if siglip:
        model_cfg["text_cfg"]["hf_tokenizer_name"] = "local"  # local-dir: loads the folder's own tokenizer
        _save_siglip_tokenizer(folder)
    preprocess = SIGLIP_PREPROCESS if siglip else {"resize_mode": "shortest", "interpolation": "bicubic"}
    preprocess = {**preprocess, "size": model_cfg["vision_cfg"]["image_size"]}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder.resolve()}", device="cpu", load_weights=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder
