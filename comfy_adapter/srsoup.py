"""SRSoup inside ComfyUI's sampling: the model, the VAE and the rewards behind the maths.

`sample_front` is the whole run of SRSoup KSampler, built on ComfyUI's own entry points as its
SamplerCustom node builds one (comfy.sample.sample_custom: the CFG guider, the latent's noise
mask, the noise of its batch index, previews, progress bar, devices). `SRSoupSampler` is the
SAMPLER it runs, which SamplerCustomAdvanced can also run with any guider.

ComfyUI calls a KSAMPLER's function with (model, x, sigmas, extra_args, callback, disable), where
`model(x_batch, sigma * ones)` is the CFG model returning denoised latents for any batch (the
guider tiles the conditioning to the batch, and composes a masked latent's kept region into every
prediction). This module wraps that model and the VAE + rewards into the `denoise` and `score`
functions sampling_math.guidance asks for, with batches chunked by free memory and interrupts
checked inside every loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from ..rewards.base import Reward
from ..rewards.scoring import unique_names
from ..sampling_math.guidance import GuidanceSettings, guided_sample
from ..sampling_math.ledger import QueryLedger
from ..sampling_math.report import guided_report
from .interrupt import check_interrupt

#: Upper bound on one model batch even when memory would allow more (keeps CPU runs responsive).
MAX_MODEL_BATCH = 64


def base_model_of(sampler_model):
    """The BaseModel behind the KSamplerX0Inpaint -> guider wrapper ComfyUI gives a sampler."""
    return sampler_model.inner_model.inner_model


def is_flow_sampling(model_sampling) -> bool:
    """Flow-matching models (SD3, Flux, ...) use ComfyUI's CONST model sampling."""
    return isinstance(model_sampling, comfy.model_sampling.CONST)


