"""The report of a guided run: weights, final scores, what it cost and what weighted sum would have
cost, and the hypervolume of its front against an explicit reference point."""

from __future__ import annotations

import torch

from .guidance import GuidanceSettings
from .ledger import QueryLedger, guidance_cost, weighted_sum_cost
from .pareto import default_reference, hypervolume, non_dominated


def planned_cost(settings: GuidanceSettings, guided_steps: int) -> tuple[int, int]:
    """(queries, look-ahead passes) the settings will spend: what the UI estimates before a run."""
    soup_steps = settings.chain_soup_steps(guided_steps)
    return guidance_cost(settings.chain_weights(), settings.candidates, guided_steps, soup_steps)


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
        **schedule_fields(settings),
        "chain_soup_steps": settings.chain_soup_steps(ledger.guided_steps),
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


def schedule_fields(settings: GuidanceSettings) -> dict:
    """The soup schedule as set: K for the fixed one (0 outside srsoup mode), the two fractions for
    the per-chain one; each chain's resulting K is in "chain_soup_steps"."""
    if settings.mode == "srsoup" and settings.soup_schedule == "per_chain":
        return {
            "soup_schedule": "per_chain",
            "soup_steps_K": None,
            "soup_centre": settings.soup_centre,
            "soup_edge": settings.soup_edge,
        }
    soup_steps = settings.soup_steps if settings.mode == "srsoup" else 0
    return {"soup_schedule": "fixed", "soup_steps_K": soup_steps, "soup_centre": None, "soup_edge": None}
