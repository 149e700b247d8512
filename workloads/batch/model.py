"""The vision model the batch workload runs: a tiny CNN with fixed-seed weights, built locally.

No model hub is reachable from CI or an air-gapped cluster, and the point of the stage is the inference
plumbing (actor pool, GPU or CPU placement, batching), not the labels, so a deterministic untrained CNN
serves: same seed, same weights, same predictions on every run, saved with ``torch.save``.
"""

from __future__ import annotations

import io

import torch
from park.workloads import storage
from torch import nn

VISION_SEED = 7
NUM_LABELS = 4
LABELS = ("safe", "review", "sensitive", "blocked")


class TinyVisionNet(nn.Module):
    """Three conv blocks over a 32x32 RGB image, global pooling, four-way head (~25k parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, NUM_LABELS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))


def build_vision_model(uri: str) -> str:
    """Create the model with fixed-seed weights and save its state dict at ``uri`` (any storage URI)."""
    torch.manual_seed(VISION_SEED)
    model = TinyVisionNet()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    filesystem, path = storage.resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        filesystem.create_dir(parent, recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(buffer.getvalue())
    return uri


def load_vision_model(uri: str, device: torch.device) -> TinyVisionNet:
    filesystem, path = storage.resolve(uri)
    with filesystem.open_input_stream(path) as stream:
        state = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
    model = TinyVisionNet()
    model.load_state_dict(state)
    return model.to(device).eval()
