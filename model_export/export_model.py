"""`fashion-search export-model` (alias `export-clip`): a CLIP, SigLIP or open_clip model -> a model bundle.

    fashion-search export-model --source hf-hub:Marqo/marqo-fashionSigLIP --out models/fashion-siglip
    fashion-search export-model --source google/siglip-base-patch16-224 --out /tmp/siglip --quantize int8
    fashion-search export-model --source openai/clip-vit-base-patch32 --out /tmp/clip-b32
    fashion-search export-model --source ./my-open-clip-folder --out /tmp/b   # open_clip_config.json + weights

What a source is, by what it holds:
- `hf-hub:org/repo`, or a folder or hub id with open_clip_config.json: open_clip (open_clip_export.py);
- a folder or hub id whose config.json says model_type "clip": Hugging Face CLIPModel (clip_export.py);
- model_type "siglip": Hugging Face SiglipModel, SigLIP 2's fixed-resolution checkpoints included
  (siglip_export.py).

Every bundle has the same layout (two ONNX towers, tokenizer.json, bundle.json): the runtime needs only
onnxruntime and tokenizers. Needs the `export` extra (torch, transformers, open_clip_torch, sentencepiece).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fashion_search.model.bundle import BundleSpec

DEFAULT_SOURCE = "openai/clip-vit-base-patch32"
KINDS = ("clip", "siglip", "open_clip")


def detect(source: str) -> tuple[str, str]:
    """(kind, source as its exporter takes it). Hub ids fetch only their config files here."""
    if source.startswith("hf-hub:"):
        return "open_clip", source
    folder = Path(source)
    if not folder.is_dir():
        if source.startswith((".", "/", "~")) or folder.exists():
            raise FileNotFoundError(f"{source} is not a model folder")
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=["config.json", "open_clip_config.json"]))
        if (folder / "open_clip_config.json").is_file():
            return "open_clip", f"hf-hub:{source}"
    if (folder / "open_clip_config.json").is_file():
        return "open_clip", source
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{source} has neither config.json (Hugging Face) nor open_clip_config.json")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type in ("clip", "siglip"):
        return str(model_type), source
    if model_type == "siglip2":
        raise ValueError(f"{source} is a SigLIP 2 NaFlex checkpoint (Siglip2Model: variable-resolution patches), "
                         "which the bundle's fixed-size image tower cannot run; export a fixed-resolution SigLIP 2 "
                         "checkpoint (google/siglip2-base-patch16-224, ...) or the open_clip one instead")
    raise ValueError(f"{source}: unsupported model_type {model_type!r} (clip, siglip or an open_clip model)")


def export_model(source: str, out: str | Path, *, quantize: str | None = None, name: str | None = None) -> BundleSpec:
    """Write a sealed bundle for any supported source to `out`."""
    kind, resolved = detect(source)
    if kind == "clip":
        from model_export.clip_export import export_clip as export
    elif kind == "siglip":
        from model_export.siglip_export import export_siglip as export
    else:
        from model_export.open_clip_export import export_open_clip as export
    return export(resolved, out, quantize=quantize, name=name)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help="Hugging Face CLIP or SigLIP model id or folder, or an open_clip model: hf-hub:org/repo "
                             f"or a folder with open_clip_config.json (default {DEFAULT_SOURCE})")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 weight quantization")
    parser.add_argument("--name", help="bundle name (default derived from the source)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec = export_model(args.source, args.out, quantize=args.quantize, name=args.name)
    print(f"wrote {spec.name} ({spec.dim}-d, hash {spec.hash[:12]}) to {args.out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
