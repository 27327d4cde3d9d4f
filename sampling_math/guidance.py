"""Multi-reward guided sampling: weighted sum, Sample Reward Soups, and single-reward chains.

All L chains start from the same x_T and share one set of candidate noises z_1..z_N per step.
In Sample Reward Soups each chain soups for its first K guided steps (one K for all, or one per
chain: soup_schedule.py) and queries on its own after that; a step where some chains soup and others
query is one step.
The loop knows nothing of ComfyUI: it asks `denoise` for denoised predictions of a batch of
latents at a noise level, and `score` for rewards of look-ahead predictions; the adapter
implements both (CFG model, VAE decode, reward models, chunking, interrupt).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .ancestral import AncestralStep, ancestral_step
from .ledger import QueryLedger, StepCost
from .search_gradient import (
    CORRECTIONS,
    correction_divisor,
    search_direction,
    shell_step,
    soup_noises,
    zscores,
)
from .soup_schedule import SCHEDULES, per_chain_soup_steps
from .weights import exemplar_indices

MODES = ("srsoup", "weighted_sum", "single")

#: denoise(latents [B, ...], sigma) -> denoised [B, ...]
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
#: score(look-ahead denoised [B, ...], needed [B, M] bool) -> scores [B, M] (NaN where not needed)
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: callback(step index, chains [L, ...], denoised [L, ...])
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


class GuidanceError(ValueError):
    """Settings that cannot run; the message names the input and what is allowed."""


@dataclass(frozen=True)
class GuidanceSettings:
    weights: torch.Tensor  # [L, M] rows on the simplex, one-hot rows included
    mode: str = "srsoup"
    candidates: int = 30  # N: reward queries per chain per step
    # fixed schedule: every chain soups for the first K guided steps (a K above them: all of them)
    soup_steps: int = 20
    soup_schedule: str = "fixed"  # or "per_chain": K by where each chain's row sits
    # per_chain: K of a row at the centroid and of a row next to a one-hot row, as fractions of the
    # guided steps; (0.05, 0.8) is what bench_srsoup.py schedule found safe on every toy it could be
    soup_centre: float = 0.05
    soup_edge: float = 0.8
    guided_start: int = 0  # first guided step index
    guided_end: int | None = None  # one past the last guided step index (None: to the end)
    correction: str = "divided_by_s"
    seed: int = 0
    eta: float = 1.0

    @property
    def num_rewards(self) -> int:
        return self.weights.shape[1]

    def chain_weights(self) -> torch.Tensor:
        """The rows that become chains: single mode keeps only the one-hot (exemplar) rows."""
        if self.mode == "single":
            return self.weights[exemplar_indices(self.weights)]
        return self.weights

    def can_soup(self) -> bool:
        if self.mode != "srsoup":
            return False
        if self.soup_schedule == "fixed":
            return self.soup_steps > 0
        return self.soup_centre > 0 or self.soup_edge > 0

    def fixed_soup_steps(self, guided_steps: int) -> int:
        """The fixed schedule's K as run: a K above the guided steps soups all of them, as a
        guided_end past the last step guides to the end (so K = 20 still runs at 10 steps)."""
        return min(self.soup_steps, guided_steps)

    def chain_soup_steps(self, guided_steps: int) -> list[int]:
        """K of every chain (in chain_weights order): 0 for the exemplars, which never soup, and
        for every chain outside srsoup mode."""
        weights = self.chain_weights()
        if not self.can_soup():
            return [0] * weights.shape[0]
        if self.soup_schedule == "fixed":
            soup_steps = [self.fixed_soup_steps(guided_steps)] * weights.shape[0]
        else:
            soup_steps = per_chain_soup_steps(weights, guided_steps, self.soup_centre, self.soup_edge)
        for exemplar in exemplar_indices(weights):
            soup_steps[exemplar] = 0
        return soup_steps


def guided_step_indices(sigmas: torch.Tensor, settings: GuidanceSettings, flow: bool) -> list[int]:
    """Steps that are guided: inside the guided range and with noise left to guide."""
    last = len(sigmas) - 1
    end = last if settings.guided_end is None else min(settings.guided_end, last)
    return [
        i
        for i in range(max(settings.guided_start, 0), end)
        if ancestral_step(sigmas[i], sigmas[i + 1], flow, settings.eta).has_noise
    ]


def validate_settings(settings: GuidanceSettings, sigmas: torch.Tensor, flow: bool) -> list[int]:
    """Check settings before any model work; returns the guided step indices."""
    if settings.mode not in MODES:
        raise GuidanceError(f"mode: unknown '{settings.mode}'; allowed: {', '.join(MODES)}")
    if settings.correction not in CORRECTIONS:
        raise GuidanceError(f"correction: unknown '{settings.correction}'; allowed: {', '.join(CORRECTIONS)}")
    if settings.candidates < 2:
        raise GuidanceError(
            f"candidates (N) must be at least 2 to compare rewards, got {settings.candidates}"
        )
    if settings.weights.ndim != 2 or settings.weights.shape[0] < settings.num_rewards:
        raise GuidanceError("weights: need at least one weight row per reward")
    if settings.guided_end is not None and settings.guided_end <= settings.guided_start:
        raise GuidanceError(
            f"guided steps: end ({settings.guided_end}) must be after start ({settings.guided_start})"
        )
    if settings.soup_schedule not in SCHEDULES:
        raise GuidanceError(
            f"soup_schedule: unknown '{settings.soup_schedule}'; allowed: {', '.join(SCHEDULES)}"
        )
    for name in ("soup_centre", "soup_edge"):
        value = getattr(settings, name)
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise GuidanceError(f"{name} is {value}; give a fraction of the guided steps from 0 to 1")
    if settings.mode == "single" or settings.can_soup():
        try:  # soups and single chains need the one-hot (exemplar) rows; check before model work
            exemplar_indices(settings.weights)
        except ValueError as error:
            raise GuidanceError(str(error)) from None
    fixed = settings.mode == "srsoup" and settings.soup_schedule == "fixed"
    if fixed and settings.soup_steps < 0:
        raise GuidanceError(
            f"soup_steps (K) is {settings.soup_steps}; choose K of 0 or more "
            "(a K above the guided steps soups all of them)"
        )
    return guided_step_indices(sigmas, settings, flow)


def guided_sample(
    denoise: Denoiser,
    score: Scorer,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    settings: GuidanceSettings,
    flow: bool,
    callback: StepCallback | None = None,
) -> tuple[torch.Tensor, QueryLedger]:
    """Run the guided sampler from x (a batch of one latent, [1, ...]) over `sigmas`.

    Returns the final chains [L, ...] (one per chain weight row, in row order) and the ledger.
    """
    guided_indices = validate_settings(settings, sigmas, flow)
    soup_steps = settings.chain_soup_steps(len(guided_indices))
    guided = set(guided_indices)
    weights = settings.chain_weights().to(torch.float64)
    # Any latent rank (images [1, C, H, W], video [1, C, T, H, W]): every chain starts at x_T.
    chains = x[:1].expand(weights.shape[0], *x.shape[1:]).clone()
    noise = NoiseSource(settings.seed, chains.shape[1:], chains.dtype, chains.device)
    ledger = QueryLedger(settings.num_rewards, weights.shape[0])
    guided_so_far = 0
    for i in range(len(sigmas) - 1):
        step = ancestral_step(sigmas[i], sigmas[i + 1], flow, settings.eta)
        denoised = denoise(chains, step.sigma)
        means = step.mean(chains, denoised)
        fresh = noise.draw(1)[0]  # drawn every step so the stream never depends on the rewards
        if not step.has_noise:
            chains = means
        elif i not in guided:
            chains = means + step.noise_scale * fresh
        else:
            context = StepContext(
                denoise,
                score,
                step,
                means,
                weights,
                noises=noise.draw(settings.candidates),
                fresh=fresh,
                soup_divisor=correction_divisor(settings.correction, step.noise_scale, step.sigma_next, flow),
            )
            chains, cost = guided_step(context, souping=[guided_so_far < k for k in soup_steps])
            ledger.record(i, cost)
            guided_so_far += 1
        if callback is not None:
            callback(i, chains, denoised)
    return chains, ledger


class NoiseSource:
    """Gaussian noise from a generator seeded by the node's seed, drawn on the CPU so that the
    same seed gives the same images on every device."""

    def __init__(self, seed: int, shape: torch.Size, dtype: torch.dtype, device: torch.device):
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.shape, self.dtype, self.device = tuple(shape), dtype, device

    def draw(self, count: int) -> torch.Tensor:
        sample = torch.randn((count, *self.shape), generator=self.generator, dtype=torch.float32)
        return sample.to(device=self.device, dtype=self.dtype)


@dataclass(frozen=True)
class StepContext:
    """What one guided step of all chains works with."""

    denoise: Denoiser
    score: Scorer
    step: AncestralStep
    means: torch.Tensor  # [L, ...] the chains' ancestral means: candidates are means + s z_n
    weights: torch.Tensor  # [L, M] one row per chain
    noises: torch.Tensor  # [N, ...] the candidate noises z_n, shared by all chains
    fresh: torch.Tensor  # the step's plain noise, for a chain whose rewards all tie
    soup_divisor: float | None  # what a soup divides the offset between chains by (None: no correction)

    def lookahead_scores(self, origins: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
        """Rewards of the candidates origins[c] + s z_n, judged on their look-ahead x0 at sigma_next.

        Returns [C, N, M]; needed is [C, M] (which rewards each origin's candidates need).
        """
        count, num = origins.shape[0], self.noises.shape[0]
        candidates = origins.unsqueeze(1) + self.step.noise_scale * self.noises.unsqueeze(0)
        lookahead = self.denoise(candidates.reshape(count * num, *origins.shape[1:]), self.step.sigma_next)
        mask = needed.unsqueeze(1).expand(count, num, needed.shape[1]).reshape(count * num, -1)
        return self.score(lookahead, mask).reshape(count, num, -1)


def guided_step(context: StepContext, souping: list[bool]) -> tuple[torch.Tensor, StepCost]:
    """One guided step of every chain.

    A chain that does not soup queries every reward it weighs on its own candidates (weighted sum;
    a one-hot chain needs only its own reward) and z-scores each reward. A souping chain queries
    nothing: it combines the exemplars' z-scored rewards with their noises corrected to its own mean
    (Sample Reward Soups). The exemplars never soup, so in a soup step they query their own reward,
    as in Algorithm 1, and one-hot chains are the same in every mode.
    """
    means, weights, noises = context.means, context.weights, context.noises
    querying = [chain for chain, soup in enumerate(souping) if not soup]
    needed = weights[querying] > 0
    rewards = context.lookahead_scores(means[querying], needed)  # [Q, N, M], in `querying` order
    own_rewards = dict(zip(querying, rewards, strict=True))
    zscored: dict[tuple[int, int], torch.Tensor] = {}  # an exemplar's z-scores serve every soup

    def own_zscores(chain: int, reward: int) -> torch.Tensor:
        if (chain, reward) not in zscored:
            zscored[chain, reward] = zscores(own_rewards[chain][:, reward])
        return zscored[chain, reward]

    exemplars = exemplar_indices(weights) if any(souping) else []
    chains = []
    for chain, row in enumerate(weights.tolist()):
        direction = torch.zeros_like(means[chain])
        for m, weight in enumerate(row):
            if weight <= 0:
                continue  # a reward of weight 0 is never queried nor used
            if souping[chain]:
                exemplar = exemplars[m]
                scores = own_zscores(exemplar, m)
                seen = soup_noises(noises, means[exemplar], means[chain], context.soup_divisor)
            else:
                scores, seen = own_zscores(chain, m), noises
            direction += weight * search_direction(scores, seen)
        chains.append(shell_step(means[chain], context.step.noise_scale, direction, context.fresh))
    num = noises.shape[0]
    support = (weights > 0).sum(dim=1).tolist()
    cost = StepCost(
        queries_per_reward=needed.sum(dim=0).mul(num).tolist(),
        queries_per_chain=[0 if soup else num * s for soup, s in zip(souping, support, strict=True)],
        lookahead_passes=len(querying) * num,
        soup_chains=sum(souping),
    )
    return torch.stack(chains), cost
