"""Glyph digits: a small, learnable, offline image-classification set generated from a fixed rule.

Why this data: the machines that run the conformance suite have no network and no torchvision or
scikit-learn, yet the training check must learn something real (loss falls, accuracy rises well above
chance). Each sample is an 8x8 grey image of one digit 0-9 drawn from a 3x5 pixel font, placed at a random
offset, with random stroke brightness, Gaussian noise and a few flipped pixels. Same seed, same data, on
every worker and every run, so data-parallel shards agree and reruns are comparable. Chance is 10%; the
small CNN of model.py passes 70% within four passes over 4096 samples and keeps climbing.
"""

from __future__ import annotations

import torch

IMAGE_SIZE = 8
NUM_CLASSES = 10
# 3 columns x 5 rows per digit, one string per row ("#" = ink).
FONT = {
    0: ("###", "#.#", "#.#", "#.#", "###"),
    1: (".#.", "##.", ".#.", ".#.", "###"),
    2: ("###", "..#", "###", "#..", "###"),
    3: ("###", "..#", "###", "..#", "###"),
    4: ("#.#", "#.#", "###", "..#", "..#"),
    5: ("###", "#..", "###", "..#", "###"),
    6: ("###", "#..", "###", "#.#", "###"),
    7: ("###", "..#", ".#.", ".#.", ".#."),
    8: ("###", "#.#", "###", "#.#", "###"),
    9: ("###", "#.#", "###", "..#", "###"),
}
NOISE_STD = 0.2
FLIP_PROBABILITY = 0.02


def glyphs() -> torch.Tensor:
    """The font as a (10, 5, 3) tensor of 0/1."""
    return torch.tensor([[[c == "#" for c in row] for row in FONT[d]] for d in range(NUM_CLASSES)],
                        dtype=torch.float32)


def make_glyph_digits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images (count, 1, 8, 8) and labels (count,), fully determined by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    font = glyphs()
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    rows = torch.randint(0, IMAGE_SIZE - 5 + 1, (count,), generator=generator)
    cols = torch.randint(0, IMAGE_SIZE - 3 + 1, (count,), generator=generator)
    brightness = 0.6 + 0.4 * torch.rand(count, generator=generator)
    images = torch.zeros(count, IMAGE_SIZE, IMAGE_SIZE)
    for i in range(count):
        r, c = int(rows[i]), int(cols[i])
        images[i, r:r + 5, c:c + 3] = font[labels[i]] * brightness[i]
    flips = torch.rand(images.shape, generator=generator) < FLIP_PROBABILITY
    images = torch.where(flips, 1.0 - images, images)
    images = images + NOISE_STD * torch.randn(images.shape, generator=generator)
    return images.unsqueeze(1), labels


def train_and_test_sets(train_size: int = 4096, test_size: int = 1024, seed: int = 0):
    """Two disjoint TensorDatasets (different seeds), the test set never seen in training."""
    from torch.utils.data import TensorDataset

    return (TensorDataset(*make_glyph_digits(train_size, seed)),
            TensorDataset(*make_glyph_digits(test_size, seed + 1_000_003)))