def model_batch_size(base_model, latent_shape, device) -> int:
    """How many latents one CFG model call can take: free memory over the model's own estimate
    for one latent (times two for the positive and negative halves)."""
    try:
        per_latent = base_model.memory_required([2, *latent_shape]) * 1.5
        free = comfy.model_management.get_free_memory(device)
        return max(1, min(MAX_MODEL_BATCH, int(free // max(per_latent, 1))))
    except Exception:  # an estimate is only an optimisation; one at a time always works
        return 1


def make_denoiser(sampler_model, extra_args: dict):
    base_model = base_model_of(sampler_model)

    def denoise(latents: torch.Tensor, sigma: float) -> torch.Tensor:
        chunk = model_batch_size(base_model, latents.shape[1:], latents.device)
        outputs = []
        for start in range(0, latents.shape[0], chunk):
            check_interrupt()
            part = latents[start : start + chunk]
            sigmas = torch.full((part.shape[0],), float(sigma), device=part.device, dtype=part.dtype)
            outputs.append(sampler_model(part, sigmas, **extra_args))
        return torch.cat(outputs)

    return denoise


@dataclass
class RewardPanel:
    """The rewards that judge images, the VAE that makes images of latents, and the prompt."""

    rewards: list[Reward]
    vae: object
    prompt: str = ""

    @property
    def names(self) -> list[str]:
        return unique_names(self.rewards)

    def decode(self, base_model, latents: torch.Tensor) -> torch.Tensor:
        """Images [B, H, W, 3] of latents in the model's internal latent format."""
        check_interrupt()
        images = self.vae.decode(base_model.process_latent_out(latents.float()))
        return images.reshape(-1, *images.shape[-3:])  # video VAEs add a frame axis

    def score(self, images: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
        """[B, M] rewards; NaN where `needed` is False (those images are never shown to that reward)."""
        scores = torch.full(needed.shape, math.nan, dtype=torch.float64)
        for m, reward in enumerate(self.rewards):
            rows = torch.nonzero(needed[:, m].cpu()).flatten()
            if len(rows) > 0:
                check_interrupt()
                scores[rows, m] = reward.score(images[rows.to(images.device)], self.prompt).double()
        return scores

    def scorer(self, base_model):
        def score(lookahead: torch.Tensor, needed: torch.Tensor) -> torch.Tensor:
            wanted = needed.any(dim=1).cpu()
            scores = torch.full(needed.shape, math.nan, dtype=torch.float64)
            rows = torch.nonzero(wanted).flatten()
            images = self.decode(base_model, lookahead[rows.to(lookahead.device)])
            scores[rows] = self.score(images, needed[rows.to(needed.device)])
            return scores

        return score


@dataclass
class GuidedRun:
    """What one run of the guided sampler leaves behind for its report."""

    settings: GuidanceSettings
    ledger: QueryLedger
    final_scores: torch.Tensor  # [L, M]
    reward_names: list[str]
    images_seen: list[int]  # per reward, counted by the rewards themselves during guidance
    flow: bool
    seconds: float

    def report(self) -> dict:
        """The run's report (sampling_math.report), with what only the adapter knows."""
        return guided_report(
            self.settings,
            self.ledger,
            self.final_scores,
            self.reward_names,
            reward_images_seen=self.images_seen,
            flow_model=self.flow,
            seconds=round(self.seconds, 3),
        )


class SRSoupSampler(comfy.samplers.KSAMPLER):
    """A SAMPLER for SamplerCustomAdvanced (and our all-in-one node): guided sampling with rewards.

    It returns L latents from one input latent. The last run's ledger and scores are kept in
    `last_run` so a report node can read them.
    """

    def __init__(self, panel: RewardPanel, settings: GuidanceSettings):
        super().__init__(self._sample)
        self.panel = panel
        self.settings = settings
        self.last_run: GuidedRun | None = None

    def _sample(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        started = time.perf_counter()
        base_model = base_model_of(model)
        flow = is_flow_sampling(base_model.model_sampling)
        seen_before = [reward.images_seen for reward in self.panel.rewards]

        def on_step(index, chains, denoised):
            if callback is not None:
                callback(
                    {
                        "x": chains,
                        "i": index,
                        "sigma": sigmas[index],
                        "sigma_hat": sigmas[index],
                        "denoised": denoised,
                    }
                )

        chains, ledger = guided_sample(
            make_denoiser(model, extra_args or {}),
            self.panel.scorer(base_model),
            x[:1],
            sigmas,
            self.settings,
            flow,
            on_step,
        )
        images_seen = [
            r.images_seen - before for r, before in zip(self.panel.rewards, seen_before, strict=True)
        ]
        final_images = self.panel.decode(base_model, chains)
        final_scores = self.panel.score(
            final_images, torch.ones(chains.shape[0], len(self.panel.rewards), dtype=torch.bool)
        )
        self.last_run = GuidedRun(
            self.settings,
            ledger,
            final_scores,
            self.panel.names,
            images_seen,
            flow,
            time.perf_counter() - started,
        )
        return chains


#: Keys of a LATENT that say how to make an empty latent for the model (ComfyUI 0.33 and later).
DOWNSCALE_RATIOS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


def make_sampler(vae, rewards: list[Reward], prompt: str, settings: GuidanceSettings) -> SRSoupSampler:
    """The SRSoup SAMPLER: `rewards` judge the images `vae` decodes, against `prompt`."""
    return SRSoupSampler(RewardPanel(rewards, vae, prompt), settings)


def sample_front(
    model,
    positive,
    negative,
    latent: dict,
    vae,
    rewards: list[Reward],
    prompt: str,
    settings: GuidanceSettings,
    *,
    seed: int,
    steps: int,
    cfg: float,
    scheduler: str,
) -> tuple[dict, dict]:
    """One SRSoup run from a LATENT of one image: the LATENT of the L images and the run's report.

    As ComfyUI's SamplerCustom node samples with a SAMPLER: the scheduler's sigmas for the model,
    the empty-latent channel fix, the noise of the seed (and of the latent's batch index), the
    latent's noise mask, the preview callback and progress bar, and comfy.sample.sample_custom.
    """
    sampler = make_sampler(vae, rewards, prompt, settings)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
    ratios = {key: latent[key] for key in DOWNSCALE_RATIOS if key in latent}
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"], **ratios)
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, sigmas.shape[-1] - 1)
    chains = comfy.sample.sample_custom(
        model,
        noise,
        cfg,
        sampler,
        sigmas,
        positive,
        negative,
        samples,
        noise_mask=latent.get("noise_mask"),
        callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=seed,
    )
    out = {"samples": chains}
    if "noise_mask" in latent:  # every image keeps the mask, as a stock sampler's output does
        out["noise_mask"] = latent["noise_mask"]
    return out, sampler.last_run.report()
