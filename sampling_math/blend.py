"""Diffusion Blend maths: combining denoised predictions of LoRA variants, and the LS draw schedule.

ComfyUI models return denoised x0, and blending x0 equals blending noise predictions only when the
coefficients sum to one. So the general form, with the base prediction D_pre and the LoRA-patched
predictions D_i, is

    D = D_pre + lambda * sum_i w_i (D_i - D_pre)

(DB-MPA: lambda = 1 and w on the simplex; DB-KLA: one LoRA, lambda >= 0). When lambda * sum(w) = 1
the D_pre terms cancel and the base pass must not be run; a zero coefficient needs no pass either.

DB-MPA-LS instead draws one variant per denoising step from Categorical(w), from a generator seeded
by the node (never the global RNG). Pure torch; nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

# lambda * sum(w) within this of 1 counts as 1: the base pass is then skipped (its coefficient is
# below float noise of the blend itself).
SUM_TO_ONE_TOLERANCE = 1e-9


class BlendInputError(ValueError):
    """Bad blend weights or lambda: the message names the input and what is allowed."""


def validate_weights(
    weights: Sequence[float], allow_negative: bool, labels: Sequence[str] | None = None
) -> list[float]:
    """Finite weights, not all zero, and non-negative unless the general form allows it.

    Errors name each weight by its label (the caller's names for them; "weight 1", ... by default).
    """
    values = [float(w) for w in weights]
    labels = list(labels) if labels is not None else [f"weight {i + 1}" for i in range(len(values))]
    if not values:
        raise BlendInputError("weights: no weights were given; give one weight per LoRA")
    for label, value in zip(labels, values, strict=True):
        if not math.isfinite(value):
            raise BlendInputError(f"{label} is {value}; weights must be finite numbers")
        if value < 0 and not allow_negative:
            raise BlendInputError(
                f"{label} is {value}; weights here must be >= 0 (they are probabilities / simplex weights)"
            )
    if all(value == 0 for value in values):
        raise BlendInputError(
            f"{', '.join(labels)}: all weights are zero; at least one weight must be non-zero"
        )
    return values


def normalise_onto_simplex(weights: Sequence[float], labels: Sequence[str] | None = None) -> list[float]:
    """Non-negative weights scaled to sum to one (the probability simplex)."""
    values = validate_weights(weights, allow_negative=False, labels=labels)
    total = math.fsum(values)
    return [value / total for value in values]


def is_on_simplex(weights: Sequence[float], tolerance: float = 1e-6) -> bool:
    return all(w >= 0 for w in weights) and abs(math.fsum(weights) - 1.0) <= tolerance


@dataclass(frozen=True)
class BlendPlan:
    """Which passes to run and how to combine them: D = D_pre + sum_i c_i (D_i - D_pre).

    variant_coefficients[i] = lambda * w_i. Variants with c_i = 0 are not run; the base pass runs only
    when sum(c) differs from 1 (otherwise D = sum_i c_i D_i exactly).
    """

    variant_coefficients: tuple[float, ...]
    needs_base: bool

    @property
    def active_variants(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.variant_coefficients) if c != 0)

    @property
    def passes_per_step(self) -> int:
        return len(self.active_variants) + (1 if self.needs_base else 0)


def plan_blend(weights: Sequence[float], blend_lambda: float) -> BlendPlan:
    if not math.isfinite(blend_lambda):
        raise BlendInputError(f"lambda is {blend_lambda}; it must be a finite number")
    coefficients = tuple(float(blend_lambda) * float(w) for w in weights)
    needs_base = abs(math.fsum(coefficients) - 1.0) > SUM_TO_ONE_TOLERANCE
    return BlendPlan(coefficients, needs_base)


def combine_predictions(
    plan: BlendPlan, base: torch.Tensor | None, variants: dict[int, torch.Tensor]
) -> torch.Tensor:
    """Blend one conditioning's denoised predictions by the plan.

    `variants` maps each active variant index to its prediction. With the base skipped the
    coefficients sum to one, so a single variant with c = 1 comes back bit for bit.
    """
    active = plan.active_variants
    missing = [i for i in active if i not in variants]
    if missing:
        raise ValueError(f"predictions missing for variants {missing}")
    if plan.needs_base:
        if base is None:
            raise ValueError("the plan needs the base prediction D_pre, but none was given")
        out = base.clone()
        for i in active:
            out += plan.variant_coefficients[i] * (variants[i] - base)
        return out
    if not active:
        raise ValueError("the plan has no active variant and no base pass")
    first, *rest = active
    out = variants[first] * plan.variant_coefficients[first]
    for i in rest:
        out += plan.variant_coefficients[i] * variants[i]
    return out


def draw_probabilities(simplex_weights: Sequence[float], blend_lambda: float) -> list[float]:
    """DB-MPA-LS's per-step draw: variant i with probability lambda * w_i, the base model (last)
    with 1 - lambda. Drawing interpolates only, so lambda is in [0, 1]."""
    if not 0.0 <= blend_lambda <= 1.0:
        raise BlendInputError(f"lambda is {blend_lambda}; drawing one model per step needs 0 <= lambda <= 1")
    return [blend_lambda * w for w in simplex_weights] + [1.0 - blend_lambda]


def stochastic_choices(weights: Sequence[float], step_count: int, seed: int) -> list[int]:
    """One variant index per denoising step, drawn i.i.d. from Categorical(weights).

    Inverse-CDF sampling from a generator seeded here: the uniforms depend only on the seed, so
    the same seed gives the same sequence and nudging the weights changes few draws (a coupled
    comparison), while the global RNG, and so the sampling noise, is never touched.
    """
    if step_count < 0:
        raise ValueError(f"step_count must be >= 0, got {step_count}")
    probabilities = normalise_onto_simplex(weights)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    uniforms = torch.rand(step_count, generator=generator, dtype=torch.float64)
    cumulative = torch.tensor(probabilities, dtype=torch.float64).cumsum(0)
    choices = torch.searchsorted(cumulative, uniforms, right=True)
    # Rounding can leave cumulative[-1] a hair below 1; a uniform above it belongs to the last
    # variant with non-zero weight (never to a zero-weight one).
    last_nonzero = max(i for i, p in enumerate(probabilities) if p > 0)
    choices = choices.clamp(max=last_nonzero)
    return [int(c) for c in choices]


def step_index_for_sigma(sigma: float, schedule: Sequence[float]) -> int:
    """The step i of a decreasing sigma schedule whose interval (sigma_{i+1}, sigma_i] holds sigma.

    Sigmas above sigma_0 (churn) belong to step 0; sigma at or below the last non-final sigma belongs
    to the last step.
    """
    steps = len(schedule) - 1
    if steps < 1:
        raise ValueError("a sigma schedule needs at least two entries")
    for i in range(steps):
        if sigma > schedule[i + 1]:
            return i
    return steps - 1


def resolve_step(sigma_step: int, completed_steps: int | None) -> int:
    """The step a model evaluation belongs to.

    Completed steps (counted from the sampler's per-step callback) is exact for samplers that call
    the model several times per step (Heun evaluates step i again at sigma_{i+1}, which the sigma
    alone would place in step i+1). The sigma places an evaluation in step i or i+1 of the true
    step i; if it is further ahead, the sampler does not report steps and the sigma is used.
    """
    if completed_steps is None or sigma_step > completed_steps + 1:
        return sigma_step
    return completed_steps
