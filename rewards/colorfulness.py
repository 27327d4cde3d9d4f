"""Colorfulness (Hasler and Suesstrunk, 2003): a weight-free reward that conflicts with JPEG
compressibility (colour costs bytes), so two rewards can be traded off without any model file."""

from __future__ import annotations

import torch

from .base import Reward


def colorfulness(images: torch.Tensor) -> torch.Tensor:
    """M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), on a 0..255 scale."""
    pixels = images.double() * 255.0
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rg = (red - green).flatten(1)
    yb = (0.5 * (red + green) - blue).flatten(1)
    spread = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
    centre = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)
    return (spread + 0.3 * centre).float()


class Colorfulness(Reward):
    name = "colorfulness"

    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return colorfulness(images)
