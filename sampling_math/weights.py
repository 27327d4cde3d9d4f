"""Weight vectors on the simplex: one row per chain (image), one column per reward.

Everything here is linear in the number of rows and refuses more than MAX_WEIGHT_ROWS before any
row is read, so a pasted wall of numbers costs milliseconds. The loops take an optional `check`
(ComfyUI's interrupt, passed in by the node: the maths never imports ComfyUI), called once per row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch

#: The most weight rows (images, one chain each) one run may have. Above the largest grid the
#: node offers (4 rewards, 20 divisions: 1,771 rows).
MAX_WEIGHT_ROWS = 2048

#: Rows whose weights agree when rounded to this many decimals are the same row.
ROW_DECIMALS = 9

#: Called once per row in the long loops; raises to stop (ComfyUI's interrupt). None: never stops.
Check = Callable[[], None] | None


class WeightsError(ValueError):
    """A weights input that cannot be used; the message names the row and what is allowed."""


def too_many_rows(count: int) -> WeightsError:
    return WeightsError(
        f"weights: {count} weight rows; at most {MAX_WEIGHT_ROWS} rows (one image each) are allowed per run"
    )


def simplex_grid(num_rewards: int, divisions: int) -> list[tuple[float, ...]]:
    """Every point of the simplex lattice with `divisions` steps per edge.

    Two rewards and 5 divisions give (1, 0), (0.8, 0.2), ..., (0, 1): the authors' L = 6 grid.
    """
    if num_rewards < 1:
        raise WeightsError("rewards: at least one reward is needed")
    if divisions < 1:
        raise WeightsError(f"grid_divisions must be at least 1, got {divisions}")
    rows = [tuple(p / divisions for p in parts) for parts in compositions(divisions, num_rewards)]
    return order_rows(rows)


def compositions(total: int, slots: int):
    """Every tuple of `slots` non-negative integers summing to `total`, one by one (no filtering)."""
    if slots == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in compositions(total - first, slots - 1):
            yield (first, *rest)


ROW_SEPARATORS = re.compile(r"[;\n|]+")
VALUE_SEPARATORS = re.compile(r"[,\s]+")


def parse_weight_rows(text: str, num_rewards: int, check: Check = None) -> list[tuple[float, ...]]:
    """Parse `1,0; 0.5,0.5; 0,1` (rows by ';' or new lines, values by ',' or spaces).

    Each row is checked and normalised to sum to one; the one-hot rows are not added here, so any
    number of rows from one up to MAX_WEIGHT_ROWS is fine (a single '0.5,0.5' makes three images).
    """
    chunks = [part.strip() for part in ROW_SEPARATORS.split(text) if part.strip()]
    if len(chunks) > MAX_WEIGHT_ROWS:
        raise too_many_rows(len(chunks))
    if not chunks:
        raise WeightsError(
            "weights: no weight rows given; write rows like '1,0; 0.5,0.5; 0,1' or leave it empty for a grid"
        )
    rows = []
    for index, chunk in enumerate(chunks):
        if check is not None:
            check()
        values = [v for v in VALUE_SEPARATORS.split(chunk) if v]
        rows.append(validate_row(values, num_rewards, index + 1, chunk))
    return rows


def validate_row(values, num_rewards: int, row_number: int, shown: str) -> tuple[float, ...]:
    where = f"weights row {row_number} ('{shown}')"
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise WeightsError(f"{where}: every weight must be a number") from None
    if len(numbers) != num_rewards:
        raise WeightsError(f"{where}: has {len(numbers)} values but {num_rewards} rewards are connected")
    if any(not math.isfinite(n) for n in numbers):
        raise WeightsError(f"{where}: weights must be finite numbers")
    if any(n < 0 for n in numbers):
        raise WeightsError(f"{where}: weights must not be negative")
    total = sum(numbers)
    if total <= 0:
        raise WeightsError(f"{where}: all weights are zero; at least one must be positive")
    return tuple(n / total for n in numbers)


def one_hot_rows(num_rewards: int) -> list[tuple[float, ...]]:
    return [tuple(1.0 if i == m else 0.0 for i in range(num_rewards)) for m in range(num_rewards)]


def row_key(row: tuple[float, ...]) -> tuple[int, ...]:
    """The row rounded half up to ROW_DECIMALS decimals: rows with the same key are the same row
    (js/weights.js rowKey does the same float operations)."""
    scale = 10.0**ROW_DECIMALS
    return tuple(math.floor(w * scale + 0.5) for w in row)


def with_one_hot_rows(
    rows: list[tuple[float, ...]], num_rewards: int, check: Check = None
) -> list[tuple[float, ...]]:
    """The one-hot rows are the exemplar chains of Sample Reward Soups: always present, once, and
    exactly one-hot (they come first, so a typed row within rounding of one is dropped, not kept in
    its place). Other rows that agree to ROW_DECIMALS decimals are kept once."""
    unique: dict[tuple[int, ...], tuple[float, ...]] = {}
    for row in [*one_hot_rows(num_rewards), *rows]:
        if check is not None:
            check()
        unique.setdefault(row_key(row), row)
    if len(unique) > MAX_WEIGHT_ROWS:
        raise too_many_rows(len(unique))
    return order_rows(list(unique.values()))


def order_rows(rows: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Rows ordered by weight: the first reward's weight falling, then the second's, ..."""
    return sorted(rows, key=lambda row: tuple(-w for w in row))


def exemplar_indices(rows: list[tuple[float, ...]] | torch.Tensor) -> list[int]:
    """For each reward m, the index of its one-hot row."""
    table = torch.as_tensor(rows, dtype=torch.float64)
    one_hot = (table == 1.0) & (table.sum(dim=1, keepdim=True) == 1.0)  # [L, M]
    indices = []
    for m in range(table.shape[1]):
        matches = torch.nonzero(one_hot[:, m]).flatten()
        if len(matches) == 0:
            raise WeightsError(f"weights: no one-hot row for reward {m + 1}")
        indices.append(int(matches[0]))
    return indices


def resolve_weights(text: str, num_rewards: int, grid_divisions: int, check: Check = None) -> torch.Tensor:
    """The weight table a sampler uses: parsed rows (or the grid when the text is empty), with the
    one-hot rows added, ordered by weight, as an [L, M] float64 tensor."""
    if text.strip():
        rows = parse_weight_rows(text, num_rewards, check)
    else:
        rows = simplex_grid(num_rewards, grid_divisions)
    return torch.tensor(with_one_hot_rows(rows, num_rewards, check), dtype=torch.float64)
