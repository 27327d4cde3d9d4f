"""Measures and settings from the two papers that only tests and benchmarks use.

- per_weight_bias: how far each weight's rewards sit from weighted-sum guidance's (SRSoup bench).
- authors_three_reward_grid: the SRSoup authors' 13 weights for three rewards.
- extra_variance_per_step: the variance one DB-MPA-LS step adds over DB-MPA (Proposition 2).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from multireward.sampling_math.blend import normalise_onto_simplex
from multireward.sampling_math.weights import order_rows


def per_weight_bias(points: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Distance of each weight's reward vector from the baseline's (weighted sum's) for the same
    weight, with each reward scaled by the range of the baseline front."""
    points = torch.as_tensor(points, dtype=torch.float64)
    baseline = torch.as_tensor(baseline, dtype=torch.float64)
    spread = baseline.max(dim=0).values - baseline.min(dim=0).values
    spread = torch.where(spread > 0, spread, torch.ones_like(spread))
    return ((points - baseline) / spread).norm(dim=1)


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


def extra_variance_per_step(weights: Sequence[float], variant_means: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_i w_i ||mu_i - mu_bar||^2: the variance one LS step adds over DB-MPA (Proposition 2)."""
    probabilities = normalise_onto_simplex(weights)
    stacked = torch.stack([torch.as_tensor(m, dtype=torch.float64) for m in variant_means])
    w = torch.tensor(probabilities, dtype=torch.float64)
    mean = torch.einsum("i,i...->...", w, stacked)
    squared = ((stacked - mean) ** 2).flatten(1).sum(1)
    return (w * squared).sum()
