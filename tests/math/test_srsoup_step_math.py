"""SRSoup step maths: the ancestral split, z-scores, the shell step and the soup noise correction."""

from __future__ import annotations

import math

import pytest
import torch

from multireward.sampling_math.ancestral import (
    ancestral_step,
    kdiffusion_step,
    rectified_flow_step,
    sigma_down_up,
)
from multireward.sampling_math.search_gradient import (
    correction_divisor,
    search_direction,
    shell_step,
    soup_noises,
    zscores,
)

SIGMA_PAIRS = [(14.6, 10.2), (2.0, 1.0), (1.0, 0.5), (0.3, 0.05)]
FLOW_PAIRS = [(1.0, 0.95), (0.9, 0.5), (0.5, 0.25), (0.1, 0.02)]

# --- ancestral split -----------------------------------------------------------------------------


def test_kdiffusion_split_at_known_values():
    # get_ancestral_step(2, 1): sigma_up = sqrt(1 * (4 - 1) / 4), sigma_down = sqrt(1 - 3/4).
    sigma_down, sigma_up = sigma_down_up(2.0, 1.0)
    assert sigma_up == pytest.approx(math.sqrt(3) / 2, abs=1e-15)
    assert sigma_down == pytest.approx(0.5, abs=1e-15)
    step = kdiffusion_step(2.0, 1.0)
    # Euler ancestral: denoised + sigma_down * (x - denoised) / sigma
    assert (step.x_coeff, step.denoised_coeff) == pytest.approx((0.25, 0.75), abs=1e-15)
    assert step.noise_scale == pytest.approx(math.sqrt(3) / 2, abs=1e-15)


@pytest.mark.parametrize(("sigma", "sigma_next"), SIGMA_PAIRS)
def test_kdiffusion_split_equals_comfy_formula_and_keeps_the_noise_level(sigma, sigma_next):
    # ComfyUI/k-diffusion get_ancestral_step with eta = 1, written out independently.
    up = min(sigma_next, (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    down = (sigma_next**2 - up**2) ** 0.5
    assert sigma_down_up(sigma, sigma_next) == pytest.approx((down, up), rel=1e-12)
    step = ancestral_step(
        torch.tensor(sigma, dtype=torch.float64), torch.tensor(sigma_next, dtype=torch.float64), flow=False
    )
    # With an exact denoiser and x = x0 + sigma eps the candidates are x0 + sigma_next * (noise):
    # x0 keeps coefficient 1, and the old and new noise add up to variance sigma_next^2.
    assert step.x_coeff + step.denoised_coeff == pytest.approx(1.0, abs=1e-12)
    assert (step.x_coeff * sigma) ** 2 + step.noise_scale**2 == pytest.approx(sigma_next**2, rel=1e-12)


def test_eta_zero_and_last_step_have_no_noise():
    assert sigma_down_up(2.0, 1.0, eta=0.0) == (1.0, 0.0)
    for flow in (False, True):
        last = ancestral_step(0.3, 0.0, flow)
        assert not last.has_noise
        x, denoised = torch.randn(5), torch.randn(5)
        assert torch.equal(last.mean(x, denoised), denoised)


def test_rectified_flow_split_at_known_values():
    # sigma 1 -> 0.5: sigma_down = 0.5 * (1 + (0.5 - 1)) = 0.25, alpha_next / alpha_down = 0.5 / 0.75,
    # renoise = sqrt(0.25 - 0.25^2 * 0.5^2 / 0.75^2) = sqrt(2) / 3.
    step = rectified_flow_step(1.0, 0.5)
    assert step.x_coeff == pytest.approx((2 / 3) * 0.25, abs=1e-15)
    assert step.denoised_coeff == pytest.approx((2 / 3) * 0.75, abs=1e-15)
    assert step.noise_scale == pytest.approx(math.sqrt(2) / 3, abs=1e-15)


@pytest.mark.parametrize(("sigma", "sigma_next"), FLOW_PAIRS)
def test_rectified_flow_split_lands_on_the_flow_marginal(sigma, sigma_next):
    # x = (1 - sigma) x0 + sigma eps with exact denoised = x0: the candidate must be
    # (1 - sigma_next) x0 + (noise of variance sigma_next^2), as ComfyUI's euler_ancestral_RF does.
    step = ancestral_step(sigma, sigma_next, flow=True)
    assert step.x_coeff * (1 - sigma) + step.denoised_coeff == pytest.approx(1 - sigma_next, rel=1e-12)
    assert (step.x_coeff * sigma) ** 2 + step.noise_scale**2 == pytest.approx(sigma_next**2, rel=1e-12)
    assert step.has_noise


# --- z-scores and search direction -------------------------------------------------------------


def test_zscores_use_the_population_std():
    scores = zscores(torch.tensor([1.0, 2.0, 3.0]))
    population = math.sqrt(2 / 3)  # the unbiased std would be 1 and give +-1
    expected = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) / (population + 1e-8)
    assert scores.dtype == torch.float64
    assert torch.allclose(scores, expected, rtol=0, atol=1e-14)


def test_zscores_of_equal_rewards_are_exact_zeros_per_row():
    rewards = torch.tensor([[4.0, 4.0, 4.0, 4.0], [1e6, 1e6, 1e6, 1e6], [0.0, 1.0, 0.0, 1.0]])
    scores = zscores(rewards)
    assert torch.equal(scores[:2], torch.zeros(2, 4, dtype=torch.float64))
    assert torch.allclose(scores[2], torch.tensor([-1.0, 1.0, -1.0, 1.0], dtype=torch.float64), atol=1e-7)


@pytest.mark.parametrize("scale", [1e-12, 1e-9, 1e-7, 1.0, 1e6])
def test_zscores_do_not_depend_on_the_rewards_scale_being_above_one(scale):
    """Rewards s (0, 1, 2, 3) have population std s sqrt(1.25): z = s (r - 1.5) / (s sqrt(1.25) + 1e-8)
    at every scale s, never the zeros of "all equal"; truly equal tiny rewards still give zeros."""
    ramp = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    expected = scale * (ramp - 1.5) / (scale * math.sqrt(1.25) + 1e-8)
    scores = zscores(scale * ramp)
    assert torch.allclose(scores, expected, rtol=1e-12, atol=0)
    assert scores.abs().min() > 0
    noises = torch.eye(4, dtype=torch.float64).unsqueeze(1)  # [N, 1, 4]: each candidate its own axis
    direction = search_direction(scores, noises)
    assert torch.allclose(direction / direction.norm(), expected.view(1, 4) / expected.norm(), atol=1e-12)
    assert torch.equal(
        zscores(torch.full((4,), 3 * scale, dtype=torch.float64)), torch.zeros(4, dtype=torch.float64)
    )


def test_search_direction_is_the_score_weighted_sum_of_noises():
    noises = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]]])
    direction = search_direction(torch.tensor([2.0, -1.0, 0.5]), noises)
    assert torch.equal(direction, torch.tensor([[2.5, -1.5]]))


