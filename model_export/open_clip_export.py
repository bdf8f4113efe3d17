"""An open_clip model -> a model bundle, following open_clip's own encode_text / encode_image.

Sources: `hf-hub:org/repo` (Marqo/marqo-fashionSigLIP, Marqo/marqo-ecommerce-embeddings-B, laion/...), or a
local folder holding open_clip_config.json ({"model_cfg", "preprocess_cfg"}), the weights and, for models
with a Hugging Face tokenizer, its files (what `hf-hub:` downloads).

- text: open_clip's tokenizer always pads to its context length (64 for SigLIP, 77 for CLIP) and its towers
  take no mask (SigLIP pools the last position, CLIP the highest id, the end token), so the text tower takes
  fixed-length ids. The tokenizer's clean-up (SigLIP's "canonicalize": lower-case, no punctuation) goes into
  tokenizer.json (tokenizers_convert), checked against open_clip's ids.
- image: `model.visual`, i.e. encode_image unnormalised (timm's attention pool for SigLIP); the
  preprocessing is the model's preprocess_cfg: "squash" (SigLIP), "shortest" (resize + centre crop) or
  "longest" (fit + pad with fill_color), bicubic, mean/std.
- logit_scale and logit_bias stay out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn

from fashion_search.model.bundle import BundleSpec, ImageSpec, TextSpec, write_bundle_json
from model_export.clip_export import CLIP_MEAN as OPENAI_MEAN
from model_export.clip_export import CLIP_STD as OPENAI_STD
from model_export.clip_export import INT8_OPS, OPSET, TextTower, write_towers
from model_export.tokenizers_convert import (
    check_parity,
    clip_bpe_tokenizer,
    fixed_length_ids,
    open_clip_clean,
    prepend_normalizers,
    sentencepiece_tokenizer,
    siglip_clean,
)

_RESIZE_MODES = {"shortest": "crop", "longest": "pad", "squash": "squash"}
_WEIGHTS = ("*.safetensors", "*.bin", "*.pth")


class OpenClipCustomTextTower(nn.Module):
    """CustomTextCLIP.encode_text (SigLIP and HF text towers): model.text(ids)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text = model.text

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids)


class OpenClipTextTower(nn.Module):
    """CLIP.encode_text, run on the text parts only (the whole model would carry the image weights along)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.transformer, self.token_embedding, self.ln_final = model.transformer, model.token_embedding, model.ln_final
        self.positional_embedding, self.text_projection = model.positional_embedding, model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        self.text_pool_type = model.text_pool_type
        self.text_eos_id = getattr(model, "text_eos_id", None)
        self._encode_text = type(model).encode_text

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._encode_text(self, input_ids)


class OpenClipImageTower(nn.Module):
    """encode_image without the normalisation (the runtime normalises)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual(pixel_values)


def model_name(source: str) -> str:
    """open_clip's name for a source: hf-hub ids as they are, folders as local-dir:."""
    if source.startswith("hf-hub:"):
        return source
    folder = Path(source)
    if not (folder / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"{source} is neither hf-hub:org/repo nor a folder with open_clip_config.json")
    if not any(folder.glob(pattern) for pattern in _WEIGHTS):
        raise FileNotFoundError(f"{source} has no weights (*.safetensors, *.bin or *.pth)")
    return f"local-dir:{folder.resolve()}"


def _triple(value: float | Sequence[float]) -> tuple[float, float, float]:
    values = (float(value),) * 3 if isinstance(value, int | float) else tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"expected one value per RGB channel, got {value!r}")
    return values[0], values[1], values[2]


def open_clip_image_spec(cfg: dict[str, Any]) -> ImageSpec:
    """open_clip's inference transform (image_transform_v2) for a preprocess_cfg."""
    size = cfg.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if cfg.get("interpolation", "bicubic") not in ("bicubic", "random"):  # "random" is bicubic at inference
        raise ValueError(f"unsupported interpolation {cfg['interpolation']!r} (the runtime resizes bicubic)")
    mode = cfg.get("resize_mode", "shortest")
    if mode not in _RESIZE_MODES:
        raise ValueError(f"unsupported resize_mode {mode!r}")
    mean, std = (_triple(cfg.get("mean", OPENAI_MEAN)), _triple(cfg.get("std", OPENAI_STD)))
    fill = int(cfg.get("fill_color", 0))
    return ImageSpec(height=height, width=width, resize=_RESIZE_MODES[mode], mean=mean, std=std,
                     pad_color=(fill, fill, fill))


def _clean_kind(clean_fn: object) -> str:
    from open_clip import tokenizer as oc_tokenizer

    kinds = {oc_tokenizer._clean_canonicalize: "canonicalize", oc_tokenizer._clean_lower: "lower",
             oc_tokenizer._clean_whitespace: "whitespace"}
    if clean_fn not in kinds:
        raise ValueError(f"unsupported open_clip text clean-up {clean_fn!r}")
    return kinds[clean_fn]  # type: ignore[index]


