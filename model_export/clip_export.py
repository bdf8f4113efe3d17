"""`fashion-search export-clip`: a Hugging Face CLIP checkpoint -> a model bundle (two ONNX towers).

    python -m model_export.clip_export --source openai/clip-vit-base-patch32 --out models/clip-b32
    python -m model_export.clip_export --source ./my-clip-checkpoint --out /tmp/clip --quantize int8

The text tower maps token ids to CLIP's projected text embedding, pooling at the EOS token; the image
tower maps normalised pixels to the projected image embedding. Needs the `export` extra (torch,
transformers); the runtime only needs onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from fashion_search.model.bundle import BundleSpec, ImageSpec, TextSpec, write_bundle_json

DEFAULT_SOURCE = "openai/clip-vit-base-patch32"
OPSET = 18
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Gather too: the token embedding table is 40% of the text tower (255 -> 65 MB instead of 141 MB).
CLIP_INT8_OPS = ("MatMul", "Gemm", "Gather")


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
    """A local checkpoint folder as is; a hub id downloaded (config, weights, tokenizer, preprocessor)."""
    if Path(source).is_dir():
        return Path(source)
    if source.startswith((".", "/", "~")) or Path(source).exists():
        raise FileNotFoundError(f"{source} is not a checkpoint folder")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors"]))


def image_spec(folder: Path, image_size: int) -> ImageSpec:
    """CLIP's preprocessing from preprocessor_config.json: shortest side to the crop size, centre crop."""
    config_path = folder / "preprocessor_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
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
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    spec_image = image_spec(folder, model.config.vision_config.image_size)
    ids = torch.tensor([tokenizer.encode("a photo of a red dress").ids] * 2)
    pixels = torch.zeros(2, 3, spec_image.height, spec_image.width)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        export_onnx(ClipTextTower(model), (ids, torch.ones_like(ids)), tmp_dir / "text.onnx",
                    ["input_ids", "attention_mask"],
                    {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
        export_onnx(ClipImageTower(model), (pixels,), tmp_dir / "image.onnx", ["pixel_values"],
                    {"pixel_values": {0: "batch"}})
        for tower in ("text.onnx", "image.onnx"):
            if quantize == "int8":
                quantize_int8(tmp_dir / tower, out / tower, CLIP_INT8_OPS)
            else:
                shutil.move(tmp_dir / tower, out / tower)
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
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help=f"Hugging Face CLIP model id or local checkpoint folder (default {DEFAULT_SOURCE})")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 weight quantization")
    parser.add_argument("--name", help="bundle name (default derived from the source)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec = export_clip(args.source, args.out, quantize=args.quantize, name=args.name)
    print(f"wrote {spec.name} ({spec.dim}-d, hash {spec.hash[:12]}) to {args.out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
