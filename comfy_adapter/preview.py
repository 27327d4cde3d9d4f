"""A live front: while SRSoup samples, ComfyUI's preview shows every chain, not only the first.

ComfyUI's own preview decodes the first latent of a batch with the preview method the user chose
(Latent2RGB, TAESD, ...). Here each chain's current prediction goes through that same previewer
and the tiles become one labelled grid, sent as the node's preview with its progress. With
previews off ComfyUI gives no previewer, and nothing here runs: no decode, no picture.
"""

from __future__ import annotations

from collections.abc import Callable

import comfy.utils
import latent_preview
import numpy as np
import torch
from PIL import Image

#: Tiles smaller than this (Latent2RGB previews are at latent size) are enlarged, pixel for pixel,
#: so the grid's labels have room.
MIN_TILE = 128

#: picture(tiles [L, H, W, 3] in [0, 1], chain weights [L, M], columns) -> one labelled picture.
GridPicture = Callable[[torch.Tensor, torch.Tensor, int], Image.Image]


def progress_callback(steps: int):
    """The progress bar of a sampling run, with no preview of its own (the grid replaces it)."""
    bar = comfy.utils.ProgressBar(steps)

    def callback(step, x0, x, total_steps):
        bar.update_absolute(step + 1, total_steps)

    return callback


class LiveFront:
    """Sends a labelled grid of all chains' predictions as the preview of every step."""

    def __init__(self, previewer, weights: torch.Tensor, picture: GridPicture, total_steps: int):
        self.previewer = previewer
        self.weights = weights
        self.picture = picture
        self.bar = comfy.utils.ProgressBar(total_steps)

    @classmethod
    def start(cls, base_model, device, weights, picture: GridPicture | None, total_steps: int):
        """A LiveFront, or None when there is nothing to show (previews off, or no picture maker)."""
        if picture is None:
            return None
        previewer = latent_preview.get_previewer(device, base_model.latent_format)
        if previewer is None:
            return None
        return cls(previewer, weights, picture, total_steps)

    def tiles(self, denoised: torch.Tensor, columns: int) -> torch.Tensor:
        """[L, H, W, 3] in [0, 1]: each chain's prediction as ComfyUI's previewer shows it."""
        count = denoised.shape[0]
        pictures = [self.previewer.decode_latent_to_preview(denoised[k : k + 1]) for k in range(count)]
        width, height = pictures[0].size
        scale = max(1, -(-MIN_TILE // max(width, height)))
        limit = max(MIN_TILE, latent_preview.MAX_PREVIEW_RESOLUTION // columns)
        size = (width * scale, height * scale)
        if max(size) > limit:  # large previews (TAESD) shrink so the whole grid fits the preview size
            size = (max(1, width * limit // max(width, height)), max(1, height * limit // max(width, height)))
        resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
        arrays = [np.asarray(p.convert("RGB").resize(size, resample), dtype=np.float32) for p in pictures]
        return torch.from_numpy(np.stack(arrays) / 255.0)

    def show(self, step: int, denoised: torch.Tensor) -> None:
        columns = grid_columns(denoised.shape[0])
        grid = self.picture(self.tiles(denoised, columns), self.weights, columns)
        self.bar.update_absolute(step + 1, None, ("JPEG", grid, latent_preview.MAX_PREVIEW_RESOLUTION))


def grid_columns(count: int) -> int:
    """Columns of a near-square grid: 3 for 6 chains, 4 for 11 or 13."""
    return max(1, int(np.ceil(np.sqrt(count))))
