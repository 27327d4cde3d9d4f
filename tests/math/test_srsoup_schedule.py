"""The per-chain soup schedule: the distance rule, each chain's K, and sampling with it on the toy
(equal fractions are fixed K bit for bit; the ledger equals the closed-form count and what the
rewards themselves saw, for 2 and 3 rewards)."""

from __future__ import annotations

import math

import pytest
import torch
from support import toy
from support.paper_metrics import authors_three_reward_grid

from multireward.sampling_math.guidance import GuidanceSettings
from multireward.sampling_math.report import guided_report, planned_cost
from multireward.sampling_math.soup_schedule import distance_to_one_hot, per_chain_soup_steps
from multireward.sampling_math.weights import simplex_grid

FORMS = pytest.mark.parametrize("flow", [False, True], ids=["ve", "flow"])
GRID6 = torch.tensor(simplex_grid(2, 5), dtype=torch.float64)
GRID11 = torch.tensor(simplex_grid(2, 10), dtype=torch.float64)
AUTHORS = torch.tensor(authors_three_reward_grid(), dtype=torch.float64)
STEPS, GUIDED = 10, 9  # the last of 10 steps has no noise and is never guided


def per_chain(weights, centre, edge, candidates=5, seed=0, mode="srsoup") -> GuidanceSettings:
    return GuidanceSettings(
        weights, mode, candidates, soup_schedule="per_chain", soup_centre=centre, soup_edge=edge, seed=seed
    )


def fixed(weights, soup_steps, candidates=5, seed=0) -> GuidanceSettings:
    return GuidanceSettings(weights, "srsoup", candidates, soup_steps, seed=seed)


# --- the distance and the rule -------------------------------------------------------------------


def test_two_reward_distance_is_linear_in_the_weight():
    # (a, 1 - a): distance sqrt(2) min(a, 1 - a) to the nearest one-hot row, sqrt(2) / 2 at (0.5, 0.5)
    expected = [2 * min(a, 1 - a) for a in GRID11[:, 0].tolist()]
    assert distance_to_one_hot(GRID11).tolist() == pytest.approx(expected, abs=1e-12)
    assert distance_to_one_hot(GRID6).tolist() == pytest.approx([0, 0.4, 0.8, 0.8, 0.4, 0], abs=1e-12)


