"""Which rewards exist, what each needs, and how to build one from the rewards model folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import Reward, RewardError
from .colorfulness import Colorfulness
from .jpeg import JpegCompressibility

DTYPES = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class RewardSpec:
    name: str
    description: str
    #: Builds the reward from a full weights path (None for weight-free rewards) and a dtype name.
    build: Callable[[str | None, str], Reward]
    needs_weights: bool = False
    needs_prompt: bool = False
    #: Suggested file name, shown in errors when no file was chosen.
    expected_file: str = ""


REWARDS: dict[str, RewardSpec] = {}


def register(spec: RewardSpec) -> None:
    REWARDS[spec.name] = spec


register(
    RewardSpec(
        name="jpeg_compressibility",
        description="-(JPEG kilobytes) at quality 95; no weights. Higher means a simpler image.",
        build=lambda path, dtype: JpegCompressibility(),
    )
)
register(
    RewardSpec(
        name="colorfulness",
        description="Hasler-Suesstrunk colourfulness; no weights. Conflicts with JPEG compressibility.",
        build=lambda path, dtype: Colorfulness(),
    )
)


def reward_names() -> list[str]:
    return list(REWARDS)


def get_spec(name: str) -> RewardSpec:
    try:
        return REWARDS[name]
    except KeyError:
        allowed = ", ".join(REWARDS)
        raise RewardError(f"reward_name: unknown reward '{name}'; allowed: {allowed}") from None
