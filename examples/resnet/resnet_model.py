"""A small ResNet for 28x28 images, defined outside initsweep: the sweep names it by import path
(`target: "resnet_model:build"`), so it is imported from the folder the sweep runs in."""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    """Two 3x3 convs with BatchNorm and a shortcut (a 1x1 conv where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)  # zero its weight and the block starts as the identity
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, widths: list[int], blocks_per_stage: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]))
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            blocks = [Block(channels, width, 2 if i > 0 else 1)]  # each later stage halves the image
            blocks += [Block(width, width, 1) for b in range(1, blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        out = self.stages(F.relu(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build(input_shape: tuple[int, ...], num_classes: int, widths=(16, 32, 64), blocks_per_stage: int = 1) -> nn.Module:
    """initsweep calls this with one image's shape (channels, height, width) and the number of classes."""
    return ResNet(input_shape[0], num_classes, list(widths), blocks_per_stage)
