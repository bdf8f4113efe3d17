"""A Hugging Face CLIP checkpoint -> a model bundle (two ONNX towers); `fashion-search export-clip` is an
alias of `export-model` (export_model.py), which sends CLIP checkpoints here.

    python -m model_export.clip_export --source openai/clip-vit-base-patch32 --out models/clip-b32
    python -m model_export.clip_export --source ./my-clip-checkpoint --out /tmp/clip --quantize int8

The text tower maps token ids to CLIP's projected text embedding, pooling at the EOS token; the image
tower maps normalised pixels to the projected image embedding. Needs the `export` extra (torch,
transformers); the runtime only needs onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fashion_search.model.bundle import BundleSpec, ImageSpec, TextSpec, write_bundle_json

OPSET = 18
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Gather too: the token embedding table is 40% of the text tower (255 -> 65 MB instead of 141 MB).
INT8_OPS = CLIP_INT8_OPS = ("MatMul", "Gemm", "Gather")


class ClipTextTower(nn.Module):
    """Token ids -> projected text embedding, pooled at the last attended token.

    The tokenizer's post-processor ends every text with EOS and the runtime pads on the right, so the
    last position with attention_mask == 1 is EOS whatever the pad id is (OpenAI pads with EOS
    itself, which is why pooling on "the first EOS" or "the highest id" needs care). The causal mask
    keeps padding from influencing that position.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text_model, self.projection = model.text_model, model.text_projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        eos = (attention_mask * positions).argmax(dim=-1)
        pooled = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), eos]
        return self.projection(pooled)


class ClipImageTower(nn.Module):
    """Normalised pixels -> projected image embedding (CLIP's pooled class token)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision_model, self.projection = model.vision_model, model.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(self.vision_model(pixel_values=pixel_values).pooler_output)


def resolve_source(source: str) -> Path:
    """A local checkpoint folder as is; a hub id downloaded (config, weights, tokenizer, preprocessor;
    `*.model` is SigLIP's SentencePiece vocabulary)."""
    if Path(source).is_dir():
        return Path(source)
    if source.startswith((".", "/", "~")) or Path(source).exists():
        raise FileNotFoundError(f"{source} is not a checkpoint folder")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"]))


# PIL's code for bicubic resampling, the only filter the runtime resizes with.
PIL_BICUBIC = 3


def image_processor_config(folder: Path) -> dict[str, Any]:
    """The image processor's settings: preprocessor_config.json (transformers 4 and the hub), or the
    "image_processor" entry of processor_config.json (what transformers 5's processor save_pretrained writes).
    Neither is refused: defaults would export a model with other preprocessing without a word."""
    legacy, combined = folder / "preprocessor_config.json", folder / "processor_config.json"
    if legacy.is_file():
        config: dict[str, Any] = json.loads(legacy.read_text())
        return config
    if combined.is_file():
        processor = json.loads(combined.read_text())
        if isinstance(processor.get("image_processor"), dict):
            return dict(processor["image_processor"])
    raise FileNotFoundError(f"{folder} has no preprocessor_config.json nor a processor_config.json with an "
                            "image_processor: its image preprocessing is unknown")


def check_bicubic(config: dict[str, Any]) -> None:
    """The runtime resizes with PIL bicubic; a checkpoint that expects another filter is refused."""
    resample = config.get("resample", PIL_BICUBIC)
    if config.get("do_resize", True) and resample != PIL_BICUBIC:
        raise ValueError(f"unsupported image resampling {resample} (the runtime resizes with bicubic, 3)")


def image_spec(folder: Path, image_size: int) -> ImageSpec:
    """CLIP's preprocessing from its processor config: shortest side to the crop size, centre crop."""
    config = image_processor_config(folder)
    check_bicubic(config)
    crop = config.get("crop_size", image_size)
    crop_h, crop_w = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    size = config.get("size", crop_h)
    shortest = size.get("shortest_edge", crop_h) if isinstance(size, dict) else size
    if shortest != crop_h or crop_h != crop_w:
        # The runtime resizes the shortest side to the crop size; anything else would change vectors.
        raise ValueError(f"unsupported CLIP preprocessing: resize {shortest}, crop {crop_h}x{crop_w}")
    return ImageSpec(height=crop_h, width=crop_w, resize="crop",
                     mean=tuple(config.get("image_mean", CLIP_MEAN)), std=tuple(config.get("image_std", CLIP_STD)))


def export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                dynamic: dict[str, dict[int, str]], output_names: list[str] | None = None) -> None:
    """torch.export-based ONNX export into one self-contained file (bundles hash single files)."""
    shapes = {name: {axis: torch.export.Dim(label, min=1) for axis, label in axes.items()}
              for name, axes in dynamic.items()}
    with torch.inference_mode():
        torch.onnx.export(module.eval(), args, str(path), input_names=input_names,
                          output_names=output_names or ["embeddings"],
                          dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, external_data=False)


