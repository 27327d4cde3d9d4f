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


def final_scoring_queries(settings: GuidanceSettings) -> int:
    """After guidance every final image is scored once by every reward: L M more queries."""
    return settings.chain_weights().shape[0] * settings.num_rewards


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
        **schedule_fields(settings, ledger.guided_steps),
        "chain_soup_steps": settings.chain_soup_steps(ledger.guided_steps),
        "correction": settings.correction,
        "seed": settings.seed,
        **ledger.as_dict(),
        "weighted_sum_queries": ws_queries,
        "weighted_sum_lookahead_passes": ws_passes,
        "query_saving": ws_queries / ledger.queries if ledger.queries else None,
        **judge_totals(settings, ledger),
        "pareto_indices": non_dominated(scores),
        "hypervolume": hypervolume(scores, reference),
        "reference_point": reference.tolist(),
        **extra,
    }


def judge_totals(settings: GuidanceSettings, ledger: QueryLedger) -> dict:
    """What every judge sees in all: its guidance queries plus one final score per image."""
    images = settings.chain_weights().shape[0]
    return {
        "final_scoring_queries": final_scoring_queries(settings),
        "total_queries": ledger.queries + final_scoring_queries(settings),
        "total_queries_per_reward": [queries + images for queries in ledger.queries_per_reward],
    }


def schedule_fields(settings: GuidanceSettings, guided_steps: int) -> dict:
    """The soup schedule as run: K for the fixed one (0 outside srsoup mode; a K set above the
    guided steps soups all of them; "soup_steps_set" is the K as set), the two fractions
    for the per-chain one; each chain's resulting K is in "chain_soup_steps"."""
    if settings.mode == "srsoup" and settings.soup_schedule == "per_chain":
        return {
            "soup_schedule": "per_chain",
            "soup_steps_K": None,
            "soup_steps_set": None,
            "soup_centre": settings.soup_centre,
            "soup_edge": settings.soup_edge,
        }
    srsoup = settings.mode == "srsoup"
    return {
        "soup_schedule": "fixed",
        "soup_steps_K": settings.fixed_soup_steps(guided_steps) if srsoup else 0,
        "soup_steps_set": settings.soup_steps if srsoup else 0,
        "soup_centre": None,
        "soup_edge": None,
    }
