"""Diffusion Blend maths: blend plans and combinations, simplex handling, LS draws, Proposition 2."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from support.paper_metrics import extra_variance_per_step

from multireward.sampling_math.blend import (
    BlendInputError,
    combine_predictions,
    draw_probabilities,
    is_on_simplex,
    normalise_onto_simplex,
    plan_blend,
    resolve_step,
    step_index_for_sigma,
    stochastic_choices,
    validate_weights,
)


def _predictions(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 8, 8, generator=generator) for _ in range(count)]


# --- weights -------------------------------------------------------------------------------------


def test_normalise_onto_simplex_scales_to_sum_one():
    assert normalise_onto_simplex([1.0, 3.0]) == [0.25, 0.75]
    assert normalise_onto_simplex([0.0, 2.0, 2.0]) == [0.0, 0.5, 0.5]
    assert is_on_simplex([0.25, 0.75]) and not is_on_simplex([1.0, 3.0]) and not is_on_simplex([1.5, -0.5])


def test_all_zero_weights_are_refused_naming_the_inputs():
    with pytest.raises(BlendInputError, match=r"weight 1, weight 2: all weights are zero"):
        normalise_onto_simplex([0.0, 0.0])
    with pytest.raises(BlendInputError, match="all weights are zero"):
        validate_weights([0.0, 0.0, 0.0], allow_negative=True)


def test_negative_and_non_finite_weights_are_refused_on_the_simplex():
    with pytest.raises(BlendInputError, match=r"weight 2 is -0.5; weights here must be >= 0"):
        normalise_onto_simplex([1.0, -0.5])
    with pytest.raises(BlendInputError, match="must be finite"):
        validate_weights([1.0, math.nan], allow_negative=True)
    assert validate_weights([1.5, -0.5], allow_negative=True) == [1.5, -0.5]


def test_errors_name_each_weight_by_the_callers_label():
    with pytest.raises(BlendInputError, match=r"^weight_3 is -1.0; weights here must be >= 0"):
        normalise_onto_simplex([1.0, -1.0], labels=["weight_1", "weight_3"])


def test_draw_probabilities_give_the_base_model_what_lambda_leaves():
    assert draw_probabilities([0.25, 0.75], 1.0) == [0.25, 0.75, 0.0]
    assert draw_probabilities([0.5, 0.5], 0.5) == [0.25, 0.25, 0.5]
    assert draw_probabilities([0.5, 0.5], 0.0) == [0.0, 0.0, 1.0]
    with pytest.raises(BlendInputError, match="0 <= lambda <= 1"):
        draw_probabilities([1.0], 1.5)


# --- plans and combinations ----------------------------------------------------------------------


def test_plan_skips_the_base_pass_exactly_when_lambda_times_sum_is_one():
    assert not plan_blend([0.5, 0.5], 1.0).needs_base
    assert not plan_blend([0.2, 0.3, 0.5], 1.0).needs_base  # sums to 1 only up to rounding
    assert plan_blend([0.5, 0.5], 2.0).needs_base
    assert plan_blend([1.5, 0.5], 1.0).needs_base
    assert plan_blend([1.0], 0.0).passes_per_step == 1  # KLKnob lambda 0: base only
    assert plan_blend([1.0], 1.0).passes_per_step == 1  # KLKnob lambda 1: LoRA only
    assert plan_blend([1.0], 0.7).passes_per_step == 2


def test_zero_weight_variants_are_not_run():
    plan = plan_blend([0.0, 1.0, 0.0], 1.0)
    assert plan.active_variants == (1,) and plan.passes_per_step == 1


def test_one_hot_blend_returns_that_prediction_bit_for_bit():
    predictions = _predictions(3)
    plan = plan_blend([0.0, 1.0, 0.0], 1.0)
    out = combine_predictions(plan, None, {1: predictions[1]})
    assert torch.equal(out, predictions[1])


def test_simplex_blend_is_the_weighted_average():
    a, b, c = _predictions(3)
    plan = plan_blend([0.2, 0.3, 0.5], 1.0)
    out = combine_predictions(plan, None, {0: a, 1: b, 2: c})
    torch.testing.assert_close(out, 0.2 * a + 0.3 * b + 0.5 * c)


def test_general_form_extrapolates_from_the_base():
    base, lora = _predictions(2, seed=1)
    out = combine_predictions(plan_blend([1.0], 2.0), base, {0: lora})
    torch.testing.assert_close(out, base + 2.0 * (lora - base))
    lambda_zero = combine_predictions(plan_blend([1.0], 0.0), base, {})
    assert torch.equal(lambda_zero, base)


def test_off_simplex_weights_use_the_general_form():
    base, a, b = _predictions(3, seed=2)
    out = combine_predictions(plan_blend([1.5, -0.25], 1.0), base, {0: a, 1: b})
    torch.testing.assert_close(out, base + 1.5 * (a - base) - 0.25 * (b - base))


def test_blend_does_not_modify_its_inputs():
    base, a = _predictions(2, seed=3)
    kept_base, kept_a = base.clone(), a.clone()
    combine_predictions(plan_blend([1.0], 0.5), base, {0: a})
    assert torch.equal(base, kept_base) and torch.equal(a, kept_a)


# --- LS draws ------------------------------------------------------------------------------------


def test_draws_are_reproducible_per_seed_and_differ_between_seeds():
    first = stochastic_choices([0.5, 0.5], 64, seed=11)
    assert first == stochastic_choices([0.5, 0.5], 64, seed=11)
    assert first != stochastic_choices([0.5, 0.5], 64, seed=12)


def test_draws_never_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    stochastic_choices([0.3, 0.7], 100, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_one_hot_and_zero_weights_are_respected():
    assert set(stochastic_choices([0.0, 1.0, 0.0], 500, seed=1)) == {1}
    assert 1 not in set(stochastic_choices([0.5, 0.0, 0.5], 2000, seed=2))


def test_draw_frequencies_follow_the_weights_chi_square():
    weights = [0.2, 0.3, 0.5]
    draws = 30000
    choices = torch.tensor(stochastic_choices(weights, draws, seed=2024))
    observed = torch.bincount(choices, minlength=3).double()
    expected = torch.tensor(weights, dtype=torch.float64) * draws
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    # 2 degrees of freedom: P(chi2 > 13.82) = 0.001.
    assert chi_square < 13.82, (observed.tolist(), chi_square)


def test_unnormalised_weights_draw_like_their_simplex_projection():
    assert stochastic_choices([2.0, 6.0], 200, seed=4) == stochastic_choices([0.25, 0.75], 200, seed=4)


# --- which step an evaluation belongs to -----------------------------------------------------------


def test_step_index_for_sigma_places_each_sigma_in_its_interval():
    schedule = [10.0, 5.0, 2.0, 0.5, 0.0]
    assert [step_index_for_sigma(s, schedule) for s in (10.0, 5.0, 2.0, 0.5)] == [0, 1, 2, 3]
    assert step_index_for_sigma(14.0, schedule) == 0  # churn raises sigma above sigma_0
    assert step_index_for_sigma(3.0, schedule) == 1  # a midpoint evaluation (dpm_2)
    assert step_index_for_sigma(0.01, schedule) == 3


def test_resolve_step_keeps_heun_corrections_in_their_step():
    schedule = [10.0, 5.0, 2.0, 0.0]
    # Heun: step 0 evaluates at 10 and again at 5 before the callback reports step 0 done.
    assert resolve_step(step_index_for_sigma(10.0, schedule), 0) == 0
    assert resolve_step(step_index_for_sigma(5.0, schedule), 0) == 0
    assert resolve_step(step_index_for_sigma(5.0, schedule), 1) == 1
    # A sampler that never reports steps: the sigma decides.
    assert resolve_step(step_index_for_sigma(2.0, schedule), 0) == 2
    assert resolve_step(step_index_for_sigma(2.0, schedule), None) == 2


def test_extra_variance_per_step_is_the_weighted_spread_of_the_means():
    means = [torch.zeros(4), torch.ones(4) * 2]
    # mu_bar = 1.5 (w = 0.25, 0.75): 0.25 * 4 * 1.5^2 + 0.75 * 4 * 0.5^2 = 3.0
    assert float(extra_variance_per_step([0.25, 0.75], means)) == pytest.approx(3.0)


# --- Proposition 2 on a closed-form toy -------------------------------------------------------------

TOY_WEIGHTS = (0.4, 0.6)
TOY_MEANS = (-1.0, 2.0)
TOY_VARIANCES = (0.25, 1.0)


def _gaussian_denoiser(x: torch.Tensor, sigma: float, mean: float, variance: float) -> torch.Tensor:
    """E[x0 | x] for data N(mean, variance I) observed as x = x0 + sigma * noise."""
    return mean + variance / (variance + sigma**2) * (x - mean)


def _toy_schedule(steps: int) -> list[float]:
    sigmas = torch.exp(torch.linspace(math.log(20.0), math.log(0.02), steps, dtype=torch.float64))
    return [*sigmas.tolist(), 0.0]


def _toy_sample(steps: int, stochastic: bool, eta: float, samples: int = 4000, dims: int = 16, seed: int = 0):
    """Euler (eta = 0) or Euler ancestral (eta = 1) with DB-MPA's blend or LS's per-step draw.

    LS draws its variant per sample and step (independent chains): one shared sequence per batch
    would make the batch statistics depend on a single draw sequence.
    """
    generator = torch.Generator().manual_seed(seed)
    schedule = _toy_schedule(steps)
    x = torch.randn(samples, dims, generator=generator, dtype=torch.float64) * schedule[0]
    for sigma, sigma_next in itertools.pairwise(schedule):
        predictions = [
            _gaussian_denoiser(x, sigma, m, v) for m, v in zip(TOY_MEANS, TOY_VARIANCES, strict=True)
        ]
        if stochastic:
            pick_second = torch.rand(samples, 1, generator=generator, dtype=torch.float64) >= TOY_WEIGHTS[0]
            denoised = torch.where(pick_second, predictions[1], predictions[0])
        else:
            denoised = combine_predictions(plan_blend(TOY_WEIGHTS, 1.0), None, dict(enumerate(predictions)))
        if sigma_next == 0:
            x = denoised
            continue
        sigma_up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        x = x + (sigma_down - sigma) * (x - denoised) / sigma
        if sigma_up > 0:
            x = x + sigma_up * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return float(x.mean()), float(x.var(0).mean())


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_proposition_2_ls_approaches_db_mpa_as_steps_grow(eta):
    step_counts = [10, 20, 40, 80, 160]
    variance_gaps = []
    for steps in step_counts:
        mpa_mean, mpa_variance = _toy_sample(steps, stochastic=False, eta=eta)
        ls_mean, ls_variance = _toy_sample(steps, stochastic=True, eta=eta)
        assert abs(ls_mean - mpa_mean) < 0.05, (steps, ls_mean, mpa_mean)
        variance_gaps.append(ls_variance / mpa_variance - 1.0)
    # The extra variance shrinks with every doubling, about halving each time.
    assert all(later < earlier for earlier, later in itertools.pairwise(variance_gaps)), variance_gaps
    assert variance_gaps[0] > 4 * variance_gaps[-1] > 0, variance_gaps
    assert variance_gaps[-1] < 0.1, variance_gaps


def test_proposition_2_ancestral_sampling_shows_the_larger_gap():
    gaps = {}
    for eta in (0.0, 1.0):
        _, mpa_variance = _toy_sample(40, stochastic=False, eta=eta)
        _, ls_variance = _toy_sample(40, stochastic=True, eta=eta)
        gaps[eta] = ls_variance / mpa_variance - 1.0
    assert gaps[1.0] > gaps[0.0] > 0, gaps
