"""Decoding untrusted image bytes safely, and the thumbnails the UI shows.

Used by the index builder (catalog images) and the search API (shoppers' photos): both get bytes
from outside and must turn every kind of garbage into a clear, typed error.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import FashionSearchError

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
# 40 megapixels: a 12 MP phone photo passes, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 40_000_000
THUMBNAIL_MAX_SIDE = 320
THUMBNAIL_CONTENT_TYPE = "image/webp"


class ImageError(FashionSearchError, ValueError):
    """Bytes that are not a usable image; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: frozenset[str] = ACCEPTED_FORMATS,
) -> Image.Image:
    """Decode fully into an RGB image (EXIF-rotated, transparency over white).

    Raises ImageError with reason `not_an_image`, `unsupported_format`, `too_large` or `broken`.
    """
    if not data:
        raise ImageError("not_an_image", "the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=None)
    except UnidentifiedImageError:
        raise ImageError("not_an_image", "the data is not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_large", f"the image has more than {max_pixels:,} pixels") from None
    if img.format not in formats:
        allowed = "/".join(sorted(formats))
        raise ImageError("unsupported_format", f"{img.format} images are not accepted (use {allowed})")
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            "too_large", f"the image is {width}x{height}; at most {max_pixels:,} pixels are accepted"
        )
    try:
        img.load()  # decoding happens here: truncated or corrupt data fails now, not later
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError("broken", f"the image is damaged ({exc})") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited over white (product shots live on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def make_thumbnail(img: Image.Image, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """A WebP no larger than max_side on its longest side (never upscaled)."""
    thumb = img.copy()
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=82, method=4)
    return out.getvalue()
