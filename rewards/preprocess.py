"""Image preprocessing in torch, on the device, matching each model's published pipeline.

ComfyUI IMAGEs are [B, H, W, C] floats in [0, 1]. The originals convert to tensors and then
resize with torchvision's bicubic (HPSv2), or resize PIL images with bicubic before converting
(OpenAI CLIP, LAION aesthetic, PickScore, ImageReward). We resize tensors with torchvision's
antialiased bicubic in both cases; for the PIL pipelines we clamp to [0, 1] afterwards, as the
PIL round trip does, so the remaining difference is only PIL's 8-bit rounding.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_channels_first(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float()


def resize_shortest_center_crop(pixels: torch.Tensor, size: int, clamp: bool = True) -> torch.Tensor:
    """torchvision Resize(size, BICUBIC) + CenterCrop(size): the CLIP/BLIP evaluation transform."""
    if min(pixels.shape[-2:]) != size:
        pixels = TF.resize(pixels, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
        if clamp:
            pixels = pixels.clamp(0.0, 1.0)
    if tuple(pixels.shape[-2:]) != (size, size):
        pixels = TF.center_crop(pixels, [size, size])
    return pixels


def resize_longest_and_pad(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """HPSv2's ResizeMaxSize: scale the longest side to `size`, pad with black to a square."""
    height, width = pixels.shape[-2:]
    scale = size / float(max(height, width))
    if scale == 1.0:
        return pixels
    new_height, new_width = round(height * scale), round(width * scale)
    pixels = TF.resize(
        pixels, [new_height, new_width], interpolation=InterpolationMode.BICUBIC, antialias=True
    )
    pad_h, pad_w = size - new_height, size - new_width
    return TF.pad(pixels, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)


def normalize(pixels: torch.Tensor, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    return (pixels - mean_t) / std_t
