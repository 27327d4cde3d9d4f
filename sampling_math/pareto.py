"""Pareto fronts of final reward vectors (all rewards higher-is-better) and exact hypervolume."""

from __future__ import annotations

import torch


def dominates(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a >= b).all() and (a > b).any())


def non_dominated(points: torch.Tensor) -> list[int]:
    """Indices of the points no other point dominates (duplicates all kept)."""
    points = torch.as_tensor(points, dtype=torch.float64)
    return [
        i
        for i in range(len(points))
        if not any(dominates(points[j], points[i]) for j in range(len(points)) if j != i)
    ]


def hypervolume(points: torch.Tensor, reference: torch.Tensor) -> float:
    """Exact volume dominated by `points` and bounded below by `reference` (maximisation).

    Slices along the last objective (HSO): exact for any number of objectives, fast for the
    handfuls of points a Pareto front of images has.
    """
    points = torch.as_tensor(points, dtype=torch.float64).reshape(-1, len(reference))
    reference = torch.as_tensor(reference, dtype=torch.float64)
    inside = points[(points > reference).all(dim=1)]
    return _hypervolume(inside, reference)


def _hypervolume(points: torch.Tensor, reference: torch.Tensor) -> float:
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(points[:, 0].max() - reference[0])
    levels = torch.unique(points[:, -1]).flip(0).tolist()  # highest first
    volume = 0.0
    for k, level in enumerate(levels):
        lower = levels[k + 1] if k + 1 < len(levels) else float(reference[-1])
        slab = points[points[:, -1] >= level][:, :-1]
        volume += _hypervolume(slab, reference[:-1]) * (level - lower)
    return volume


def default_reference(points: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """The worst value of each reward minus `margin` of its range (of 1 where the range is 0), so
    that every point, the extremes included, adds volume."""
    points = torch.as_tensor(points, dtype=torch.float64)
    low, high = points.min(dim=0).values, points.max(dim=0).values
    spread = torch.where(high > low, high - low, torch.ones_like(high))
    return low - margin * spread
