"""The closed-form toy and guided sampling on it: exact denoiser, rewards, the three guidance modes,
exact equalities between SRSoup and weighted sum, query counts, fronts and per-weight bias."""

from __future__ import annotations

import math

import pytest
import torch
from support import toy
from support.paper_metrics import per_weight_bias

from multireward.sampling_math.guidance import (
    GuidanceError,
    GuidanceSettings,
    guided_sample,
    guided_step_indices,
)
from multireward.sampling_math.ledger import weighted_sum_cost
from multireward.sampling_math.pareto import default_reference, hypervolume
from multireward.sampling_math.report import planned_cost
from multireward.sampling_math.weights import simplex_grid

FORMS = pytest.mark.parametrize("flow", [False, True], ids=["ve", "flow"])
GRID6 = torch.tensor(simplex_grid(2, 5), dtype=torch.float64)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small tensors: extra threads only add contention on a shared 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def settings(mode="srsoup", soup_steps=0, candidates=8, seed=0, weights=GRID6, **extra) -> GuidanceSettings:
    return GuidanceSettings(
        weights, mode=mode, candidates=candidates, soup_steps=soup_steps, seed=seed, **extra
    )


# --- the toy itself ------------------------------------------------------------------------------


def _log_density(mixture: toy.GaussianMixture, x: torch.Tensor, sigma: float, flow: bool) -> torch.Tensor:
    signal = 1.0 - sigma if flow else 1.0
    variance = signal**2 * mixture.tau**2 + sigma**2
    sq = (x.unsqueeze(0) - signal * mixture.means).square().sum(-1)
    return torch.logsumexp(mixture.log_weights - sq / (2 * variance), dim=0)


@FORMS
@pytest.mark.parametrize("sigma", [0.05, 0.4, 0.8])
def test_exact_denoiser_satisfies_tweedie(flow, sigma):
    """E[signal x0 | x] = x + sigma^2 grad log p(x), checked with autograd on the mixture density."""
    mixture = toy.make_mixture(5, components=3, tau=0.5, seed=2)
    mixture = toy.GaussianMixture(mixture.means.double(), mixture.log_weights.double(), mixture.tau)
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    (score,) = torch.autograd.grad(_log_density(mixture, x, sigma, flow), x)
    signal = 1.0 - sigma if flow else 1.0
    expected = (x.detach() + sigma**2 * score) / signal
    denoised = toy.exact_denoiser(mixture, x.detach().view(1, 5), sigma, flow)[0]
    assert torch.allclose(denoised, expected, atol=1e-10)


def test_denoiser_limits_and_batch_independence():
    mixture = toy.make_mixture(16, components=4, seed=1)
    x = torch.randn(7, 1, 1, 16)
    assert torch.allclose(toy.exact_denoiser(mixture, x, 1e-4, flow=False), x, atol=1e-3)
    # pure noise in flow form: the prior mean, whatever x is
    prior_mean = (mixture.log_weights.exp().unsqueeze(1) * mixture.means).sum(0)
    assert torch.allclose(
        toy.exact_denoiser(mixture, x, 1.0, flow=True)[:, 0, 0], prior_mean.expand(7, 16), atol=1e-6
    )
    # a latent's result never depends on its batch neighbours (SRSoup and weighted sum batch differently)
    full = toy.exact_denoiser(mixture, x, 0.7, flow=False)
    assert torch.equal(toy.exact_denoiser(mixture, x[2:3], 0.7, flow=False), full[2:3])


def test_rewards_by_hand():
    x = torch.tensor([[1.0, 3.0]])
    target = torch.tensor([0.0, 1.0])
    assert toy.reward_values("quadratic", x, target).item() == pytest.approx(-(1 + 4) / 2)
    assert toy.reward_values("l1", x, target).item() == pytest.approx(-(1 + 2) / 2)
    assert toy.reward_values("bump", x, target, width=0.5).item() == pytest.approx(
        math.exp(-5 / (2 * 2 * 0.25))
    )
    with pytest.raises(ValueError, match="reward kind: unknown 'cubic'"):
        toy.reward_values("cubic", x, target)


@FORMS
def test_sigma_schedule(flow):
    sigmas = toy.sigma_schedule(10, flow)
    assert len(sigmas) == 11 and sigmas[-1] == 0.0 and bool((sigmas[1:] < sigmas[:-1]).all())
    assert sigmas[0].item() == pytest.approx(1.0 if flow else 20.0)
    # every step but the last has noise to guide
    assert guided_step_indices(sigmas, settings(), flow) == list(range(9))