def open_clip_tokenizer(oc_tokenizer: Any) -> tuple[Tokenizer, int, int]:
    """(tokenizer.json for the runtime, pad id, context length), checked against open_clip's own ids."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    length = int(oc_tokenizer.context_length)
    if isinstance(oc_tokenizer, HFTokenizer):
        if oc_tokenizer.tokenizer_mode or oc_tokenizer.strip_sep_token:
            raise ValueError("unsupported open_clip HF tokenizer options (tokenizer_mode, strip_sep_token)")
        hf = oc_tokenizer.tokenizer
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is not None:
            base = Tokenizer.from_str(backend.to_str())
        elif type(hf).__name__ == "SiglipTokenizer":
            base = sentencepiece_tokenizer(hf.vocab_file, eos=str(hf.eos_token), clean=siglip_clean(hf.do_lower_case),
                                           special=[str(t) for t in hf.all_special_tokens])
        else:
            raise ValueError(f"unsupported tokenizer {type(hf).__name__} (no tokenizer.json, not SentencePiece)")
        tokenizer = prepend_normalizers(base, open_clip_clean(_clean_kind(oc_tokenizer.clean_fn)))
        pad_id = int(hf.pad_token_id)
    elif isinstance(oc_tokenizer, SimpleTokenizer):
        if oc_tokenizer.reduction_fn is not None:
            raise ValueError("unsupported open_clip tokenizer option (reduction_mask)")
        merges = sorted(oc_tokenizer.bpe_ranks, key=oc_tokenizer.bpe_ranks.__getitem__)
        tokenizer = clip_bpe_tokenizer(oc_tokenizer.encoder, merges,
                                       bos=oc_tokenizer.decoder[oc_tokenizer.sot_token_id],
                                       eos=oc_tokenizer.decoder[oc_tokenizer.eot_token_id],
                                       clean=open_clip_clean(_clean_kind(oc_tokenizer.clean_fn)))
        pad_id = 0  # SimpleTokenizer pads with zeros
    else:
        raise ValueError(f"unsupported open_clip tokenizer {type(oc_tokenizer).__name__}")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    check_parity(lambda texts: fixed_length_ids(tokenizer, texts, length, pad_id),
                 lambda texts: oc_tokenizer(list(texts)).tolist())
    return tokenizer, pad_id, length


def text_tower(model: nn.Module) -> nn.Module:
    from open_clip.model import CLIP, CustomTextCLIP

    if isinstance(model, CustomTextCLIP) and type(model) is CustomTextCLIP:
        return OpenClipCustomTextTower(model)
    if type(model) is CLIP:
        return OpenClipTextTower(model)
    raise ValueError(f"unsupported open_clip model class {type(model).__name__} (CLIP and CustomTextCLIP are)")


def load(source: str) -> tuple[nn.Module, Any]:
    """(model in eval mode with its weights, open_clip's tokenizer) for a source."""
    import open_clip

    name = model_name(source)
    model = open_clip.create_model(name, device="cpu", precision="fp32").eval()
    return model, open_clip.get_tokenizer(name)


def export_open_clip(source: str, out: str | Path, *, quantize: str | None = None,
                     name: str | None = None) -> BundleSpec:
    """Write a sealed bundle for an open_clip model (hf-hub id or local folder) to `out`."""
    from open_clip import get_model_preprocess_cfg

    model, oc_tokenizer = load(source)
    spec_image = open_clip_image_spec(get_model_preprocess_cfg(model))
    tokenizer, pad_id, length = open_clip_tokenizer(oc_tokenizer)
    text = text_tower(model)
    ids = torch.tensor(fixed_length_ids(tokenizer, ["a photo of a red dress", "shoes"], length, pad_id))
    with torch.inference_mode():
        dim = int(text(ids).shape[-1])

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    write_towers(out, TextTower(text, (ids,), fixed_length=True), OpenClipImageTower(model),
                 (spec_image.height, spec_image.width), quantize)
    label = source.removeprefix("hf-hub:").rstrip("/").split("/")[-1]
    spec = BundleSpec(
        name=name or f"open-clip-{label}" + ("-int8" if quantize else ""),
        dim=dim,
        image=spec_image,
        text=TextSpec(max_tokens=length, pad_id=pad_id, padding="max_length"),
        info={"source": source, "kind": f"open_clip {type(model).__name__} exported to ONNX",
              "quantization": f"dynamic int8 ({', '.join(INT8_OPS)})" if quantize else "none (fp32)",
              "opset": OPSET, "pooling": "open_clip's encode_text / encode_image (fixed-length text, no mask)",
              "excluded": "logit_scale and logit_bias (score scale only)"},
    )
    return write_bundle_json(out, spec)
