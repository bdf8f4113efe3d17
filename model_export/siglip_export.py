"""A Hugging Face SigLIP checkpoint (`SiglipModel`) -> a model bundle, following SiglipModel's own features.

- text: the tokenizer's ids, always padded to max_length (64) with its pad token (</s>) and no attention
  mask, as SigLIP was trained; the feature is `text_model.head` over the last position (padding
  included), not CLIP's end-token pooling. SigLIP's SentencePiece vocabulary (`spiece.model`, no
  tokenizer.json) becomes a tokenizer.json with SiglipTokenizer's clean-up in front (tokenizers_convert).
- image: the vision tower's attention-pool (MAP head) output; pixels resized straight to the model's size
  (the "squash" resize), bicubic, mean/std from the processor config (0.5).
- logit_scale and logit_bias stay out: they rescale scores, never the ranking of one query's results.

Fixed-resolution SigLIP 2 checkpoints (google/siglip2-*-patch16-224 ...) are SiglipModel checkpoints with a
Gemma tokenizer.json and export the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from fashion_search.model.bundle import BundleSpec, ImageSpec, TextSpec, write_bundle_json
from model_export.clip_export import (
    INT8_OPS,
    OPSET,
    TextTower,
    check_bicubic,
    image_processor_config,
    resolve_source,
    write_towers,
)
from model_export.tokenizers_convert import (
    check_parity,
    fixed_length_ids,
    sentencepiece_tokenizer,
    siglip_clean,
)

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


class SiglipTextTower(nn.Module):
    """Fixed-length token ids -> SiglipModel.get_text_features (last position through text_model.head)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text_model = model.text_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids=input_ids).pooler_output


class SiglipImageTower(nn.Module):
    """Normalised pixels -> SiglipModel.get_image_features (the attention-pool head's output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values).pooler_output


def siglip_image_spec(config: dict[str, Any], image_size: int) -> ImageSpec:
    """SiglipImageProcessor's settings: resize straight to size (no crop, no pad), rescale, normalise."""
    check_bicubic(config)
    size = config.get("size", {"height": image_size, "width": image_size})
    height, width = (size["height"], size["width"]) if isinstance(size, dict) else (size, size)
    if not config.get("do_resize", True) or config.get("do_center_crop") or (height, width) != (image_size,) * 2:
        raise ValueError(f"unsupported SigLIP preprocessing: resize {config.get('do_resize', True)} to "
                         f"{height}x{width}, crop {config.get('do_center_crop', False)}; the model takes {image_size}")
    if abs(float(config.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9 or not config.get("do_rescale", True):
        raise ValueError("unsupported SigLIP preprocessing: pixels must be rescaled by 1/255")
    normalise = config.get("do_normalize", True)
    mean = tuple(config.get("image_mean", SIGLIP_MEAN)) if normalise else (0.0, 0.0, 0.0)
    std = tuple(config.get("image_std", SIGLIP_STD)) if normalise else (1.0, 1.0, 1.0)
    return ImageSpec(height=height, width=width, resize="squash", mean=mean, std=std)


def siglip_tokenizer(folder: Path, max_tokens: int) -> tuple[Tokenizer, int]:
    """(tokenizer.json for the runtime, pad id), checked against the checkpoint's own tokenizer."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(folder))
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is not None:  # a tokenizer.json already (SigLIP 2's Gemma tokenizer, converted checkpoints)
        tokenizer = Tokenizer.from_str(backend.to_str())
    elif type(hf).__name__ == "SiglipTokenizer":
        tokenizer = sentencepiece_tokenizer(hf.vocab_file, eos=str(hf.eos_token), clean=siglip_clean(hf.do_lower_case),
                                            special=[str(t) for t in hf.all_special_tokens])
    else:
        raise ValueError(f"unsupported SigLIP tokenizer {type(hf).__name__} (no tokenizer.json, not SentencePiece)")
    tokenizer.no_padding()  # the runtime pads (to max_tokens) and truncates
    tokenizer.no_truncation()
    pad_id = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
    check_parity(lambda texts: fixed_length_ids(tokenizer, texts, max_tokens, pad_id),
                 lambda texts: hf(list(texts), padding="max_length", max_length=max_tokens,
                                  truncation=True)["input_ids"])
    return tokenizer, int(pad_id)


def export_siglip(source: str, out: str | Path, *, quantize: str | None = None, name: str | None = None) -> BundleSpec:
    """Write a sealed bundle for a SiglipModel checkpoint (hub id or local folder) to `out`."""
    from transformers import SiglipModel

    folder = resolve_source(source)
    model = SiglipModel.from_pretrained(str(folder)).eval()
    max_tokens = model.config.text_config.max_position_embeddings
    spec_image = siglip_image_spec(image_processor_config(folder), model.config.vision_config.image_size)
    tokenizer, pad_id = siglip_tokenizer(folder, max_tokens)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    ids = torch.tensor(fixed_length_ids(tokenizer, ["a photo of a red dress", "shoes"], max_tokens, pad_id))
    write_towers(out, TextTower(SiglipTextTower(model), (ids,), fixed_length=True), SiglipImageTower(model),
                 (spec_image.height, spec_image.width), quantize)
    spec = BundleSpec(
        name=name or f"siglip-{Path(source).name}" + ("-int8" if quantize else ""),
        dim=model.text_model.head.out_features,
        image=spec_image,
        text=TextSpec(max_tokens=max_tokens, pad_id=pad_id, padding="max_length"),
        info={"source": source, "kind": "SigLIP (Hugging Face SiglipModel) exported to ONNX",
              "quantization": f"dynamic int8 ({', '.join(INT8_OPS)})" if quantize else "none (fp32)",
              "opset": OPSET,
              "pooling": "text: last position (padded to max_tokens, no mask) through text_model.head; "
                         "image: attention-pool head",
              "excluded": "logit_scale and logit_bias (score scale only)"},
    )
    return write_bundle_json(out, spec)
