"""Decoding untrusted image bytes safely, and the thumbnails the UI shows.

Used by the index builder (catalog images) and the search API (shoppers' photos): both get bytes
from outside and must turn every kind of garbage into a clear, typed error, and neither may let a
small file cost seconds or gigabytes to decode (a decompression bomb).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import FashionSearchError

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
THUMBNAIL_MAX_SIDE = 320
THUMBNAIL_CONTENT_TYPE = "image/webp"
# What the largest use needs: the 320 px thumbnail (the model's input is 224 px). A decoded image keeps
# its short side at 2x that, 640 px or more (4x the thumbnail's area: the final resize has room to
# filter), and is reduced to that while decoding where the format allows: JPEG decodes at 1/2, 1/4 or
# 1/8 scale in the DCT domain (draft mode), the others are box-reduced right after decoding.
DECODE_SIDE = 2 * THUMBNAIL_MAX_SIDE
# The pixel budget, checked against the header before anything is decoded. A PNG or WebP (and a
# progressive JPEG, whose coefficients are buffered at full size) costs memory and time in proportion
# to the pixels it declares, whatever its byte size: a flat 40 MP lossless WebP is 2 KB and cost
# 1.5-2.6 s and 930 MB to serve. 12.5 MP keeps what catalogs and shoppers really send decodable, up to a
# 12 MP phone photo (4032x3024 = 12.2 MP) and far past a 2000x3000 product shot or a phone screenshot,
# while a bomb at the budget costs ~0.1 s and ~60 MB to decode here, a third of one at the old 40 MP.
# A caller that needs more (a catalog of huge PNGs) passes its own.
DEFAULT_MAX_PIXELS = 12_500_000
_REASON_STATUS = {"too_large": 413, "unsupported_format": 415}  # ImageError's HTTP status; any other reason: 400


class ImageError(FashionSearchError, ValueError):
    """Bytes that are not a usable image; `reason` is a short machine-readable code, and the error's code is
    `image_<reason>`: 413 for an image too large, 415 for a format not accepted, 400 for anything else."""

    status = 400
    code = "image_not_an_image"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, status=_REASON_STATUS.get(reason, 400), code=f"image_{reason}")
        self.reason = reason

    @property
    def public_message(self) -> str:
        return f"image: {self}"


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: frozenset[str] = ACCEPTED_FORMATS,
) -> Image.Image:
    """Decode into an RGB image (EXIF-rotated, transparency over white), no larger than its uses need:
    the short side is reduced to between DECODE_SIDE and twice that (smaller images stay as they are).

    Raises ImageError with reason `not_an_image`, `unsupported_format`, `too_large` or `broken`.
    """
    if not data:
        raise ImageError("not_an_image", "the image is empty")
    img: Image.Image = _open(data)  # exif_transpose and to_rgb return a plain Image
    if img.format not in formats:
        allowed = "/".join(sorted(formats))
        raise ImageError("unsupported_format", f"{img.format} images are not accepted (use {allowed})")
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            "too_large", f"the image is {width}x{height}; at most {max_pixels:,} pixels are accepted"
        )
    if img.format == "JPEG":
        img.draft("RGB", (DECODE_SIDE, DECODE_SIDE))  # by the largest of 2, 4, 8 that keeps both sides >= 640
    try:
        img.load()  # decoding happens here: truncated or corrupt data fails now, not later
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(exc) from None
    img = to_rgb(img)
    factor = min(img.size) // DECODE_SIDE
    return img.reduce(factor) if factor > 1 else img


def _open(data: bytes) -> ImageFile.ImageFile:
    """Read the header (and, for a PNG, the metadata chunks before the pixels): nothing is decoded yet."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=None)
    except UnidentifiedImageError:
        raise ImageError("not_an_image", "the data is not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_large", f"the image has more than {Image.MAX_IMAGE_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _unreadable(exc) from None


def _unreadable(exc: Exception) -> ImageError:
    """What PIL raises on bad data. Its ValueErrors about size are metadata past its limits (a PNG text
    chunk that inflates past 1 MB, or 64 MB of text in all): a bomb, not damage."""
    if isinstance(exc, ValueError) and any(s in str(exc).lower() for s in ("too large", "too much")):
        return ImageError("too_large", "the image's text metadata inflates past the limit (1 MB a chunk, 64 MB in all)")
    return ImageError("broken", f"the image is damaged ({exc})")


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
