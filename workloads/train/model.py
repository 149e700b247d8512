"""The model the reference training job fits: a small CNN for 8x8 glyph digits."""

from __future__ import annotations

import torch
from park.workloads.train.data import NUM_CLASSES
from torch import nn


class GlyphNet(nn.Module):
    """Two 3x3 convolutions and a linear head (~25k parameters): small enough for two CPU workers,
    big enough to need a few epochs, so loss curves and checkpoints mean something."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * channels * 4 * 4, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))