def test_sampler_reaches_the_data_distribution():
    """Unguided sampling with the exact denoiser gives samples at the data's scale (a sanity check
    that the ancestral split, schedule and denoiser fit together)."""
    problem = toy.make_problem(256, components=1, tau=1.0)
    for flow in (False, True):
        problem.flow = flow
        sample = toy.unguided_sample(problem, steps=30, seed=3, noise_seed=3)[0, 0, 0]
        spread = (sample - problem.mixture.means[0]).pow(2).mean().sqrt().item()
        assert spread == pytest.approx(1.0, abs=0.15)


# --- guided sampling on the toy ------------------------------------------------------------------


@FORMS
def test_guided_chains_beat_unguided_on_their_own_reward(flow):
    problem = toy.make_problem(64, flow=flow)
    for seed in range(3):
        run = toy.run_toy(problem, settings("single", candidates=16, seed=seed), steps=12, seed=seed)
        assert run.chains.shape[0] == 2  # single mode keeps only the one-hot chains
        plain = problem.rewards(toy.unguided_sample(problem, steps=12, seed=seed, noise_seed=seed))[0]
        assert run.rewards[0, 0] > plain[0] + 0.1 and run.rewards[1, 1] > plain[1] + 0.1


@FORMS
def test_srsoup_with_no_soup_steps_is_exactly_weighted_sum(flow):
    problem = toy.make_problem(64, flow=flow)
    soup = toy.run_toy(problem, settings("srsoup", soup_steps=0), steps=10, seed=1)
    plain = toy.run_toy(problem, settings("weighted_sum"), steps=10, seed=1)
    assert torch.equal(soup.chains, plain.chains)
    assert soup.ledger.as_dict() == plain.ledger.as_dict()


@FORMS
@pytest.mark.parametrize("soup_steps", [3, 9])
def test_one_hot_chains_are_identical_in_srsoup_and_weighted_sum(flow, soup_steps):
    problem = toy.make_problem(64, flow=flow)
    soup = toy.run_toy(problem, settings("srsoup", soup_steps=soup_steps), steps=10, seed=2)
    plain = toy.run_toy(problem, settings("weighted_sum"), steps=10, seed=2)
    single = toy.run_toy(problem, settings("single"), steps=10, seed=2)
    for index, one_hot in ((0, 0), (5, 1)):
        assert torch.equal(soup.chains[index], plain.chains[index])
        assert torch.equal(soup.chains[index], single.chains[one_hot])
    assert not torch.equal(soup.chains[2], plain.chains[2])  # the soups did change interior chains


def test_same_seed_same_output_different_seed_different():
    problem = toy.make_problem(32)
    first = toy.run_toy(problem, settings(soup_steps=4, seed=5), steps=8, seed=0)
    again = toy.run_toy(problem, settings(soup_steps=4, seed=5), steps=8, seed=0)
    other = toy.run_toy(problem, settings(soup_steps=4, seed=6), steps=8, seed=0)
    assert torch.equal(first.chains, again.chains)
    assert not torch.equal(first.chains[0], other.chains[0])


@FORMS
@pytest.mark.parametrize(("mode", "soup_steps"), [("weighted_sum", 0), ("srsoup", 4), ("srsoup", 9)])
def test_counted_queries_equal_the_formulas_and_what_the_rewards_saw(flow, mode, soup_steps):
    problem = toy.make_problem(16, flow=flow)
    run = toy.run_toy(problem, settings(mode, soup_steps=soup_steps, candidates=5), steps=10, seed=0)
    guided = 9  # the last of 10 steps has no noise and is never guided
    queries, passes = planned_cost(settings(mode, soup_steps=soup_steps, candidates=5), guided)
    assert (run.ledger.queries, run.ledger.lookahead_passes) == (queries, passes)
    assert run.ledger.queries == 5 * 2 * (
        soup_steps + (guided - soup_steps) * 5
    )  # N M (K + (T_g - K)(L - M + 1))
    assert passes == 5 * (soup_steps * 2 + (guided - soup_steps) * 6)  # N (K M + (T_g - K) L)
    assert run.images_scored == run.ledger.queries_per_reward
    assert sum(run.images_scored) == queries and run.ledger.guided_steps == guided


def test_guided_range_limits_the_queries():
    problem = toy.make_problem(16)
    run = toy.run_toy(
        problem, settings("weighted_sum", candidates=4, guided_start=2, guided_end=6), steps=10, seed=0
    )
    assert [step for step, *_ in run.ledger.steps] == [2, 3, 4, 5]
    assert run.ledger.queries == weighted_sum_cost(GRID6, 4, 4)[0] == sum(run.images_scored)


