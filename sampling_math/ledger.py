"""Exact counts of what guidance costs: reward queries and look-ahead model passes.

A query is one image scored by one reward. A look-ahead pass is one candidate run through the
CFG model at the next noise level and decoded: a weighted-sum chain scores all of its rewards on
one look-ahead image, so passes and queries differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class StepCost:
    """What one guided step spent."""

    queries_per_reward: list[int]
    #: Queries on each chain's own candidates: 0 for a chain that soups, N per weighed reward else.
    queries_per_chain: list[int]
    lookahead_passes: int
    soup_chains: int  # chains that reused the exemplars' queries (0: a weighted-sum step)


@dataclass
class QueryLedger:
    num_rewards: int
    num_chains: int
    #: One entry per guided step: (step index, what it spent)
    steps: list[tuple[int, StepCost]] = field(default_factory=list)

    def record(self, step: int, cost: StepCost) -> None:
        self.steps.append((step, cost))

    @property
    def queries_per_reward(self) -> list[int]:
        return self._totals(self.num_rewards, lambda cost: cost.queries_per_reward)

    @property
    def queries_per_chain(self) -> list[int]:
        return self._totals(self.num_chains, lambda cost: cost.queries_per_chain)

    def _totals(self, size: int, part) -> list[int]:
        totals = [0] * size
        for _, cost in self.steps:
            totals = [a + b for a, b in zip(totals, part(cost), strict=True)]
        return totals

    @property
    def queries(self) -> int:
        return sum(self.queries_per_reward)

    @property
    def lookahead_passes(self) -> int:
        return sum(cost.lookahead_passes for _, cost in self.steps)

    @property
    def guided_steps(self) -> int:
        return len(self.steps)

    def as_dict(self) -> dict:
        return {
            "queries": self.queries,
            "queries_per_reward": self.queries_per_reward,
            "queries_per_chain": self.queries_per_chain,
            "lookahead_passes": self.lookahead_passes,
            "guided_steps": self.guided_steps,
            "per_step": [
                {
                    "step": step,
                    "queries": cost.queries_per_reward,
                    "lookahead_passes": cost.lookahead_passes,
                    "soup_chains": cost.soup_chains,
                }
                for step, cost in self.steps
            ],
        }


def reward_support(weights: torch.Tensor) -> list[int]:
    """How many rewards each chain queries in a weighted-sum step (those with a positive weight)."""
    return [int((row > 0).sum()) for row in weights]


def guidance_cost(
    weights: torch.Tensor, candidates: int, guided_steps: int, soup_steps: list[int] | None = None
) -> tuple[int, int]:
    """(queries, look-ahead passes) when chain l soups for its first K_l guided steps (soup_steps;
    None: never, i.e. weighted sum) and then queries every reward it weighs on its own N candidates.

    The exemplars have K = 0: they query their own reward every step, souping chains reuse that.
    With full-support rows and M exemplars that is N M (T_g + sum over interior l of (T_g - K_l))
    queries, the paper's N M (K + (T_g - K)(L - M + 1)) for one K; rows that weigh a reward 0 never
    query it. Passes: N (M T_g + sum over interior l of (T_g - K_l)).
    """
    soup_steps = [0] * weights.shape[0] if soup_steps is None else soup_steps
    own_steps = [guided_steps - k for k in soup_steps]
    queries = sum(s * n for s, n in zip(reward_support(weights), own_steps, strict=True))
    return candidates * queries, candidates * sum(own_steps)


def weighted_sum_cost(weights: torch.Tensor, candidates: int, guided_steps: int) -> tuple[int, int]:
    """(queries, look-ahead passes) of weighted-sum guidance of every chain for every guided step:
    the paper's N T_g M (L - M + 1) queries when every mixture row has full support."""
    return guidance_cost(weights, candidates, guided_steps)
