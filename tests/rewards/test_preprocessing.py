"""Our on-device preprocessing against the published pipelines on images that need resizing.

HPSv2 resizes tensors with torchvision, as we do, so it is exact (see test_reward_parity). The
CLIP, PickScore, ImageReward and aesthetic pipelines resize 8-bit PIL images; we resize floats on
the device, so the only difference allowed is PIL's 8-bit rounding (a few levels out of 255).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Resize, ToTensor


def smooth_image(height: int, width: int) -> np.ndarray:
    """A photo-like image: smooth gradients and a soft blob, 8-bit."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    blob = np.exp(-((x - 0.4) ** 2 + (y - 0.3) ** 2) * 20)
    rgb = np.stack([0.2 + 0.6 * x, 0.5 + 0.4 * blob, 0.8 - 0.5 * y], axis=-1).clip(0, 1)
    return (rgb * 255).round().astype(np.uint8)


@pytest.mark.parametrize(("height", "width", "size"), [(512, 768, 224), (300, 200, 224), (100, 150, 224)])
def test_shortest_side_resize_and_crop_match_the_pil_pipeline(height, width, size):
    from multireward.rewards.preprocess import resize_shortest_center_crop, to_channels_first

    array = smooth_image(height, width)
    published = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size), ToTensor()])
    expected = published(Image.fromarray(array))
    ours = resize_shortest_center_crop(
        to_channels_first(torch.from_numpy(array).float()[None] / 255.0), size
    )[0]
    assert ours.shape == expected.shape
    difference = (ours - expected).abs()
    assert float(difference.max()) <= 3 / 255
    assert float(difference.mean()) <= 0.6 / 255


def test_longest_side_resize_pads_with_black_like_hpsv2():
    from multireward.rewards.preprocess import resize_longest_and_pad

    pixels = torch.ones(1, 3, 100, 50)
    out = resize_longest_and_pad(pixels, 224)
    assert out.shape == (1, 3, 224, 224)
    assert float(out[..., :, :56].abs().max()) == 0.0 and float(out[..., :, -56:].abs().max()) == 0.0
    assert float(out[..., :, 60:160].min()) > 0.99
