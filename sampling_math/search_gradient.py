"""Search-gradient guidance with black-box rewards (SRSoup's Algorithm 1 and its soup correction).

Candidates c_n = mu + s z_n are scored; the z-scored rewards weight their noises into a search
direction g = sum_n r_n z_n, and the step keeps the noise on the Gaussian shell:
x_next = mu + s sqrt(d) g / ||g||, so there is no separate step size.
"""

from __future__ import annotations

import math

import torch

#: Reward spreads at or below this fraction of the rewards' largest magnitude count as "all equal"
#: (relative, so that a reward on a tiny scale still guides; float64 rounding of equal values is ~1e-16).
EQUAL_REWARDS_TOLERANCE = 1e-7
ZSCORE_EPSILON = 1e-8

CORRECTIONS = ("divided_by_s", "authors", "none")


def zscores(rewards: torch.Tensor) -> torch.Tensor:
    """(r - mean) / (population std + 1e-8) over the last dimension; zeros where all are equal.

    All-equal rewards carry no direction, so they must give a zero gradient, not rounding noise
    amplified by 1e-8. "Equal" is relative to the rewards' own magnitude: rewards of order 1e-9 that
    differ are not equal (the search direction is normalised, so their scale does not matter).
    """
    rewards = rewards.double()
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, unbiased=False, keepdim=True)
    scale = rewards.abs().amax(dim=-1, keepdim=True)
    scores = (rewards - mean) / (std + ZSCORE_EPSILON)
    return torch.where(std <= EQUAL_REWARDS_TOLERANCE * scale, torch.zeros_like(scores), scores)


def search_direction(scores: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
    """g = sum_n scores_n * noises_n, for scores [N] and noises [N, *shape], on the noises' device
    (rewards score on the CPU; the noises live where the model samples)."""
    return torch.tensordot(scores.to(device=noises.device, dtype=noises.dtype), noises, dims=1)


def shell_step(
    mean: torch.Tensor, noise_scale: float, direction: torch.Tensor, fallback_noise: torch.Tensor
) -> torch.Tensor:
    """x = mean + s sqrt(d) g / ||g||; a zero direction (equal rewards) takes the plain ancestral
    step with fresh noise instead."""
    norm = direction.double().norm().item()
    if norm <= 1e-12 or not math.isfinite(norm):
        return mean + noise_scale * fallback_noise
    return mean + (noise_scale * math.sqrt(direction.numel()) / norm) * direction


def correction_divisor(correction: str, noise_scale: float, sigma_next: float, flow: bool) -> float | None:
    """What the mean offset between two chains is divided by before it is added to the noise.

    divided_by_s: the offset in units of the step's noise scale (scale-free; our default).
    authors: the SRSoup authors' code works in VP units and leaves out the division by s; ported
      to sigma space that is sqrt(1 + sigma_next^2). Flow-matching latents are already in data
      scale, so there it is 1.
    none: no correction (plain interpolation of the exemplars' gradients); returns None.
    """
    if correction == "divided_by_s":
        return noise_scale
    if correction == "authors":
        return 1.0 if flow else math.sqrt(1.0 + sigma_next**2)
    if correction == "none":
        return None
    raise ValueError(f"correction: unknown '{correction}'; allowed: {', '.join(CORRECTIONS)}")


def soup_noises(
    noises: torch.Tensor, exemplar_mean: torch.Tensor, chain_mean: torch.Tensor, divisor: float | None
) -> torch.Tensor:
    """The exemplar's candidate noises as seen from another chain.

    Candidate mu^m + s z_n equals mu^l + s (z_n + (mu^m - mu^l) / s): with u_n the corrected
    noise, zhat_n = sqrt(d) u_n / ||u_n|| keeps the norm of a Gaussian sample.
    """
    if divisor is None:
        return noises
    corrected = noises + ((exemplar_mean - chain_mean) / divisor).unsqueeze(0)
    flat = corrected.flatten(1)
    norms = flat.norm(dim=1).clamp_min(1e-12)
    scale = math.sqrt(flat.shape[1]) / norms
    return corrected * scale.view(-1, *([1] * (corrected.ndim - 1)))
