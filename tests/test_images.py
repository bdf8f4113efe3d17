"""Decoding untrusted image bytes: every kind of garbage becomes a typed ImageError."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fashion_search.model.images import ImageError, decode_image, make_thumbnail
from tests.conftest import DATA

JPEG = (DATA / "fashion" / "images" / "10000.jpg").read_bytes()


def encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt: str) -> None:
    img = decode_image(encode(Image.new("RGB", (40, 30), (10, 20, 30)), fmt))
    assert img.mode == "RGB" and img.size == (40, 30)


def test_transparency_is_composited_over_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert decode_image(encode(rgba, "PNG")).getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif)
    assert decode_image(out.getvalue()).size == (20, 40)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_an_image"),
        (b"<!doctype html><html><body>moved</body></html>", "not_an_image"),
        (JPEG[: len(JPEG) // 2], "broken"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), "unsupported_format"),
        (encode(Image.new("RGB", (8, 8)), "BMP"), "unsupported_format"),
    ],
    ids=["empty", "html", "truncated-jpeg", "gif", "bmp"],
)
def test_garbage_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(data)
    assert info.value.reason == reason


def test_too_many_pixels_is_rejected_before_decoding() -> None:
    bomb = encode(Image.new("L", (6000, 6000)), "PNG")  # 36 MP, a few KB compressed
    with pytest.raises(ImageError) as info:
        decode_image(bomb, max_pixels=10_000_000)
    assert info.value.reason == "too_large" and "6000x6000" in str(info.value)


def test_thumbnail_is_small_webp_never_upscaled() -> None:
    big = decode_image(encode(Image.new("RGB", (1200, 800), (200, 10, 10)), "JPEG"))
    thumb = Image.open(io.BytesIO(make_thumbnail(big)))
    assert thumb.format == "WEBP" and max(thumb.size) == 320 and thumb.size == (320, 213)
    small = Image.open(io.BytesIO(make_thumbnail(decode_image(JPEG))))
    assert small.size == (60, 80)
