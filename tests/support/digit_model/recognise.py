"""A simple, independent check of what a digit image shows: nearest class centroid on
load_digits' 8x8 images. The caller passes load_digits in (scikit-learn is a training and test
dependency only), so this module imports nothing beyond torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def image_to_ink(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] RGB in [0, 1] (dark ink on white paper) -> [B, 8, 8] ink in [0, 1], each cell
    the mean over its block, like load_digits' 8x8 images (which are 0..16 / 16)."""
    ink = 1.0 - images[..., :3].float().mean(dim=-1)
    return F.adaptive_avg_pool2d(ink.unsqueeze(1), 8).squeeze(1)


def class_centroids(digit_images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[10, 8, 8] mean ink of each class, from load_digits' images (0..16) and targets."""
    ink = digit_images.float() / 16.0
    return torch.stack([ink[labels == digit].mean(dim=0) for digit in range(10)])


def nearest_centroid(ink: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The class whose centroid is nearest (Euclidean) to each [8, 8] ink image."""
    distances = torch.cdist(ink.flatten(1), centroids.flatten(1))
    return distances.argmin(dim=1)
