"""Exact counts of what guidance costs: reward queries and look-ahead model passes.

A query is one image scored by one reward. A look-ahead pass is one candidate run through the
CFG model at the next noise level and decoded: a weighted-sum chain scores all of its rewards on
one look-ahead image, so passes and queries differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class QueryLedger:
    num_rewards: int
    #: One entry per guided step: (step index, queries per reward, look-ahead passes, soup step?)
    steps: list[tuple[int, list[int], int, bool]] = field(default_factory=list)

    def record(self, step: int, queries_per_reward: list[int], lookahead_passes: int, soup: bool) -> None:
        self.steps.append((step, list(queries_per_reward), int(lookahead_passes), soup))

    @property
    def queries_per_reward(self) -> list[int]:
        totals = [0] * self.num_rewards
        for _, queries, _, _ in self.steps:
            totals = [a + b for a, b in zip(totals, queries, strict=True)]
        return totals

    @property
    def queries(self) -> int:
        return sum(self.queries_per_reward)

    @property
    def lookahead_passes(self) -> int:
        return sum(passes for _, _, passes, _ in self.steps)

    @property
    def guided_steps(self) -> int:
        return len(self.steps)

    def as_dict(self) -> dict:
        return {
            "queries": self.queries,
            "queries_per_reward": self.queries_per_reward,
            "lookahead_passes": self.lookahead_passes,
            "guided_steps": self.guided_steps,
            "per_step": [
                {"step": step, "queries": queries, "lookahead_passes": passes, "soup": soup}
                for step, queries, passes, soup in self.steps
            ],
        }


def reward_support(weights: torch.Tensor) -> list[int]:
    """How many rewards each chain queries in a weighted-sum step (those with a positive weight)."""
    return [int((row > 0).sum()) for row in weights]


def weighted_sum_cost(weights: torch.Tensor, candidates: int, guided_steps: int) -> tuple[int, int]:
    """(queries, look-ahead passes) of weighted-sum guidance of every chain for every guided step.

    Equals the paper's N T_g M (L - M + 1) queries when every mixture row has full support.
    """
    per_step_queries = candidates * sum(reward_support(weights))
    return per_step_queries * guided_steps, candidates * weights.shape[0] * guided_steps


def srsoup_cost(
    weights: torch.Tensor, candidates: int, guided_steps: int, soup_steps: int
) -> tuple[int, int]:
    """(queries, look-ahead passes) of Sample Reward Soups: in each of the first K guided steps only
    the M exemplar chains query, each its own reward; weighted sum after that."""
    num_rewards = weights.shape[1]
    rest_queries, rest_passes = weighted_sum_cost(weights, candidates, guided_steps - soup_steps)
    soup = candidates * num_rewards * soup_steps
    return soup + rest_queries, soup + rest_passes


def single_cost(num_rewards: int, candidates: int, guided_steps: int) -> tuple[int, int]:
    """Each reward guides its own chain alone (Algorithm 1 per reward)."""
    cost = candidates * num_rewards * guided_steps
    return cost, cost
