"""A closed-form toy problem for guided sampling: Gaussian-mixture data with an exact denoiser.

Data: x0 ~ sum_k pi_k N(mu_k, tau^2 I) in d dimensions. Two noising forms, as ComfyUI has:

- k-diffusion (VE sigma space, what eps/v models become in ComfyUI): x = x0 + sigma * eps.
  Given component k, x ~ N(mu_k, (tau^2 + sigma^2) I) and
  E[x0 | x, k] = mu_k + tau^2 / (tau^2 + sigma^2) * (x - mu_k).
- rectified flow (ComfyUI's CONST sampling): x = (1 - sigma) x0 + sigma * eps.
  Given k, x ~ N((1 - sigma) mu_k, v I) with v = (1 - sigma)^2 tau^2 + sigma^2 and
  E[x0 | x, k] = mu_k + (1 - sigma) tau^2 / v * (x - (1 - sigma) mu_k).

The posterior over components is softmax_k(log pi_k - ||x - a mu_k||^2 / (2 v)) (a = 1 or 1 - sigma;
v is shared by all k so the normalisers cancel), and E[x0 | x] = sum_k p(k | x) E[x0 | x, k]:
exactly what a perfect model returns as `denoised`.

Rewards (higher is better) pull towards different targets so that they conflict:
- "quadratic": -||x0 - t_m||^2 / d (smooth);
- "bump": exp(-||x0 - t_m||^2 / (2 d w^2)) (smooth, bounded);
- "l1": -||x0 - t_m||_1 / d (not differentiable where a coordinate equals the target).

Every reduction runs over the last dimension only, so a latent's result never depends on which
other latents share its batch: the exemplar chains of SRSoup and weighted sum stay bit-identical.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from multireward.sampling_math.ancestral import ancestral_step
from multireward.sampling_math.guidance import GuidanceSettings, guided_sample
from multireward.sampling_math.ledger import QueryLedger

REWARD_KINDS = ("quadratic", "bump", "l1")
CHUNK = 64  # latents per denoiser or reward call: large batches of large d thrash the caches


@dataclass(frozen=True)
class GaussianMixture:
    means: torch.Tensor  # [C, d]
    log_weights: torch.Tensor  # [C], log pi_k
    tau: float  # std of every component

    @property
    def dim(self) -> int:
        return self.means.shape[1]


def make_mixture(dim: int, components: int = 4, tau: float = 0.5, spread: float = 1.0, seed: int = 0):
    """Components with means ~ N(0, spread^2 I) and equal weights: per-coordinate scale O(1) for any d."""
    generator = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(components, dim, generator=generator)
    log_weights = torch.full((components,), -math.log(components))
    return GaussianMixture(means, log_weights, tau)


def exact_denoiser(mixture: GaussianMixture, x: torch.Tensor, sigma: float, flow: bool) -> torch.Tensor:
    """E[x0 | x_sigma] for a batch x [B, ..., d] (any leading shape; the last B-dims are flattened)."""
    flat = x.reshape(x.shape[0], -1).to(mixture.means.dtype)
    signal = 1.0 - sigma if flow else 1.0  # x = signal * x0 + sigma * eps
    variance = signal**2 * mixture.tau**2 + sigma**2
    scaled = signal * mixture.means  # [C, d]
    # One component at a time (no [B, C, d] temporaries); every latent is still reduced on its own.
    distances = torch.stack([(flat - centre).square().sum(dim=-1) for centre in scaled], dim=1)  # [B, C]
    posterior = torch.softmax(mixture.log_weights - distances / (2.0 * variance), dim=-1)
    gain = signal * mixture.tau**2 / variance
    # E[x0 | x] = sum_k p_k (mu_k + gain (x - signal mu_k)) = gain x + sum_k p_k (1 - gain signal) mu_k,
    # summed in one fixed order for every batch size.
    denoised = gain * flat
    for k, mean in enumerate(mixture.means):
        denoised = denoised + posterior[:, k : k + 1] * ((1.0 - gain * signal) * mean)
    return denoised.reshape(x.shape).to(x.dtype)


def reward_values(kind: str, x0: torch.Tensor, target: torch.Tensor, width: float = 1.0) -> torch.Tensor:
    """One reward of a batch of clean latents [B, ..., d] -> [B]; see the module docstring."""
    flat = x0.reshape(x0.shape[0], -1)
    gap = flat - target.to(flat.dtype)
    dim = flat.shape[1]
    # Sums accumulate in float64 (the latents' own precision is enough for the terms).
    if kind == "quadratic":
        return -gap.square().sum(dim=-1, dtype=torch.float64) / dim
    if kind == "bump":
        return torch.exp(-gap.square().sum(dim=-1, dtype=torch.float64) / (2.0 * dim * width**2))
    if kind == "l1":
        return -gap.abs().sum(dim=-1, dtype=torch.float64) / dim
    raise ValueError(f"reward kind: unknown '{kind}'; allowed: {', '.join(REWARD_KINDS)}")


@dataclass
class ToyProblem:
    """Data, rewards and noising form of one toy setting."""

    mixture: GaussianMixture
    targets: torch.Tensor  # [M, d]
    kinds: tuple[str, ...]  # one reward kind per target
    flow: bool = False
    width: float = 1.0
    #: images scored per reward so far (what a counting reward would report)
    images_scored: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.images_scored:
            self.images_scored = [0] * len(self.kinds)

    @property
    def num_rewards(self) -> int:
        return len(self.kinds)

    @property
    def dim(self) -> int:
        return self.mixture.dim

    @property
    def device(self) -> torch.device:
        return self.mixture.means.device

    def to(self, device: str | torch.device) -> ToyProblem:
        """The same problem with its tensors on `device` (the benchmark runs big tables on a GPU)."""
        mixture = GaussianMixture(
            self.mixture.means.to(device), self.mixture.log_weights.to(device), self.mixture.tau
        )
        return ToyProblem(mixture, self.targets.to(device), self.kinds, self.flow, self.width)

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        # In cache-sized chunks: each latent is denoised on its own anyway, so chunks change no bit.
        parts = [exact_denoiser(self.mixture, part, float(sigma), self.flow) for part in x.split(CHUNK)]
        return torch.cat(parts)

    def rewards(self, x0: torch.Tensor) -> torch.Tensor:
        """All rewards of clean latents: [B, M] float64."""
        columns = [reward_values(k, x0, t, self.width) for k, t in zip(self.kinds, self.targets, strict=True)]
        return torch.stack(columns, dim=1)

    def score(self, lookahead: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
        """The Scorer of guided_sample: only needed (image, reward) pairs are computed and counted."""
        out = torch.full(
            (lookahead.shape[0], self.num_rewards), float("nan"), dtype=torch.float64, device=lookahead.device
        )
        for m, kind in enumerate(self.kinds):
            rows = torch.nonzero(needed[:, m]).flatten().to(lookahead.device)
            for part in rows.split(CHUNK):
                out[part, m] = reward_values(kind, lookahead[part], self.targets[m], self.width)
            self.images_scored[m] += len(rows)
        return out


def make_problem(
    dim: int,
    num_rewards: int = 2,
    kind: str | tuple[str, ...] = "quadratic",
    flow: bool = False,
    components: int = 1,
    targets: str = "random",
    tau: float = 1.0,
    seed: int = 0,
) -> ToyProblem:
    """One toy setting.

    targets="random": each reward pulls towards its own random point t_m ~ N(0, I), independent of
    the data, so the rewards trade off smoothly (with components=1 the data is one Gaussian).
    targets="modes": reward m pulls towards the mean of component m, so each reward favours a
    different mode of the mixture and guidance must pick modes early (a harder, multimodal case).
    """
    if targets not in ("random", "modes"):
        raise ValueError(f"targets: unknown '{targets}'; allowed: random, modes")
    if targets == "modes" and components < num_rewards:
        raise ValueError("targets='modes' needs at least one component per reward")
    mixture = make_mixture(dim, components, tau=tau, seed=seed)
    if targets == "modes":
        points = mixture.means[:num_rewards].clone()
    else:
        points = torch.randn(num_rewards, dim, generator=torch.Generator().manual_seed(seed + 7919))
    kinds = (kind,) * num_rewards if isinstance(kind, str) else tuple(kind)
    return ToyProblem(mixture, points, kinds, flow)


def sigma_schedule(steps: int, flow: bool, sigma_max: float = 20.0, sigma_min: float = 0.02) -> torch.Tensor:
    """steps + 1 decreasing sigmas ending in 0.

    k-diffusion: Karras et al.'s rho = 7 schedule from sigma_max to sigma_min (as ComfyUI's "karras").
    Rectified flow: evenly spaced from 1 (pure noise) to 0 (as ComfyUI's "simple" with shift 1).
    """
    if flow:
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    rho = 7.0
    ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (high + ramp * (low - high)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def initial_latent(problem: ToyProblem, sigmas: torch.Tensor, seed: int) -> torch.Tensor:
    """x_T [1, 1, 1, d]: sigma_max * eps (k-diffusion) or eps (flow, sigma = 1)."""
    generator = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(1, 1, 1, problem.dim, generator=generator).to(problem.device)
    return eps if problem.flow else float(sigmas[0]) * eps


@dataclass
class ToyRun:
    rewards: torch.Tensor  # [L, M] final reward vectors, in chain (weight row) order
    chains: torch.Tensor  # [L, 1, 1, d] final samples
    ledger: QueryLedger
    images_scored: list[int]  # per reward, counted by the scorer
    seconds: float


def run_toy(problem: ToyProblem, settings: GuidanceSettings, steps: int, seed: int) -> ToyRun:
    """Sample all chains of `settings` from the x_T of `seed` (candidate noise seeded by
    settings.seed) and score the final samples with every reward."""
    sigmas = sigma_schedule(steps, problem.flow)
    x = initial_latent(problem, sigmas, seed)
    problem.images_scored = [0] * problem.num_rewards
    start = time.perf_counter()
    chains, ledger = guided_sample(problem.denoise, problem.score, x, sigmas, settings, problem.flow)
    seconds = time.perf_counter() - start
    return ToyRun(problem.rewards(chains), chains, ledger, list(problem.images_scored), seconds)


def unguided_sample(problem: ToyProblem, steps: int, seed: int, noise_seed: int) -> torch.Tensor:
    """Plain ancestral sampling (eta = 1) from the same x_T as run_toy with `seed` (its step noise
    comes from its own generator), for "guided beats unguided from the same noise" comparisons."""
    sigmas = sigma_schedule(steps, problem.flow)
    x = initial_latent(problem, sigmas, seed)
    generator = torch.Generator().manual_seed(int(noise_seed))
    for i in range(steps):
        step = ancestral_step(sigmas[i], sigmas[i + 1], problem.flow)
        fresh = torch.randn(x.shape, generator=generator)
        x = step.mean(x, problem.denoise(x, step.sigma)) + step.noise_scale * fresh
    return x
