"""JPEG compressibility: -(JPEG bytes / 1000) at quality 95 (the SRSoup authors' definition)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from .base import Reward

JPEG_QUALITY = 95


def jpeg_kilobytes(image: torch.Tensor, quality: int = JPEG_QUALITY) -> float:
    """Size in kilobytes (1000 bytes) of one [H, W, 3] image in [0, 1] saved as JPEG."""
    array = (image.cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.tell() / 1000.0


class JpegCompressibility(Reward):
    name = "jpeg_compressibility"

    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        return torch.tensor([-jpeg_kilobytes(image) for image in images])
