"""Scoring one image batch with several rewards: the table RewardScore shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .base import Reward


@dataclass
class ScoreTable:
    names: list[str]
    #: columns[r][i] is reward r's score of image i.
    columns: list[list[float]]

    def rows(self) -> list[list[float]]:
        return [list(row) for row in zip(*self.columns, strict=True)]

    def as_dict(self) -> dict:
        return {"rewards": self.names, "scores": self.rows()}

    def as_text(self) -> str:
        width = max(12, *(len(n) for n in self.names))
        header = "image  " + "  ".join(n.rjust(width) for n in self.names)
        lines = [header]
        for index, row in enumerate(self.rows()):
            lines.append(f"{index:>5}  " + "  ".join(f"{v:>{width}.4f}" for v in row))
        return "\n".join(lines)


def unique_names(rewards: Sequence[Reward]) -> list[str]:
    names, seen = [], {}
    for reward in rewards:
        count = seen.get(reward.label, 0)
        seen[reward.label] = count + 1
        names.append(reward.label if count == 0 else f"{reward.label}#{count + 1}")
    return names


def score_table(images: torch.Tensor, rewards: Sequence[Reward], prompt: str) -> ScoreTable:
    columns = [reward.score(images, prompt).tolist() for reward in rewards]
    return ScoreTable(unique_names(rewards), columns)
