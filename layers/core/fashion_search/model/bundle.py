"""Model bundles: a folder with a text tower, an image tower, a tokenizer and their preprocessing.

A bundle is the unit that makes vectors comparable: an index records the hash of the bundle that
built it, and the search service refuses to mix vectors of two bundles.

Layout::

    text.onnx       input_ids, attention_mask (int64, [batch, seq]; the mask only if the tower takes one)
                    -> embeddings [batch, dim]
    image.onnx      pixel_values (float32, [batch, 3, H, W], normalised) -> embeddings [batch, dim]
    tokenizer.json  a `tokenizers` tokenizer whose post-processor adds the special tokens
    bundle.json     this module's `BundleSpec`
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import FashionSearchError
from .calibration import Calibration

BUNDLE_FILES = ("text.onnx", "image.onnx", "tokenizer.json")


class ImageSpec(BaseModel):
    """How an image becomes the image tower's input tensor."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    # crop: resize the shortest side, then centre-crop (CLIP); pad: fit inside, pad with pad_color;
    # squash: resize straight to height x width, aspect ratio not kept (SigLIP, open_clip's "squash").
    resize: Literal["crop", "pad", "squash"] = "crop"
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    pad_color: tuple[int, int, int] = (255, 255, 255)


class TextSpec(BaseModel):
    max_tokens: int = Field(default=77, gt=1)
    pad_id: int = 0
    # longest: pad each batch to its longest text (towers that take an attention mask or pool at the end
    # token); max_length: pad every text to max_tokens, as SigLIP was trained (no mask, last position pooled).
    padding: Literal["longest", "max_length"] = "longest"


# Fields added after format 1 was sealed, with the value every older bundle means: they enter the content
# hash only when set to something else, so a bundle written before they existed keeps its hash.
_LATER_FIELDS = {"text": {"padding": "longest"}}


def _hashed(section: str, spec: BaseModel) -> dict[str, object]:
    dumped = spec.model_dump(mode="json")
    for field, legacy in _LATER_FIELDS.get(section, {}).items():
        if dumped.get(field) == legacy:
            del dumped[field]
    return dumped


class BundleSpec(BaseModel):
    """The contents of bundle.json."""

    format: Literal[1] = 1
    name: str
    dim: int = Field(gt=0)
    image: ImageSpec
    text: TextSpec = TextSpec()
    files: dict[str, str] = {}  # file name -> sha256
    hash: str = ""  # sha256 over files and preprocessing: equal hashes give comparable vectors
    info: dict[str, object] = {}  # free-form: source, licence, quantization, training settings
    calibration: Calibration | None = None  # relevance and the no-close-match threshold (calibration.py)

    def content_hash(self) -> str:
        """Hash what determines the vectors: the model files and the preprocessing."""
        payload = {
            "dim": self.dim,
            "image": _hashed("image", self.image),
            "text": _hashed("text", self.text),
            "files": dict(sorted(self.files.items())),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class BundleError(FashionSearchError, ValueError):
    """A bundle folder is missing files or does not match its bundle.json."""

    status, code = 500, "bundle_invalid"  # the deployment's model, not the caller's


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle_json(folder: str | Path, spec: BundleSpec) -> BundleSpec:
    """Seal a bundle: hash its files, compute the content hash and write bundle.json."""
    folder = Path(folder)
    missing = [name for name in BUNDLE_FILES if not (folder / name).is_file()]
    if missing:
        raise BundleError(f"bundle {folder} lacks {', '.join(missing)}")
    files = {name: file_sha256(folder / name) for name in BUNDLE_FILES}
    sealed = spec.model_copy(update={"files": files})
    sealed = sealed.model_copy(update={"hash": sealed.content_hash()})
    (folder / "bundle.json").write_text(json.dumps(sealed.model_dump(mode="json"), indent=2) + "\n")
    return sealed


def read_bundle(folder: str | Path, verify: bool = False) -> BundleSpec:
    """Read bundle.json; with verify, re-hash the files (slow for big models, so opt-in)."""
    folder = Path(folder)
    meta = folder / "bundle.json"
    if not meta.is_file():
        raise BundleError(f"{folder} is not a model bundle (no bundle.json)")
    spec = BundleSpec.model_validate_json(meta.read_text())
    if spec.hash != spec.content_hash():
        raise BundleError(f"bundle {folder}: bundle.json hash does not match its contents")
    if verify:
        for name, expected in spec.files.items():
            if file_sha256(folder / name) != expected:
                raise BundleError(f"bundle {folder}: {name} does not match its checksum")
    return spec


def find_bundle(folder: str | Path, model_hash: str) -> Path | None:
    """The bundle under `folder` (one per subfolder, as models/ holds them) whose hash is `model_hash`."""
    for meta in sorted(Path(folder).glob("*/bundle.json")):
        try:
            if read_bundle(meta.parent).hash == model_hash:
                return meta.parent
        except (BundleError, ValueError):  # not a bundle, or a broken one: not the one asked for
            continue
    return None
