"""Sharpness: the variance of the Laplacian of the grey image (a standard focus measure, on a
0..255 scale). Weight-free; fine detail costs JPEG bytes, so it trades off against compressibility."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Reward

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
# ITU-R BT.601 luma weights, as PIL's convert("L") uses.
LUMA = (0.299, 0.587, 0.114)


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    grey = sum(w * images[..., c] for c, w in enumerate(LUMA)).double() * 255.0
    kernel = LAPLACIAN.to(grey).view(1, 1, 3, 3)
    response = F.conv2d(grey.unsqueeze(1), kernel)
    return response.flatten(1).var(dim=1, unbiased=False).float()


class Sharpness(Reward):
    name = "sharpness"

    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return laplacian_variance(images)
