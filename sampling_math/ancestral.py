"""The ancestral split of one sampling step: x_next = mean(x, denoised) + noise_scale * z.

SRSoup guides only the noise of an ancestral step: candidates mean + noise_scale * z_n all sit at
noise level sigma_next. Two model families need two forms of the same split (as ComfyUI's own
ancestral samplers have): k-diffusion's sigma form for eps/v-prediction, and the rectified-flow
form for flow-matching models (ComfyUI's CONST model sampling: SD3, Flux, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AncestralStep:
    sigma: float
    sigma_next: float
    #: mean = x_coeff * x + denoised_coeff * denoised
    x_coeff: float
    denoised_coeff: float
    #: The std of the fresh noise of the step (k-diffusion's sigma_up); 0 at the last step.
    noise_scale: float

    def mean(self, x: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
        return self.x_coeff * x + self.denoised_coeff * denoised

    @property
    def has_noise(self) -> bool:
        return self.noise_scale > 0.0


def sigma_down_up(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """k-diffusion's get_ancestral_step: where the deterministic part lands, and the noise added."""
    if sigma_next == 0.0 or eta == 0.0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    return sigma_down, sigma_up


def kdiffusion_step(sigma: float, sigma_next: float, eta: float = 1.0) -> AncestralStep:
    """Euler ancestral in sigma space: mean = denoised + sigma_down * (x - denoised) / sigma."""
    sigma_down, sigma_up = sigma_down_up(sigma, sigma_next, eta)
    ratio = sigma_down / sigma
    return AncestralStep(sigma, sigma_next, ratio, 1.0 - ratio, sigma_up)


def rectified_flow_step(sigma: float, sigma_next: float, eta: float = 1.0) -> AncestralStep:
    """The same split for x_sigma = (1 - sigma) x0 + sigma * noise (ComfyUI's euler_ancestral_RF)."""
    if sigma_next == 0.0:
        return AncestralStep(sigma, sigma_next, 0.0, 1.0, 0.0)
    sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * eta)
    alpha_next, alpha_down = 1.0 - sigma_next, 1.0 - sigma_down
    renoise = math.sqrt(max(sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2, 0.0))
    ratio = sigma_down / sigma
    scale = alpha_next / alpha_down
    return AncestralStep(sigma, sigma_next, scale * ratio, scale * (1.0 - ratio), renoise)


def ancestral_step(sigma: float, sigma_next: float, flow: bool, eta: float = 1.0) -> AncestralStep:
    sigma, sigma_next = float(sigma), float(sigma_next)
    return rectified_flow_step(sigma, sigma_next, eta) if flow else kdiffusion_step(sigma, sigma_next, eta)
