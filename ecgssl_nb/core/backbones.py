"""The two backbones of the paper, one per modality, each giving a (B, 512) feature.

xresnet1d50, the time-series backbone S¹θ (Sec. II-B.1): (B, 12, 250) mV -> (B, 512). A 1-D "bag
of tricks" ResNet-50 (three-conv stem, the first the released Conv1d(12, 32, 5, stride 2) with a
bias, bottleneck blocks, average-pool shortcuts), every stage 64 wide (64 x 4 = 256 channels
out), features the concatenated adaptive max and average pools. 886,432 parameters.

SE-ResNet34 2D, the spectrogram backbone S²θ̂ (Sec. II-B.2): (B, 12, 13, 21) -> (B, 512). Basic
blocks [3, 4, 6, 3], widths 64/128/256/512, 1x1 conv + BN shortcuts where stride or width change,
squeeze-and-excitation (reduction 16) before every residual add, a stem conv with a bias (as
released), a global average pool. 21,470,144 parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import check_int


@dataclass(frozen=True)
class XResNet1dConfig:
    in_channels: int = 12
    stem_widths: tuple = (32, 32, 64)
    kernel_size: int = 5  # stem and the middle conv of every block
    layers: tuple = (3, 4, 6, 3)  # blocks per stage (ResNet-50)
    width: int = 64  # bottleneck width of every stage (the released "[64, 64, 64, 64]" variant)
    expansion: int = 4  # block output channels = width * expansion = 256


class ConvBN(nn.Sequential):
    """Conv1d (no bias unless asked) -> BatchNorm1d -> optional ReLU; 'same' padding."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int = 1,
        act: bool = True,
        zero_gamma: bool = False,
        bias: bool = False,
    ):
        layers = OrderedDict(
            conv=nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias),
            bn=nn.BatchNorm1d(c_out),
        )
        if zero_gamma:
            # The block's residual branch outputs exactly 0 at init: every block starts as
            # relu(shortcut(x)), which makes the deep network easy to train from scratch.
            nn.init.zeros_(layers["bn"].weight)
        if act:
            layers["act"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class Bottleneck1d(nn.Module):
    """1x1 down to `width`, k=5 carrying the stride, 1x1 up to width*4 (zero-gamma BN); add the shortcut, then ReLU."""

    def __init__(self, c_in: int, width: int, c_out: int, kernel_size: int, stride: int):
        super().__init__()
        self.convs = nn.Sequential(
            ConvBN(c_in, width, 1),
            ConvBN(width, width, kernel_size, stride=stride),
            ConvBN(width, c_out, 1, act=False, zero_gamma=True),
        )
        # Shortcut: average-pool when the block halves time (ceil_mode keeps odd lengths aligned
        # with the strided conv: 63 -> 32), a 1x1 conv + BN only when the channel count changes.
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(HalvingAvgPool1d())
        if c_in != c_out:
            shortcut.append(ConvBN(c_in, c_out, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential = identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.convs(x) + self.shortcut(x))


class HalvingAvgPool1d(nn.Module):
    """`nn.AvgPool1d(2, stride=2, ceil_mode=True)` bit for bit in value and gradient (an odd last
    sample is its own window) as a replicate pad then an exact halving pool: Inductor's backward of
    ceil_mode pooling divides that last window by 2 (pytorch/pytorch#198119: wrong gradients)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2:  # (B, C, T) -> (B, C, T + 1): (x + x) / 2 == x exactly
            x = F.pad(x, (0, 1), mode="replicate")
        return F.avg_pool1d(x, 2, stride=2)  # (B, C, ceil(T / 2))


class ConcatPool1d(nn.Module):
    """(B, C, T) -> (B, 2C): adaptive max pool then adaptive average pool, flattened."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten(1), not squeeze(): a batch of one keeps its batch dimension (B21)
        return torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1)


class XResNet1d(nn.Module):
    """The xresnet1d backbone; `forward` gives the pooled feature (B, feature_dim)."""

    def __init__(self, cfg: XResNet1dConfig = XResNet1dConfig()):
        super().__init__()
        self.cfg = cfg
        k = cfg.kernel_size
        w0, w1, w2 = cfg.stem_widths
        self.stem = nn.Sequential(
            ConvBN(cfg.in_channels, w0, k, stride=2, bias=True),  # the released replacement conv
            ConvBN(w0, w1, k),
            ConvBN(w1, w2, k),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        c_out = cfg.width * cfg.expansion
        stages = []
        c_in = w2
        for i, n_blocks in enumerate(cfg.layers):
            stride = 1 if i == 0 else 2
            blocks = [
                Bottleneck1d(c_in if j == 0 else c_out, cfg.width, c_out, k, stride if j == 0 else 1)
                for j in range(n_blocks)
            ]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = ConcatPool1d()
        self.feature_dim = 2 * c_out
        # Kaiming-normal conv weights (no other conv has a bias); the first stem conv keeps
        # PyTorch's default init, as the released model builds it after the network's own init.
        for m in self.modules():
            if isinstance(m, nn.Conv1d) and m is not self.stem[0].conv:
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 12, 250) -> (B, 32, 125) -> (B, 64, 125) -> pool (B, 64, 63)
        x = self.stages(x)  # -> (B, 256, 63) -> (B, 256, 32) -> (B, 256, 16) -> (B, 256, 8)
        return self.pool(x)  # -> (B, 512)


def xresnet1d50(in_channels: int = 12) -> XResNet1d:
    """The paper's time-series backbone: (B, in_channels, T) -> (B, 512); 886,432 parameters for 12 leads."""
    return XResNet1d(XResNet1dConfig(in_channels=check_int("in_channels", in_channels, 1)))


# --- SE-ResNet34 2D, the spectrogram backbone (paper Sec. II-B.2) ---------------------------


@dataclass(frozen=True)
class SEResNet2dConfig:
    in_channels: int = 12
    layers: tuple = (3, 4, 6, 3)  # blocks per stage (ResNet-34)
    widths: tuple = (64, 128, 256, 512)
    se_reduction: int = 16


class SqueezeExcite(nn.Module):
    """(B, C, H, W) -> same shape, each channel scaled by a learned gate in (0, 1) computed
    from the channel means: GAP -> Linear(C, C/r) -> ReLU -> Linear(C/r, C) -> sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction, bias=False)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))  # (B, C)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class SEBasicBlock(nn.Module):
    """3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN -> SE; add the shortcut; ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, se_reduction: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SqueezeExcite(c_out, se_reduction)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class SEResNet2d(nn.Module):
    """The SE-ResNet backbone; `forward` gives the pooled feature (B, feature_dim)."""

    def __init__(self, cfg: SEResNet2dConfig = SEResNet2dConfig()):
        super().__init__()
        self.cfg = cfg
        w0 = cfg.widths[0]
        self.conv1 = nn.Conv2d(cfg.in_channels, w0, 7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(w0)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in = w0
        for i, (n_blocks, width) in enumerate(zip(cfg.layers, cfg.widths)):
            stride = 1 if i == 0 else 2
            blocks = [
                SEBasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1, cfg.se_reduction)
                for j in range(n_blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = c_in
        # Kaiming-normal (fan-out) conv weights, the usual ResNet init (BN gamma 1, beta 0 by
        # default); the stem conv and the SE linears keep PyTorch's default init, as released.
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.conv1:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))  # (B, 12, 13, 21) -> (B, 64, 7, 11)
        x = self.maxpool(x)  # -> (B, 64, 4, 6)
        x = self.layer1(x)  # -> (B, 64, 4, 6)
        x = self.layer2(x)  # -> (B, 128, 2, 3)
        x = self.layer3(x)  # -> (B, 256, 1, 2)
        x = self.layer4(x)  # -> (B, 512, 1, 1)
        return self.avgpool(x).flatten(1)  # -> (B, 512); flatten(1), not squeeze() (B21)


def se_resnet34(in_channels: int = 12) -> SEResNet2d:
    """The paper's spectrogram backbone: (B, in_channels, F, frames) -> (B, 512); 21,470,144 parameters for 12 leads."""
    return SEResNet2d(SEResNet2dConfig(in_channels=check_int("in_channels", in_channels, 1)))
