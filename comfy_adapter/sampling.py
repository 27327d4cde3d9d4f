"""ComfyUI's samplers and schedulers: their names for the nodes' choices, and the stock KSampler run."""

from __future__ import annotations

import comfy.samplers
import nodes as comfy_nodes  # ComfyUI's nodes.py


def sampler_names() -> list[str]:
    """Every sampler ComfyUI offers: the list its own KSampler node shows."""
    return comfy.samplers.KSampler.SAMPLERS


def scheduler_names() -> list[str]:
    """Every scheduler ComfyUI offers: the list its own KSampler node shows."""
    return comfy.samplers.KSampler.SCHEDULERS


def sample_with_ksampler(
    model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise
) -> dict:
    """Sample as the stock KSampler node does (noise, mask, preview callback, progress) with `model`."""
    return comfy_nodes.common_ksampler(
        model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=denoise
    )[0]