@dataclass
class TextTower:
    """A text tower to export and its example inputs: (input_ids,) or (input_ids, attention_mask)."""

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    fixed_length: bool  # True: the runtime always pads to max_tokens, so only the batch axis is dynamic


def write_towers(out: Path, text: TextTower, image: nn.Module, image_hw: tuple[int, int],
                 quantize: str | None) -> None:
    """Export both towers into `out` as text.onnx and image.onnx (fp32, or int8 weights)."""
    names = ["input_ids", "attention_mask"][: len(text.example)]
    axes = {0: "batch"} if text.fixed_length else {0: "batch", 1: "seq"}
    pixels = torch.zeros(2, 3, *image_hw)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        export_onnx(text.module, text.example, tmp_dir / "text.onnx", names, {name: axes for name in names})
        export_onnx(image, (pixels,), tmp_dir / "image.onnx", ["pixel_values"], {"pixel_values": {0: "batch"}})
        for tower in ("text.onnx", "image.onnx"):
            if quantize == "int8":
                quantize_int8(tmp_dir / tower, out / tower, INT8_OPS)
            else:
                shutil.move(tmp_dir / tower, out / tower)


def quantize_int8(src: Path, dst: Path, op_types: tuple[str, ...] = ("MatMul", "Gemm")) -> None:
    """Dynamic int8 weight quantization (activations stay float): weights shrink 4x, and MatMuls run
    as integer kernels. Only MatMul/Gemm by default, where the time goes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types))


def export_clip(source: str, out: str | Path, *, quantize: str | None = None, name: str | None = None) -> BundleSpec:
    """Write a sealed bundle for a CLIP checkpoint (hub id or local folder) to `out`."""
    from transformers import AutoTokenizer, CLIPModel

    folder = resolve_source(source)
    model = CLIPModel.from_pretrained(str(folder)).eval()
    hf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer = hf_tokenizer.backend_tokenizer
    tokenizer.no_padding()  # the runtime pads to each batch's longest text and truncates at max_tokens
    tokenizer.no_truncation()
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else hf_tokenizer.eos_token_id

    out = Path(out)
    spec_image = image_spec(folder, model.config.vision_config.image_size)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    ids = torch.tensor([tokenizer.encode("a photo of a red dress").ids] * 2)
    write_towers(out, TextTower(ClipTextTower(model), (ids, torch.ones_like(ids)), fixed_length=False),
                 ClipImageTower(model), (spec_image.height, spec_image.width), quantize)
    spec = BundleSpec(
        name=name or f"clip-{Path(source).name}" + ("-int8" if quantize else ""),
        dim=model.config.projection_dim,
        image=spec_image,
        text=TextSpec(max_tokens=model.config.text_config.max_position_embeddings, pad_id=pad_id),
        info={"source": source, "kind": "CLIP (Hugging Face CLIPModel) exported to ONNX",
              "quantization": f"dynamic int8 ({', '.join(CLIP_INT8_OPS)})" if quantize else "none (fp32)",
              "opset": OPSET, "pooling": "text: hidden state at the last attended (EOS) token"},
    )
    return write_bundle_json(out, spec)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """`export-clip` is an alias of `export-model`: the same options, any supported source."""
    from model_export.export_model import configure_parser as configure

    configure(parser)


def run(args: argparse.Namespace) -> int:
    from model_export.export_model import run as run_export

    return run_export(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
