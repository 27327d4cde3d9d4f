"""How many guided steps each chain of Sample Reward Soups spends in the soup (its K).

- fixed (the paper's): every chain soups for the first K guided steps, then queries on its own.
- per_chain (beyond the paper): each chain's K by where its weight row sits. Rows close to a
  one-hot (exemplar) row stay close to it and can soup longer; central rows drift furthest from
  the exemplars and stop soon. One rule, with K_centre and K_edge given as fractions of the guided
  steps T_g (so that they survive a change of step count):

      K_l = round(T_g * (centre + (edge - centre) * (1 - dist_l)))

  = round(K_centre + (K_edge - K_centre) (1 - dist_l)), rounded half up, where dist_l is the
  distance of row l to its nearest one-hot row, divided by that distance at the centroid of the
  simplex (0 at a one-hot row, 1 at the centroid; see `distance_to_one_hot`).

Either way the exemplar chains never soup (their K is 0): they query their own reward every guided
step, and a souping chain reuses their queries.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("fixed", "per_chain")


def distance_to_one_hot(weights: torch.Tensor) -> torch.Tensor:
    """[L] distance of each row to its nearest one-hot row, normalised to 1 at the centroid.

    ||w - e_m||^2 = ||w||^2 - 2 w_m + 1 is smallest for the largest weight w_m, and at the centroid
    (1/M, ..., 1/M) it is 1 - 1/M, so dist = sqrt((||w||^2 - 2 max_m w_m + 1) / (1 - 1/M)):
    - M = 2: row (a, 1 - a) has dist 2 min(a, 1 - a) = 1 - |w_1 - w_2|, linear in the weight:
      (0.8, 0.2) -> 0.4, (0.5, 0.5) -> 1.
    - M = 3: (0.8, 0.2, 0) -> 0.346, (0.6, 0.4, 0) -> 0.693, (0.5, 0.5, 0) -> 0.866,
      (1/3, 1/3, 1/3) -> 1.
    No point of the simplex is further from every one-hot row than the centroid, so dist <= 1.
    With one reward every row is the one-hot row: dist 0.
    """
    table = torch.as_tensor(weights, dtype=torch.float64)
    num_rewards = table.shape[1]
    if num_rewards == 1:
        return torch.zeros(table.shape[0], dtype=torch.float64)
    squared = table.square().sum(dim=1) - 2.0 * table.amax(dim=1) + 1.0
    return (squared.clamp_min(0.0) / (1.0 - 1.0 / num_rewards)).sqrt().clamp(0.0, 1.0)


def per_chain_soup_steps(weights: torch.Tensor, guided_steps: int, centre: float, edge: float) -> list[int]:
    """K_l of every row by the per-chain rule (one-hot rows included: they get K_edge)."""
    return [
        math.floor(guided_steps * (centre + (edge - centre) * (1.0 - dist)) + 0.5)
        for dist in distance_to_one_hot(weights).tolist()
    ]
