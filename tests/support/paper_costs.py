"""The SRSoup paper's query counts per prompt, for comparison with the pack's exact ledger.

They assume every mixture row weighs every reward; the pack never queries a reward of weight 0,
so with sparse rows (the authors' own M = 3 grid) it counts fewer.
"""

from __future__ import annotations


def paper_weighted_sum_queries(candidates: int, guided_steps: int, num_rewards: int, num_weights: int) -> int:
    """Q_WS = N T_g M (L - M + 1) (the SRSoup paper)."""
    return candidates * guided_steps * num_rewards * (num_weights - num_rewards + 1)


def paper_srsoup_queries(
    candidates: int, guided_steps: int, num_rewards: int, num_weights: int, soup_steps: int
) -> int:
    """Q_SR = N M (K + (T_g - K)(L - M + 1)) (the SRSoup paper)."""
    return (
        candidates
        * num_rewards
        * (soup_steps + (guided_steps - soup_steps) * (num_weights - num_rewards + 1))
    )
