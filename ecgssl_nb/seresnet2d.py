"""SE-ResNet34 2D, the spectrogram backbone S²θ̂: (B, 12, 13, 21) spectrograms -> (B, 512).

Paper Sec. II-B.2. A ResNet-34 (basic blocks [3, 4, 6, 3], widths 64/128/256/512, 1x1 conv + BN
shortcut where the stride or width changes) whose every block rescales its channels with a
squeeze-and-excitation layer (reduction 16) before the residual add. The stem conv takes the
12 leads as channels and, as in the released model, has a bias. The feature is a global
average pool. Backbone parameters: 21,470,144.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import UserError


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
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming-normal (fan-out) conv weights and BN gamma 1 / beta 0, the usual ResNet init;
        the stem conv keeps PyTorch's default init as in the released model, and the
        SE linears keep theirs."""
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
    """The paper's spectrogram backbone: (B, in_channels, F, frames) -> (B, 512); 21,470,144
    parameters for 12 leads."""
    if not isinstance(in_channels, int) or in_channels <= 0:
        raise UserError(f"in_channels must be a positive integer, got {in_channels!r}")
    return SEResNet2d(SEResNet2dConfig(in_channels=in_channels))
