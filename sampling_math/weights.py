"""Weight vectors on the simplex: one row per chain (image), one column per reward."""

from __future__ import annotations

import itertools
import re

import torch


class WeightsError(ValueError):
    """A weights input that cannot be used; the message names the row and what is allowed."""


def simplex_grid(num_rewards: int, divisions: int) -> list[tuple[float, ...]]:
    """Every point of the simplex lattice with `divisions` steps per edge.

    Two rewards and 5 divisions give (1, 0), (0.8, 0.2), ..., (0, 1): the authors' L = 6 grid.
    """
    if num_rewards < 1:
        raise WeightsError("rewards: at least one reward is needed")
    if divisions < 1:
        raise WeightsError(f"grid_divisions must be at least 1, got {divisions}")
    rows = []
    for parts in itertools.product(range(divisions + 1), repeat=num_rewards):
        if sum(parts) == divisions:
            rows.append(tuple(p / divisions for p in parts))
    return order_rows(rows)


def authors_three_reward_grid() -> list[tuple[float, ...]]:
    """The SRSoup authors' 13 weights for three rewards: 3 one-hot, the centre, 9 mixtures."""
    rows = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1 / 3, 1 / 3, 1 / 3)]
    for major, minor in ((0.8, 0.2), (0.6, 0.4)):
        for i, j in itertools.permutations(range(3), 2):
            if major == 0.8 or i < j:
                row = [0.0, 0.0, 0.0]
                row[i], row[j] = major, minor
                rows.append(tuple(row))
    return order_rows(rows)


ROW_SEPARATORS = re.compile(r"[;\n|]+")
VALUE_SEPARATORS = re.compile(r"[,\s]+")


def parse_weight_rows(text: str, num_rewards: int) -> list[tuple[float, ...]]:
    """Parse `1,0; 0.5,0.5; 0,1` (rows by ';' or new lines, values by ',' or spaces).

    Each row is checked and normalised to sum to one; the one-hot rows are not added here.
    """
    rows = []
    for index, chunk in enumerate(part for part in ROW_SEPARATORS.split(text) if part.strip()):
        values = [v for v in VALUE_SEPARATORS.split(chunk.strip()) if v]
        rows.append(validate_row(values, num_rewards, index + 1, chunk.strip()))
    if not rows:
        raise WeightsError(
            "weights: no weight rows given; write rows like '1,0; 0.5,0.5; 0,1' or leave it empty for a grid"
        )
    if len(rows) < num_rewards:
        raise WeightsError(
            f"weights: {len(rows)} weight row(s) for {num_rewards} rewards; give at least one row per reward "
            f"(rows are separated by ';' or new lines)"
        )
    return rows


def validate_row(values, num_rewards: int, row_number: int, shown: str) -> tuple[float, ...]:
    where = f"weights row {row_number} ('{shown}')"
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise WeightsError(f"{where}: every weight must be a number") from None
    if len(numbers) != num_rewards:
        raise WeightsError(f"{where}: has {len(numbers)} values but {num_rewards} rewards are connected")
    if any(not torch.isfinite(torch.tensor(n)) for n in numbers):
        raise WeightsError(f"{where}: weights must be finite numbers")
    if any(n < 0 for n in numbers):
        raise WeightsError(f"{where}: weights must not be negative")
    total = sum(numbers)
    if total <= 0:
        raise WeightsError(f"{where}: all weights are zero; at least one must be positive")
    return tuple(n / total for n in numbers)


def one_hot_rows(num_rewards: int) -> list[tuple[float, ...]]:
    return [tuple(1.0 if i == m else 0.0 for i in range(num_rewards)) for m in range(num_rewards)]


def with_one_hot_rows(rows: list[tuple[float, ...]], num_rewards: int) -> list[tuple[float, ...]]:
    """The one-hot rows are the exemplar chains of Sample Reward Soups: always present, once."""
    unique: list[tuple[float, ...]] = []
    for row in [*rows, *one_hot_rows(num_rewards)]:
        if not any(torch.allclose(torch.tensor(row), torch.tensor(seen), atol=1e-9) for seen in unique):
            unique.append(row)
    return order_rows(unique)


def order_rows(rows: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Rows ordered by weight: the first reward's weight falling, then the second's, ..."""
    return sorted(rows, key=lambda row: tuple(-w for w in row))


def exemplar_indices(rows: list[tuple[float, ...]] | torch.Tensor) -> list[int]:
    """For each reward m, the index of its one-hot row."""
    table = torch.as_tensor(rows, dtype=torch.float64)
    indices = []
    for m in range(table.shape[1]):
        matches = [i for i in range(table.shape[0]) if table[i, m] == 1.0 and table[i].sum() == 1.0]
        if not matches:
            raise WeightsError(f"weights: no one-hot row for reward {m + 1}")
        indices.append(matches[0])
    return indices


def resolve_weights(text: str, num_rewards: int, grid_divisions: int) -> torch.Tensor:
    """The weight table a sampler uses: parsed rows (or the grid when the text is empty), with the
    one-hot rows added, ordered by weight, as an [L, M] float64 tensor."""
    rows = parse_weight_rows(text, num_rewards) if text.strip() else simplex_grid(num_rewards, grid_divisions)
    return torch.tensor(with_one_hot_rows(rows, num_rewards), dtype=torch.float64)
