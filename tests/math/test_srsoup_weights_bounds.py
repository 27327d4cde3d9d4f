"""The weights parser on the inputs that broke it (issue 10, item 6): a 100k-character string of
15,360 rows is refused by the row limit before any row is read; the largest grid the node offers
(4 rewards, 20 divisions: 1,771 rows) resolves; every loop asks the interrupt check once per row.
How the time grows with the rows (linear) is measured side by side in bench/bench_weights.py."""

from __future__ import annotations

import math

import pytest
import torch

from multireward.sampling_math.weights import (
    MAX_WEIGHT_ROWS,
    WeightsError,
    exemplar_indices,
    parse_weight_rows,
    resolve_weights,
)


class Interrupted(Exception):
    pass


class CountingCheck:
    """An interrupt check that counts its calls and raises once `stop_after` calls were made."""

    def __init__(self, stop_after: int | None = None):
        self.calls, self.stop_after = 0, stop_after

    def __call__(self) -> None:
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise Interrupted


def the_issues_long_text() -> str:
    """15,360 distinct two-reward rows in more than 100k characters."""
    text = "\n".join(f"{i},1" for i in range(15_360))  # rows (i, 1): all distinct
    assert len(text) >= 100_000
    return text


def test_the_issues_100k_character_text_is_refused_by_the_row_limit_before_any_row_is_read():
    text = "oops;" + the_issues_long_text()  # a bad first row: reading it would report that instead
    check = CountingCheck()
    with pytest.raises(WeightsError) as error:
        resolve_weights(text, 2, 5, check)
    assert str(error.value) == (
        f"weights: 15361 weight rows; at most {MAX_WEIGHT_ROWS} rows (one image each) are allowed per run"
    )
    assert check.calls == 0


def test_rows_up_to_the_limit_are_read_and_the_one_hot_rows_count_towards_it():
    rows = [f"{i + 1},{MAX_WEIGHT_ROWS - i}" for i in range(MAX_WEIGHT_ROWS)]  # no one-hot row among them
    check = CountingCheck()
    assert len(parse_weight_rows(";".join(rows), 2, check)) == MAX_WEIGHT_ROWS
    assert check.calls == MAX_WEIGHT_ROWS
    with pytest.raises(WeightsError, match=rf"weights: {MAX_WEIGHT_ROWS + 2} weight rows; at most"):
        resolve_weights(";".join(rows), 2, 5)
    assert resolve_weights(";".join(rows[2:]), 2, 5).shape == (MAX_WEIGHT_ROWS, 2)


def test_the_largest_grid_the_node_offers_resolves_asking_the_check_per_row():
    check = CountingCheck()
    table = resolve_weights("", 4, 20, check)
    assert table.shape == (math.comb(23, 3), 4) == (1771, 4)
    assert len({tuple(row) for row in table.tolist()}) == 1771
    assert exemplar_indices(table) == [0, 1770 - 230, 1770 - 20, 1770]  # ordered by weight
    assert check.calls >= 1771


@pytest.mark.parametrize("text", ["", ";".join(f"{i},1,2,3" for i in range(1, 1500))])
def test_a_raising_check_stops_the_parser(text):
    check = CountingCheck(stop_after=100)
    with pytest.raises(Interrupted):
        resolve_weights(text, 4, 20, check)
    assert check.calls == 101


def test_a_single_mixed_row_is_enough_the_one_hot_rows_are_added():
    assert parse_weight_rows("0.5,0.5", 2) == [(0.5, 0.5)]
    assert resolve_weights("0.5,0.5", 2, 5).tolist() == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert resolve_weights("1,1,1", 3, 5).shape == (4, 3)


def test_a_row_within_rounding_of_a_one_hot_row_leaves_the_exact_exemplar():
    table = resolve_weights("0.9999999999,1e-10; 0.5,0.5", 2, 5)
    assert table.tolist() == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert exemplar_indices(table) == [0, 2]


def test_rows_that_agree_to_nine_decimals_are_one_row():
    # 0.1 / 0.3 and 1 / 3 differ in the last bit; 1e-8 apart is another row
    assert resolve_weights("0.1,0.2; 1,2", 2, 5).shape == (3, 2)
    assert resolve_weights("1,2; 0.33333334,0.66666666", 2, 5).shape == (4, 2)
    table = resolve_weights("0.1,0.2; 1,2", 2, 5)
    assert table[1].tolist() == pytest.approx([1 / 3, 2 / 3], abs=1e-15)
    assert table.dtype == torch.float64