def test_three_reward_distances_by_hand():
    rows = torch.tensor(
        [[1, 0, 0], [0.8, 0.2, 0], [0.6, 0.4, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64
    )
    centroid = math.sqrt(2 / 3)  # ||(1/3, 1/3, 1/3) - (1, 0, 0)||
    expected = [0, math.sqrt(0.08) / centroid, math.sqrt(0.32) / centroid, math.sqrt(0.5) / centroid, 1]
    assert distance_to_one_hot(rows).tolist() == pytest.approx(expected, abs=1e-12)
    assert expected[1:4] == pytest.approx([0.3464, 0.6928, 0.8660], abs=1e-4)


@pytest.mark.parametrize(("rewards", "divisions"), [(3, 12), (4, 8)])
def test_no_row_is_further_from_the_one_hot_rows_than_the_centroid(rewards, divisions):
    grid = torch.tensor(simplex_grid(rewards, divisions), dtype=torch.float64)
    distance = distance_to_one_hot(grid)
    assert float(distance.min()) == 0.0 and float(distance.max()) <= 1.0
    centre = torch.full((1, rewards), 1 / rewards, dtype=torch.float64)
    assert float(distance_to_one_hot(centre)[0]) == pytest.approx(1.0, abs=1e-12)


def test_one_reward_rows_are_all_one_hot():
    assert distance_to_one_hot(torch.ones(2, 1, dtype=torch.float64)).tolist() == [0.0, 0.0]


def test_per_chain_rule_by_hand():
    # T_g = 49, K_centre = 20 (20/49 of the guided steps), K_edge = 49: K = 20 + 29 (1 - dist)
    steps = per_chain_soup_steps(GRID11, 49, 20 / 49, 1.0)
    assert steps == [49, 43, 37, 32, 26, 20, 26, 32, 37, 43, 49]  # 43.2, 37.4, 31.6, 25.8, 20
    # rounded half up: 10 * 0.25 = 2.5 -> 3; and K_centre above K_edge works too
    assert per_chain_soup_steps(GRID6, 10, 0.25, 0.25) == [3] * 6
    assert per_chain_soup_steps(GRID6, 10, 0.8, 0.2) == [2, 4, 7, 7, 4, 2]  # 4.4 and 6.8


def test_each_chains_soup_steps():
    assert fixed(GRID6, 4).chain_soup_steps(GUIDED) == [0, 4, 4, 4, 4, 0]  # exemplars never soup
    assert per_chain(GRID6, 0.0, 1.0).chain_soup_steps(GUIDED) == [0, 5, 2, 2, 5, 0]  # 5.4, 1.8
    assert per_chain(GRID6, 0.0, 1.0, mode="weighted_sum").chain_soup_steps(GUIDED) == [0] * 6
    assert per_chain(AUTHORS, 0.0, 1.0, mode="single").chain_soup_steps(GUIDED) == [0] * 3
    rows = AUTHORS.tolist()
    steps = per_chain(AUTHORS, 0.0, 1.0).chain_soup_steps(GUIDED)
    assert steps[rows.index([1 / 3, 1 / 3, 1 / 3])] == 0
    assert steps[rows.index([0.8, 0.2, 0.0])] == 6  # 9 (1 - 0.3464) = 5.88
    assert steps[rows.index([0.6, 0.0, 0.4])] == 3  # 9 (1 - 0.6928) = 2.76


# --- sampling with the schedule on the toy -------------------------------------------------------


def run(problem, settings, seed=1):
    return toy.run_toy(problem, settings, STEPS, seed)


@FORMS
@pytest.mark.parametrize("soup_steps", [0, 3, 9])
def test_equal_fractions_are_fixed_k_bit_for_bit(flow, soup_steps):
    problem = toy.make_problem(32, flow=flow)
    fraction = soup_steps / GUIDED
    schedule = run(problem, per_chain(GRID6, fraction, fraction))
    plain = run(problem, fixed(GRID6, soup_steps))
    assert torch.equal(schedule.chains, plain.chains)
    assert schedule.ledger.as_dict() == plain.ledger.as_dict()


@pytest.mark.parametrize(("weights", "rewards"), [(GRID6, 2), (AUTHORS, 3)])
def test_every_chain_follows_fixed_k_at_its_own_k(weights, rewards):
    """A mixed step (some chains soup, others query) does for each chain exactly what a fixed-K run
    with that chain's K does: chains never see each other except through the exemplars."""
    problem = toy.make_problem(32, rewards, components=4, targets="modes", tau=0.5)
    settings = per_chain(weights, 0.1, 0.9)
    schedule = run(problem, settings)
    soup_steps = settings.chain_soup_steps(GUIDED)
    assert len(set(soup_steps)) >= 3  # chains really differ
    for k in set(soup_steps):
        plain = run(problem, fixed(weights, k))
        for chain, chain_k in enumerate(soup_steps):
            if chain_k == k:
                assert torch.equal(schedule.chains[chain], plain.chains[chain])


def closed_form_counts(weights: torch.Tensor, soup_steps: list[int], candidates: int) -> tuple[list, int]:
    """Queries per reward and look-ahead passes, written out: exemplar m queries reward m in every
    guided step; an interior chain queries each reward it weighs in its last T_g - K_l steps."""
    interior = [(row, k) for row, k in zip(weights, soup_steps, strict=True) if not (row == 1).any()]
    per_reward = [
        candidates * (GUIDED + sum(GUIDED - k for row, k in interior if row[m] > 0))
        for m in range(weights.shape[1])
    ]
    passes = candidates * (weights.shape[1] * GUIDED + sum(GUIDED - k for _, k in interior))
    return per_reward, passes


@FORMS
@pytest.mark.parametrize(("weights", "rewards"), [(GRID11, 2), (AUTHORS, 3)], ids=["M2", "M3"])
@pytest.mark.parametrize(("centre", "edge"), [(0.2, 0.9), (0.0, 1.0), (0.6, 0.3)])
def test_ledger_equals_the_closed_form_and_what_the_rewards_saw(flow, weights, rewards, centre, edge):
    problem = toy.make_problem(16, rewards, flow=flow)
    settings = per_chain(weights, centre, edge)
    result = run(problem, settings)
    soup_steps = per_chain_soup_steps(weights, GUIDED, centre, edge)
    per_reward, passes = closed_form_counts(weights, soup_steps, 5)
    # the counting scorer of the toy: images each reward really scored
    assert result.images_scored == per_reward == result.ledger.queries_per_reward
    assert result.ledger.lookahead_passes == passes
    assert (result.ledger.queries, passes) == planned_cost(settings, GUIDED)
    if rewards == 2:  # every interior row weighs both rewards: N M (T_g + sum of (T_g - K_l))
        interior = soup_steps[1:-1]
        assert result.ledger.queries == 5 * 2 * (GUIDED + sum(GUIDED - k for k in interior))
    chain_k = settings.chain_soup_steps(GUIDED)
    support = (weights > 0).sum(dim=1).tolist()
    assert result.ledger.queries_per_chain == [
        5 * s * (GUIDED - k) for s, k in zip(support, chain_k, strict=True)
    ]


def test_report_names_the_schedule_and_each_chains_k_and_queries():
    problem = toy.make_problem(16)
    settings = per_chain(GRID6, 0.0, 1.0)
    result = run(problem, settings)
    report = guided_report(settings, result.ledger, result.rewards, ["a", "b"])
    assert report["soup_schedule"] == "per_chain" and report["soup_steps_K"] is None
    assert (report["soup_centre"], report["soup_edge"]) == (0.0, 1.0)
    assert report["chain_soup_steps"] == [0, 5, 2, 2, 5, 0]
    # each chain queries both rewards on its own candidates after its soup: 5 * 2 * (9 - K)
    assert report["queries_per_chain"] == [45, 40, 70, 70, 40, 45] == result.ledger.queries_per_chain
    assert sum(report["queries_per_chain"]) == report["queries"] == sum(result.images_scored)
    plain = guided_report(fixed(GRID6, 4), run(problem, fixed(GRID6, 4)).ledger, result.rewards, ["a", "b"])
    assert (plain["soup_schedule"], plain["soup_steps_K"], plain["soup_centre"]) == ("fixed", 4, None)
    assert plain["chain_soup_steps"] == [0, 4, 4, 4, 4, 0]


@FORMS
def test_a_fixed_k_above_the_guided_steps_is_all_of_them_bit_for_bit(flow):
    """K = 20 with 9 guided steps runs as K = 9 (as guided_end past the last step guides to the end)
    and the report keeps both: the K that ran and the K that was set."""
    problem = toy.make_problem(16, flow=flow)
    above, exact = run(problem, fixed(GRID6, 20)), run(problem, fixed(GRID6, GUIDED))
    assert torch.equal(above.chains, exact.chains)
    assert above.ledger.as_dict() == exact.ledger.as_dict()
    assert planned_cost(fixed(GRID6, 20), GUIDED) == planned_cost(fixed(GRID6, GUIDED), GUIDED)
    report = guided_report(fixed(GRID6, 20), above.ledger, above.rewards, ["a", "b"])
    assert (report["soup_steps_K"], report["soup_steps_set"]) == (GUIDED, 20)
    assert report["chain_soup_steps"] == [0, 9, 9, 9, 9, 0]


def test_the_report_states_what_every_judge_sees():
    """Guidance queries plus the final scoring: each of the L final images once by every reward."""
    problem = toy.make_problem(16, 3)
    settings = per_chain(AUTHORS, 0.2, 0.9)
    result = run(problem, settings)
    report = guided_report(settings, result.ledger, result.rewards, ["a", "b", "c"])
    images = AUTHORS.shape[0]
    assert report["final_scoring_queries"] == images * 3 == 39
    assert report["total_queries"] == sum(result.images_scored) + 39
    assert report["total_queries_per_reward"] == [seen + images for seen in result.images_scored]
