"""The one interface every reward follows: a batch of ComfyUI IMAGEs and a prompt in, one float
per image out, higher is better.

Images are ComfyUI IMAGE tensors: [B, H, W, C] floats in [0, 1] (C = 3; an alpha channel is
dropped). Scores come back as a float32 CPU tensor of shape [B].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class RewardError(ValueError):
    """A reward could not score: the message names the input or the reward at fault."""


class Reward(ABC):
    #: Registry name, e.g. "jpeg_compressibility".
    name: str = "reward"
    #: Whether the score depends on the prompt (then an empty prompt is an error).
    needs_prompt: bool = False

    def __init__(self) -> None:
        # Counted at the reward's own boundary, independently of any sampler's ledger, so that a
        # report can show how many images the rewards really saw.
        self.images_seen = 0

    @property
    def label(self) -> str:
        """Human-readable name for reports and plots."""
        return self.name

    def score(self, images: torch.Tensor, prompt: str = "") -> torch.Tensor:
        images = validate_images(images, self.label)
        if self.needs_prompt and not (prompt or "").strip():
            raise RewardError(
                f"reward '{self.label}' scores images against a prompt, but the prompt is empty; "
                "connect or type the prompt on the node that scores (the 'prompt' input)."
            )
        scores = self._score(images, prompt or "")
        scores = torch.as_tensor(scores).detach().to(device="cpu", dtype=torch.float32).reshape(-1)
        if scores.shape[0] != images.shape[0]:
            raise RewardError(
                f"reward '{self.label}' returned {scores.shape[0]} scores for {images.shape[0]} images"
            )
        if not torch.isfinite(scores).all():
            bad = [i for i, s in enumerate(scores.tolist()) if not math.isfinite(s)]
            raise RewardError(f"reward '{self.label}' gave non-finite scores (NaN or inf) for images {bad}")
        self.images_seen += images.shape[0]
        return scores

    @abstractmethod
    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        """Scores for validated [B, H, W, 3] images in [0, 1]."""


def validate_images(images, reward_label: str) -> torch.Tensor:
    """Check that `images` is a ComfyUI IMAGE batch; return it as [B, H, W, 3] float in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise RewardError(
            f"reward '{reward_label}' needs an IMAGE input (a [batch, height, width, channels] tensor), "
            f"got {type(images).__name__}"
        )
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise RewardError(
            f"reward '{reward_label}' needs an IMAGE input shaped [batch, height, width, 3], "
            f"got a tensor of shape {list(images.shape)} (is this a LATENT or a MASK?)"
        )
    if images.shape[0] == 0:
        raise RewardError(f"reward '{reward_label}' got an empty image batch (0 images); nothing to score")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise RewardError(f"reward '{reward_label}' got images of size {images.shape[2]}x{images.shape[1]}")
    if images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    elif images.shape[-1] == 4:
        images = images[..., :3]
    return images.float().clamp(0.0, 1.0)
