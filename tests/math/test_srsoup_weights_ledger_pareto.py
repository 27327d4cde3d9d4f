"""Weight rows, the query ledger against the paper's formulas, Pareto filtering and hypervolume."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from support.paper_costs import paper_srsoup_queries, paper_weighted_sum_queries
from support.paper_metrics import authors_three_reward_grid, per_weight_bias

from multireward.sampling_math.guidance import GuidanceSettings
from multireward.sampling_math.ledger import QueryLedger, StepCost, weighted_sum_cost
from multireward.sampling_math.pareto import (
    default_reference,
    hypervolume,
    non_dominated,
)
from multireward.sampling_math.report import planned_cost
from multireward.sampling_math.weights import (
    WeightsError,
    exemplar_indices,
    parse_weight_rows,
    resolve_weights,
    simplex_grid,
    with_one_hot_rows,
)

# --- weights -------------------------------------------------------------------------------------


def test_two_reward_grid_with_five_divisions_is_the_authors_six_rows():
    rows = simplex_grid(2, 5)
    assert torch.allclose(
        torch.tensor(rows),
        torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0.0, 1.0]]),
    )
    assert len(simplex_grid(2, 10)) == 11
    assert len(simplex_grid(3, 2)) == 6 and len(simplex_grid(3, 4)) == 15


def test_grid_rejects_bad_sizes():
    with pytest.raises(WeightsError, match="grid_divisions must be at least 1, got 0"):
        simplex_grid(2, 0)
    with pytest.raises(WeightsError, match="at least one reward"):
        simplex_grid(0, 3)


def test_authors_three_reward_grid():
    rows = authors_three_reward_grid()
    assert len(rows) == 13 and len(set(rows)) == 13
    assert all(sum(row) == pytest.approx(1.0) for row in rows)
    for one_hot in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
        assert one_hot in rows
    assert (1 / 3, 1 / 3, 1 / 3) in rows
    assert sum(1 for row in rows if 0.8 in row) == 6  # every ordered pair of rewards
    assert {row for row in rows if 0.6 in row} == {(0.6, 0.4, 0.0), (0.6, 0.0, 0.4), (0.0, 0.6, 0.4)}
    assert exemplar_indices(rows) == [rows.index((1.0, 0.0, 0.0)), rows.index((0.0, 1.0, 0.0)), 12]
    assert rows[0] == (1.0, 0.0, 0.0) and rows[12] == (0.0, 0.0, 1.0)  # ordered by weight


def test_parse_rows_normalises_and_accepts_both_separators():
    assert parse_weight_rows("1,0; 0.5,0.5; 0,1", 2) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    assert parse_weight_rows("2 2\n1 0\n0 3", 2) == [(0.5, 0.5), (1.0, 0.0), (0.0, 1.0)]


@pytest.mark.parametrize(
    ("text", "rewards", "message"),
    [
        ("1,0,0; 0,1", 2, r"weights row 1 \('1,0,0'\): has 3 values but 2 rewards are connected"),
        ("1,0; -0.5,1.5", 2, r"weights row 2 \('-0.5,1.5'\): weights must not be negative"),
        ("1,0; 0,0; 0,1", 2, r"weights row 2 \('0,0'\): all weights are zero; at least one must be positive"),
        ("1,0; a,b", 2, r"weights row 2 \('a,b'\): every weight must be a number"),
        ("1,0; inf,1", 2, r"weights row 2 \('inf,1'\): weights must be finite numbers"),
        (" ; ;", 2, r"weights: no weight rows given"),
    ],
)
def test_parse_rows_names_the_row_and_the_rule(text, rewards, message):
    with pytest.raises(WeightsError, match=message):
        parse_weight_rows(text, rewards)


def test_one_hot_rows_are_added_once_and_rows_are_ordered():
    assert with_one_hot_rows([(0.5, 0.5)], 2) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    assert with_one_hot_rows([(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)], 2) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    rows = with_one_hot_rows([(0.2, 0.3, 0.5), (0.0, 1.0, 0.0)], 3)
    assert len(rows) == 4 and rows[0] == (1.0, 0.0, 0.0) and rows.count((0.0, 1.0, 0.0)) == 1


def test_exemplar_indices_need_every_one_hot_row():
    assert exemplar_indices(simplex_grid(2, 5)) == [0, 5]
    with pytest.raises(WeightsError, match="no one-hot row for reward 2"):
        exemplar_indices([(1.0, 0.0), (0.5, 0.5)])


def test_resolve_weights_uses_the_grid_for_empty_text():
    table = resolve_weights("", 2, 5)
    assert table.dtype == torch.float64 and table.shape == (6, 2)
    table = resolve_weights("0.25, 0.75; 1, 3", 2, 5)  # one missing one-hot row added, duplicates dropped
    assert table.tolist() == [[1.0, 0.0], [0.25, 0.75], [0.0, 1.0]]


# --- ledger --------------------------------------------------------------------------------------


def test_ledger_totals():
    ledger = QueryLedger(2, 3)
    ledger.record(3, StepCost([30, 30], [30, 0, 30], 60, soup_chains=1))
    ledger.record(4, StepCost([60, 60], [30, 60, 30], 90, soup_chains=0))
    assert ledger.queries_per_reward == [90, 90] and ledger.queries == 180
    assert ledger.queries_per_chain == [60, 60, 60]
    assert ledger.lookahead_passes == 150 and ledger.guided_steps == 2
    assert ledger.as_dict()["per_step"][0] == {
        "step": 3,
        "queries": [30, 30],
        "lookahead_passes": 60,
        "soup_chains": 1,
    }


def fixed_k_cost(weights, candidates, guided, soup_steps, mode="srsoup"):
    """What planned_cost says the fixed schedule with K = soup_steps will spend."""
    return planned_cost(GuidanceSettings(weights, mode, candidates, soup_steps), guided)


@pytest.mark.parametrize(
    ("divisions", "guided", "soup"), [(5, 50, 20), (10, 50, 25), (10, 50, 35), (10, 19, 0)]
)
def test_two_reward_costs_equal_the_paper_formulas(divisions, guided, soup):
    weights = torch.tensor(simplex_grid(2, divisions), dtype=torch.float64)
    rows, n = weights.shape[0], 30
    ws_queries, ws_passes = weighted_sum_cost(weights, n, guided)
    assert ws_queries == paper_weighted_sum_queries(n, guided, 2, rows) == n * guided * 2 * (rows - 1)
    assert ws_passes == n * guided * rows
    assert fixed_k_cost(weights, n, guided, 0, "weighted_sum") == (ws_queries, ws_passes)
    sr_queries, sr_passes = fixed_k_cost(weights, n, guided, soup)
    assert (
        sr_queries
        == paper_srsoup_queries(n, guided, 2, rows, soup)
        == n * 2 * (soup + (guided - soup) * (rows - 1))
    )
    assert sr_passes == n * (soup * 2 + (guided - soup) * rows)


def test_paper_examples_from_the_design_notes():
    assert paper_weighted_sum_queries(30, 50, 2, 6) == 15_000
    assert paper_srsoup_queries(30, 50, 2, 6, 20) == 10_200
    ratio = paper_weighted_sum_queries(30, 50, 2, 11) / paper_srsoup_queries(30, 50, 2, 11, 35)
    assert ratio == pytest.approx(2.70, abs=0.01)
    ratio = paper_weighted_sum_queries(30, 50, 3, 13) / paper_srsoup_queries(30, 50, 3, 13, 35)
    assert ratio == pytest.approx(2.75, abs=0.01)


def test_three_reward_full_support_grid_matches_the_paper_and_sparse_rows_cost_less():
    centre = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2]])
    assert weighted_sum_cost(centre, 30, 50)[0] == paper_weighted_sum_queries(30, 50, 3, 5)
    assert fixed_k_cost(centre, 30, 50, 20)[0] == paper_srsoup_queries(30, 50, 3, 5, 20)
    # The authors' 13 rows: 9 mixtures weigh only two rewards; a chain never queries a reward of
    # weight 0, so per step 3 + 3 + 9 * 2 = 24 rewards instead of the paper's M (L - M + 1) = 33.
    authors = torch.tensor(authors_three_reward_grid(), dtype=torch.float64)
    assert weighted_sum_cost(authors, 30, 50) == (30 * 50 * 24, 30 * 50 * 13)
    assert fixed_k_cost(authors, 30, 50, 35) == (30 * (35 * 3 + 15 * 24), 30 * (35 * 3 + 15 * 13))


def test_single_mode_costs_one_chain_per_reward():
    authors = torch.tensor(authors_three_reward_grid(), dtype=torch.float64)
    assert fixed_k_cost(authors, 30, 49, 20, "single") == (30 * 3 * 49, 30 * 3 * 49)


# --- Pareto front and hypervolume ----------------------------------------------------------------


def test_non_dominated_keeps_duplicates_and_drops_dominated():
    points = torch.tensor([[1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [3.0, 1.0], [2.0, 2.0], [0.5, 3.0]])
    assert non_dominated(points) == [0, 1, 3, 4]


def test_hypervolume_two_dimensions_by_hand():
    staircase = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(staircase, torch.zeros(2)) == pytest.approx(6.0)  # 1*3 + 1*2 + 1*1
    # dominated and out-of-reference points add nothing; translation changes nothing
    extra = torch.cat([staircase, torch.tensor([[1.0, 1.0], [-1.0, 5.0]])])
    assert hypervolume(extra, torch.zeros(2)) == pytest.approx(6.0)
    assert hypervolume(staircase - 10.0, torch.full((2,), -10.0)) == pytest.approx(6.0)
    assert hypervolume(staircase, torch.tensor([1.0, 1.0])) == pytest.approx(1.0)  # only [1,2]x[1,2] remains
    assert hypervolume(torch.empty(0, 2), torch.zeros(2)) == 0.0


def test_hypervolume_three_dimensions_by_hand():
    ref = torch.zeros(3)
    assert hypervolume(torch.tensor([[1.0, 2.0, 3.0]]), ref) == pytest.approx(6.0)
    two = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]])
    assert hypervolume(two, ref) == pytest.approx(3.0)  # 2 + 2 - overlap 1
    three = torch.cat([two, torch.tensor([[1.0, 1.0, 2.0]])])
    assert hypervolume(three, ref) == pytest.approx(4.0)  # 6 - 3 pairwise overlaps + 1 triple


def _grid_hypervolume(points: torch.Tensor, reference: torch.Tensor) -> float:
    """Independent exact volume: split space on every coordinate and count dominated cells."""
    axes = [sorted({float(reference[k]), *points[:, k].tolist()}) for k in range(points.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        upper = torch.tensor([axes[k][i + 1] for k, i in enumerate(cell)], dtype=torch.float64)
        if (points >= upper).all(dim=1).any():
            volume += math.prod(axes[k][i + 1] - axes[k][i] for k, i in enumerate(cell))
    return volume


@pytest.mark.parametrize(("dims", "count"), [(2, 9), (3, 7), (4, 5)])
def test_hypervolume_equals_cell_counting_on_random_fronts(dims, count):
    generator = torch.Generator().manual_seed(dims)
    points = torch.rand(count, dims, generator=generator, dtype=torch.float64)
    reference = torch.full((dims,), 0.05, dtype=torch.float64)
    inside = points[(points > reference).all(dim=1)]
    assert hypervolume(points, reference) == pytest.approx(_grid_hypervolume(inside, reference), rel=1e-12)


def test_default_reference_sits_below_every_point():
    points = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    assert default_reference(points).tolist() == pytest.approx(
        [0.8, 4.9]
    )  # range 2 -> 0.2; range 0 -> 1 * 0.1


def test_per_weight_bias_scales_by_the_baseline_range():
    baseline = torch.tensor([[0.0, 10.0], [1.0, 5.0], [2.0, 0.0]])  # ranges 2 and 10
    points = torch.tensor([[0.0, 10.0], [1.2, 5.0], [2.0, 1.0]])
    bias = per_weight_bias(points, baseline)
    assert bias.tolist() == pytest.approx([0.0, 0.1, 0.1])