def _fronts(problem, soup_steps: list[int], seeds, steps=21, candidates=30):
    """Final reward vectors [S, L, M] of weighted sum and of SRSoup for each K, over paired seeds."""
    ws, sr = [], {k: [] for k in soup_steps}
    for seed in seeds:
        ws.append(
            toy.run_toy(
                problem, settings("weighted_sum", candidates=candidates, seed=seed), steps, seed
            ).rewards
        )
        for k in soup_steps:
            run = toy.run_toy(
                problem, settings("srsoup", soup_steps=k, candidates=candidates, seed=seed), steps, seed
            )
            sr[k].append(run.rewards)
    return torch.stack(ws), {k: torch.stack(v) for k, v in sr.items()}


def _hv_ratio_and_bias(ws, sr):
    reference = default_reference(torch.cat([ws, sr]).reshape(-1, ws.shape[-1]))
    ratio = sum(hypervolume(s, reference) for s in sr) / sum(hypervolume(w, reference) for w in ws)
    bias = per_weight_bias(sr.mean(0), ws.mean(0))
    return ratio, bias


@FORMS
def test_srsoup_front_close_to_weighted_sum_at_thirty_percent_soup_steps(flow):
    """d = 256, 20 guided steps, K = 6 (30%): the soups must keep the front and each weight's place."""
    problem = toy.make_problem(256, flow=flow)
    ws, sr = _fronts(problem, soup_steps=[6], seeds=range(3))
    ratio, bias = _hv_ratio_and_bias(ws, sr[6])
    assert ratio >= 0.95
    assert bias.max().item() <= 0.05
    assert bias[0] == 0 and bias[-1] == 0  # one-hot chains are the same in both methods
    # the front is a real trade-off: reward 1 falls and reward 2 rises along the weights
    mean = ws.mean(0)
    assert bool((mean[1:, 0] < mean[:-1, 0]).all()) and bool((mean[1:, 1] > mean[:-1, 1]).all())


def test_soups_for_all_steps_bias_the_front_more_than_for_a_few():
    problem = toy.make_problem(256)
    ws, sr = _fronts(problem, soup_steps=[4, 20], seeds=range(2))
    assert _hv_ratio_and_bias(ws, sr[20])[1].max() > 2 * _hv_ratio_and_bias(ws, sr[4])[1].max()


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"candidates": 1}, r"candidates \(N\) must be at least 2"),
        ({"soup_steps": -1}, r"soup_steps \(K\) is -1; choose K of 0 or more"),
        ({"mode": "greedy"}, r"mode: unknown 'greedy'; allowed: srsoup, weighted_sum, single"),
        ({"correction": "half"}, r"correction: unknown 'half'"),
        ({"guided_start": 5, "guided_end": 5}, r"guided steps: end \(5\) must be after start \(5\)"),
        ({"weights": torch.tensor([[1.0, 0.0]], dtype=torch.float64)}, r"at least one weight row per reward"),
        ({"soup_schedule": "by_luck"}, r"soup_schedule: unknown 'by_luck'; allowed: fixed, per_chain"),
        ({"soup_centre": 1.5}, r"soup_centre is 1.5; give a fraction of the guided steps from 0 to 1"),
        ({"soup_edge": float("nan")}, r"soup_edge is nan; give a fraction"),
        ({"soup_schedule": "per_chain", "weights": GRID6[1:]}, r"no one-hot row for reward 1"),
    ],
)
def test_bad_settings_fail_before_any_model_work(overrides, message):
    problem = toy.make_problem(8)
    calls = []

    def denoise(x, sigma):
        calls.append(sigma)
        return problem.denoise(x, sigma)

    fields = {"mode": "srsoup", "soup_steps": 0, "candidates": 4, "weights": GRID6, **overrides}
    sigmas = toy.sigma_schedule(10, flow=False)
    with pytest.raises(GuidanceError, match=message):
        guided_sample(
            denoise, problem.score, torch.zeros(1, 1, 1, 8), sigmas, GuidanceSettings(**fields), flow=False
        )
    assert calls == []


@pytest.mark.parametrize("mode", ["srsoup", "single"])
def test_missing_one_hot_rows_fail_before_any_model_work(mode):
    problem = toy.make_problem(8)
    calls = []

    def denoise(x, sigma):
        calls.append(sigma)
        return problem.denoise(x, sigma)

    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.3, 0.7]], dtype=torch.float64)
    sigmas = toy.sigma_schedule(10, flow=False)
    with pytest.raises(ValueError, match="no one-hot row for reward 2"):
        guided_sample(
            denoise, problem.score, torch.zeros(1, 1, 1, 8), sigmas, settings(mode, 2, weights=weights), False
        )
    assert calls == []