def test_search_direction_lives_on_the_noises_device():
    """Rewards score on the CPU while the noises live on the sampling device (a GPU): the direction
    follows the noises. The meta device stands in for a GPU here (shapes only, no data)."""
    noises = torch.zeros(3, 1, 2, dtype=torch.float16, device="meta")
    direction = search_direction(torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64), noises)
    assert direction.device.type == "meta" and direction.dtype == torch.float16
    assert direction.shape == (1, 2)


# --- shell step ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 8, 8), (1, 1, 300)])
def test_shell_step_keeps_the_noise_norm_of_a_gaussian_sample(shape):
    generator = torch.Generator().manual_seed(3)
    mean, direction = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator) * 7
    scale = 0.37
    x = shell_step(mean, scale, direction, fallback_noise=torch.zeros(shape))
    d = math.prod(shape)
    assert (x - mean).norm().item() == pytest.approx(scale * math.sqrt(d), rel=1e-6)
    cosine = torch.nn.functional.cosine_similarity((x - mean).flatten(), direction.flatten(), dim=0)
    assert cosine.item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("bad", [0.0, float("nan")])
def test_shell_step_falls_back_to_fresh_noise_on_a_zero_or_broken_direction(bad):
    mean, fresh = torch.randn(2, 3, 3), torch.randn(2, 3, 3)
    x = shell_step(mean, 0.5, torch.full((2, 3, 3), bad), fresh)
    assert torch.equal(x, mean + 0.5 * fresh)


# --- soup correction -----------------------------------------------------------------------------


def test_correction_divisors():
    assert correction_divisor("divided_by_s", 0.7, 3.0, flow=False) == 0.7
    assert correction_divisor("divided_by_s", 0.7, 0.4, flow=True) == 0.7
    assert correction_divisor("authors", 0.7, 3.0, flow=False) == pytest.approx(math.sqrt(10.0))
    assert correction_divisor("authors", 0.7, 0.4, flow=True) == 1.0
    assert correction_divisor("none", 0.7, 3.0, flow=False) is None
    with pytest.raises(ValueError, match=r"correction: unknown 'half'; allowed: divided_by_s, authors, none"):
        correction_divisor("half", 0.7, 3.0, flow=False)


def test_soup_noises_exact_small_case():
    noises = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # u = z + (mu^m - mu^l) / 2 = [[2, 0], [1, 1]], each rescaled to norm sqrt(2)
    seen = soup_noises(noises, torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]), divisor=2.0)
    assert torch.allclose(seen, torch.tensor([[math.sqrt(2), 0.0], [1.0, 1.0]]), atol=1e-7)


def test_soup_noises_see_the_same_candidates_from_the_other_chain():
    generator = torch.Generator().manual_seed(1)
    noises = torch.randn(5, 2, 4, 4, generator=generator)
    exemplar, chain = torch.randn(2, 4, 4, generator=generator), torch.randn(2, 4, 4, generator=generator)
    scale = 0.6
    seen = soup_noises(noises, exemplar, chain, divisor=scale)
    # Before the norm is restored: chain + s * u equals the exemplar's candidate exactly.
    raw = noises + (exemplar - chain) / scale
    assert torch.allclose(chain + scale * raw, exemplar + scale * noises, atol=1e-5)
    norms = seen.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full((5,), math.sqrt(32.0)), rtol=1e-6)
    assert torch.allclose(
        seen / norms.view(-1, 1, 1, 1), raw / raw.flatten(1).norm(dim=1).view(-1, 1, 1, 1), atol=1e-6
    )


def test_soup_noises_without_correction_are_the_exemplar_noises():
    noises = torch.randn(3, 2, 2)
    assert torch.equal(soup_noises(noises, torch.ones(2, 2), torch.zeros(2, 2), divisor=None), noises)


def test_soup_noises_of_equal_means_only_restore_the_norm():
    noises = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    seen = soup_noises(noises, torch.zeros(2), torch.zeros(2), divisor=0.1)
    assert torch.allclose(seen, torch.tensor([[0.6, 0.8], [0.0, 1.0]]) * math.sqrt(2), atol=1e-7)
