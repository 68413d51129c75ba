"""Image classifiers for the mixing experiments, and the soft-label loss they train with.

ResNet-18/50/101, EfficientNet-B0, VGG-16 (with or without batch norm) and a small CNN, for any
number of input channels and any resolution from 28 px. Below `SMALL_INPUT` px the early
downsampling is reduced (as in MedMNIST's 28-px ResNets: a 3x3 stride-1 stem and no max-pool),
so that a 28x28 image still has a few pixels left in the last stage instead of vanishing.
Every model pools its last feature map globally, so one network serves any resolution, and
exposes `features(x)`, the penultimate features used for t-SNE/PCA plots, of width `feature_dim`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CLASSIFIERS",
    "Classifier",
    "EfficientNetB0",
    "ResNet",
    "SmallCNN",
    "VGG16",
    "build_classifier",
    "soft_cross_entropy",
]

CLASSIFIERS = ("resnet18", "resnet50", "resnet101", "efficientnet_b0", "vgg16", "vgg16_bn", "small_cnn")

# Inputs smaller than this (in px) get the reduced early downsampling.
SMALL_INPUT = 64


# ------------------------------------------------------------------------------------ loss

def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against class indices (N,) or soft labels (N, K), averaged over the batch.

    Mixed and synthetic samples carry soft labels (rows on the simplex), so one loss serves every
    mixing strategy; with index or one-hot targets it equals `F.cross_entropy`.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch.Tensor, got {_describe(logits)}")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, K), got {tuple(logits.shape)}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(f"target: soft labels must have the shape of logits {tuple(logits.shape)}, "
                             f"got {tuple(target.shape)}")
        target = target.to(logits.dtype)
    elif target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must hold int64 class indices or float soft labels, got {target.dtype}")
    else:
        if target.shape != (logits.shape[0],):
            raise ValueError(f"target: class indices must have shape ({logits.shape[0]},), got {tuple(target.shape)}")
        target = target.long()
    return F.cross_entropy(logits, target, label_smoothing=float(label_smoothing))


def _describe(value) -> str:
    return f"a {value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__


# ------------------------------------------------------------------------------ base class

class Classifier(nn.Module):
    """Base of every classifier: logits are a linear head on `features(x)`, so the embedding
    that is plotted is exactly the one the classifier decides on."""

    def __init__(self, num_classes: int, in_channels: int, feature_dim: int, dropout: float):
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feature_dim = feature_dim
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim) of a batch (N, in_channels, H, W)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a batch of shape (N, {self.in_channels}, H, W), got {shape}")
        return self._features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out, for ReLU-family activations), unit batch norms."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    # Residual branches start at zero, so every block begins as the identity and deep nets
    # train as stably as shallow ones.
    for m in model.modules():
        if hasattr(m, "zero_init_residual"):
            m.zero_init_residual()


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(out_ch)]


# ---------------------------------------------------------------------------------- ResNet

class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.branch = nn.Sequential(*_conv_bn(in_ch, width, 3, stride), nn.ReLU(inplace=True),
                                    *_conv_bn(width, out_ch, 3))
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))

    def zero_init_residual(self):
        nn.init.zeros_(self.branch[-1].weight)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        out_ch = width * self.expansion
        self.branch = nn.Sequential(
            *_conv_bn(in_ch, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, out_ch, 1),
        )
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))

    def zero_init_residual(self):
        nn.init.zeros_(self.branch[-1].weight)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))


class ResNet(Classifier):
    """ResNet with four stages of `layers` blocks (64, 128, 256, 512 wide)."""

    def __init__(self, block, layers, num_classes: int, in_channels: int = 1, *, image_size: int = 28,
                 dropout: float = 0.0):
        super().__init__(num_classes, in_channels, 512 * block.expansion, dropout)
        if image_size < SMALL_INPUT:
            self.stem = nn.Sequential(*_conv_bn(in_channels, 64, 3), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(*_conv_bn(in_channels, 64, 7, 2), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, stride=2, padding=1))
        stages, in_ch = [], 64
        for i, (width, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(count):
                blocks.append(block(in_ch, width, 2 if i > 0 and j == 0 else 1))
                in_ch = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        _init_weights(self)

    def _features(self, x):
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


# ------------------------------------------------------------------------- EfficientNet-B0

# (expansion, kernel, stride, out channels, blocks) of EfficientNet-B0's seven stages.
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class SqueezeExcite(nn.Module):
    """Channel gates from globally pooled features, so each block can reweight its channels."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        s = F.silu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.expand(s))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a residual branch for whole samples with probability p."""
    if not training or p == 0.0:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep / (1 - p)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, squeeze-excitation, 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, kernel: int, stride: int, drop: float):
        super().__init__()
        hidden = in_ch * expansion
        layers = []
        if expansion != 1:
            layers += [*_conv_bn(in_ch, hidden, 1), nn.SiLU(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, kernel, stride, groups=hidden), nn.SiLU(inplace=True),
                   SqueezeExcite(hidden, max(1, in_ch // 4)), *_conv_bn(hidden, out_ch, 1)]
        self.branch = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop = drop

    def forward(self, x):
        out = self.branch(x)
        return x + drop_path(out, self.drop, self.training) if self.residual else out

    def zero_init_residual(self):
        if self.residual:
            nn.init.zeros_(self.branch[-1].weight)


class EfficientNetB0(Classifier):
    """EfficientNet-B0. Small inputs keep full resolution through the stem and the first
    stride-2 stage (total stride 8 instead of 32). `stochastic_depth` is the drop rate of the
    last block, growing linearly from 0 at the first."""

    def __init__(self, num_classes: int, in_channels: int = 1, *, image_size: int = 28, dropout: float = 0.0,
                 stochastic_depth: float = 0.0):
        super().__init__(num_classes, in_channels, 1280, dropout)
        if not 0.0 <= stochastic_depth < 1.0:
            raise ValueError(f"stochastic_depth must be in [0, 1), got {stochastic_depth!r}")
        small = image_size < SMALL_INPUT
        self.stem = nn.Sequential(*_conv_bn(in_channels, 32, 3, 1 if small else 2), nn.SiLU(inplace=True))
        total = sum(stage[-1] for stage in B0_STAGES)
        blocks, in_ch, index = [], 32, 0
        for s, (expansion, kernel, stride, out_ch, count) in enumerate(B0_STAGES):
            if small and s == 1:
                stride = 1
            for j in range(count):
                drop = stochastic_depth * index / total
                blocks.append(MBConv(in_ch, out_ch, expansion, kernel, stride if j == 0 else 1, drop))
                in_ch, index = out_ch, index + 1
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(*_conv_bn(in_ch, 1280, 1), nn.SiLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        _init_weights(self)

    def _features(self, x):
        return torch.flatten(self.pool(self.head(self.blocks(self.stem(x)))), 1)


# ----------------------------------------------------------------------------------- VGG-16

# Convolution widths of VGG-16's five blocks; each block ends in a 2x2 max-pool.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(Classifier):
    """VGG-16: 13 3x3 convolutions and 3 fully connected layers. The last feature map is
    average-pooled to 1x1, so any resolution works; the hidden layers are `hidden` wide (512,
    not 4096: on a pooled 512-d input, wider layers only add parameters a small set cannot
    fit). Small inputs skip the first max-pool."""

    def __init__(self, num_classes: int, in_channels: int = 1, *, batch_norm: bool = False, image_size: int = 28,
                 dropout: float = 0.0, hidden: int = 512):
        super().__init__(num_classes, in_channels, hidden, dropout)
        layers, in_ch = [], in_channels
        for b, widths in enumerate(VGG16_BLOCKS):
            for width in widths:
                layers.append(nn.Conv2d(in_ch, width, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                in_ch = width
            if not (b == 0 and image_size < SMALL_INPUT):
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(nn.Linear(in_ch, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        _init_weights(self)

    def _features(self, x):
        return self.mlp(torch.flatten(self.pool(self.body(x)), 1))


# -------------------------------------------------------------------------------- small CNN

class SmallCNN(Classifier):
    """Four conv-BN-ReLU blocks (32, 64, 128, 256 wide), max-pooled after the first three: a
    classifier that trains in seconds on a CPU, for tests and demos."""

    WIDTHS = (32, 64, 128, 256)

    def __init__(self, num_classes: int, in_channels: int = 1, *, image_size: int = 28, dropout: float = 0.0):
        super().__init__(num_classes, in_channels, self.WIDTHS[-1], dropout)
        layers, in_ch = [], in_channels
        for i, width in enumerate(self.WIDTHS):
            stride = 2 if i == 0 and image_size >= SMALL_INPUT else 1
            layers += [*_conv_bn(in_ch, width, 3, stride), nn.ReLU(inplace=True)]
            if i < len(self.WIDTHS) - 1:
                layers.append(nn.MaxPool2d(2))
            in_ch = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        _init_weights(self)

    def _features(self, x):
        return torch.flatten(self.pool(self.body(x)), 1)


# ---------------------------------------------------------------------------------- factory

def build_classifier(name: str, num_classes: int, in_channels: int = 1, *, image_size: int = 28,
                     dropout: float = 0.0) -> Classifier:
    """The classifier `name` (one of CLASSIFIERS), with its stem chosen for `image_size` px."""
    if name not in CLASSIFIERS:
        raise ValueError(f"name: unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{arg} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    common = dict(image_size=image_size, dropout=float(dropout))
    if name.startswith("resnet"):
        block, layers = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3)),
                         "resnet101": (Bottleneck, (3, 4, 23, 3))}[name]
        return ResNet(block, layers, num_classes, in_channels, **common)
    if name == "efficientnet_b0":
        return EfficientNetB0(num_classes, in_channels, **common)
    if name.startswith("vgg16"):
        return VGG16(num_classes, in_channels, batch_norm=name == "vgg16_bn", **common)
    return SmallCNN(num_classes, in_channels, **common)
