"""The report of a guided run: weights, final scores, what it cost and what weighted sum would have
cost, and the hypervolume of its front against an explicit reference point."""

from __future__ import annotations

import torch

from .guidance import GuidanceSettings
from .ledger import QueryLedger, single_cost, srsoup_cost, weighted_sum_cost
from .pareto import default_reference, hypervolume, non_dominated


def planned_cost(settings: GuidanceSettings, guided_steps: int) -> tuple[int, int]:
    """(queries, look-ahead passes) the settings will spend: what the UI estimates before a run."""
    weights = settings.chain_weights()
    if settings.mode == "single":
        return single_cost(settings.num_rewards, settings.candidates, guided_steps)
    if settings.mode == "srsoup":
        return srsoup_cost(weights, settings.candidates, guided_steps, settings.soup_steps)
    return weighted_sum_cost(weights, settings.candidates, guided_steps)


def guided_report(
    settings: GuidanceSettings,
    ledger: QueryLedger,
    final_scores: torch.Tensor,
    reward_names: list[str],
    reference: torch.Tensor | None = None,
    **extra,
) -> dict:
    weights = settings.chain_weights()
    scores = torch.as_tensor(final_scores, dtype=torch.float64)
    reference = (
        default_reference(scores) if reference is None else torch.as_tensor(reference, dtype=torch.float64)
    )
    ws_queries, ws_passes = weighted_sum_cost(settings.weights, settings.candidates, ledger.guided_steps)
    return {
        "mode": settings.mode,
        "rewards": reward_names,
        "weights": weights.tolist(),
        "scores": scores.tolist(),
        "candidates_N": settings.candidates,
        "soup_steps_K": settings.soup_steps if settings.mode == "srsoup" else 0,
        "correction": settings.correction,
        "seed": settings.seed,
        **ledger.as_dict(),
        "weighted_sum_queries": ws_queries,
        "weighted_sum_lookahead_passes": ws_passes,
        "query_saving": ws_queries / ledger.queries if ledger.queries else None,
        "pareto_indices": non_dominated(scores),
        "hypervolume": hypervolume(scores, reference),
        "reference_point": reference.tolist(),
        **extra,
    }
