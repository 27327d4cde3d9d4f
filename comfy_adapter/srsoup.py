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
import torch

from ..rewards.base import Reward
from ..rewards.scoring import unique_names
from ..sampling_math.guidance import GuidanceError, GuidanceSettings, guided_sample
from ..sampling_math.ledger import QueryLedger
from ..sampling_math.report import guided_report
from .blend_model import describe_blend
from .interrupt import check_interrupt
from .preview import GridPicture, LiveFront, progress_callback

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


def decoder_name(vae) -> str:
    """What a VAE is made of, for the report: its model class (AutoencoderKL, TAESD, ...)."""
    return type(getattr(vae, "first_stage_model", vae)).__name__


@dataclass
class RewardPanel:
    """The rewards that judge images, the VAE that makes images of latents, and the prompt.

    `lookahead_vae`, when given, decodes the look-ahead images the rewards guide by (a cheap
    decoder such as TAESD); the final images are always decoded by `vae`.
    """

    rewards: list[Reward]
    vae: object
    prompt: str = ""
    lookahead_vae: object | None = None

    @property
    def names(self) -> list[str]:
        return unique_names(self.rewards)

    @property
    def lookahead_decoder(self) -> str:
        if self.lookahead_vae is None:
            return f"vae ({decoder_name(self.vae)})"
        return f"lookahead_vae ({decoder_name(self.lookahead_vae)})"

    def check_lookahead_vae(self, base_model) -> None:
        """A look-ahead decoder for other latents than the model's is refused before any model pass."""
        decoder = getattr(self.lookahead_vae, "latent_channels", None)
        model = getattr(base_model.latent_format, "latent_channels", None)
        if decoder is not None and model is not None and decoder != model:
            raise GuidanceError(
                f"lookahead_vae: it decodes {decoder}-channel latents but this model makes {model}-channel "
                "latents; connect the decoder made for the model (taesd for SD1.5, taesdxl for SDXL, taesd3 "
                "for SD3, taef1 for Flux, from models/vae_approx) or leave it unconnected"
            )

    def decode(self, base_model, latents: torch.Tensor, vae=None) -> torch.Tensor:
        """Images [B, H, W, 3] of latents in the model's internal latent format (by `vae`, or the main VAE)."""
        check_interrupt()
        images = (self.vae if vae is None else vae).decode(base_model.process_latent_out(latents.float()))
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
            images = self.decode(base_model, lookahead[rows.to(lookahead.device)], self.lookahead_vae)
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
    lookahead_decoder: str = "vae"
    final_decoder: str = "vae"
    blended_model: dict | None = None

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
            lookahead_decoder=self.lookahead_decoder,
            final_decoder=self.final_decoder,
            blended_model=self.blended_model,
        )


class SRSoupSampler(comfy.samplers.KSAMPLER):
    """A SAMPLER for SamplerCustomAdvanced (and our all-in-one node): guided sampling with rewards.

    It returns L latents from one input latent. The last run's ledger and scores are kept in
    `last_run` so a report node can read them.
    """

    def __init__(
        self, panel: RewardPanel, settings: GuidanceSettings, grid_picture: GridPicture | None = None
    ):
        super().__init__(self._sample)
        self.panel = panel
        self.settings = settings
        self.grid_picture = grid_picture
        self.last_run: GuidedRun | None = None

    def _sample(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        started = time.perf_counter()
        base_model = base_model_of(model)
        flow = is_flow_sampling(base_model.model_sampling)
        self.panel.check_lookahead_vae(base_model)
        seen_before = [reward.images_seen for reward in self.panel.rewards]
        live = LiveFront.start(
            base_model, x.device, self.settings.chain_weights(), self.grid_picture, len(sigmas) - 1
        )

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
            if live is not None:
                live.show(index, denoised)

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
            lookahead_decoder=self.panel.lookahead_decoder,
            final_decoder=f"vae ({decoder_name(self.panel.vae)})",
            blended_model=describe_blend((extra_args or {}).get("model_options", {})),
        )
        return chains


#: Keys of a LATENT that say how to make an empty latent for the model (ComfyUI 0.33 and later).
DOWNSCALE_RATIOS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


def make_sampler(
    vae,
    rewards: list[Reward],
    prompt: str,
    settings: GuidanceSettings,
    *,
    lookahead_vae=None,
    grid_picture: GridPicture | None = None,
) -> SRSoupSampler:
    """The SRSoup SAMPLER: `rewards` judge the images `vae` decodes (the look-aheads by `lookahead_vae`
    when given), against `prompt`; with previews on, `grid_picture` draws the live grid of all chains."""
    return SRSoupSampler(RewardPanel(rewards, vae, prompt, lookahead_vae), settings, grid_picture)


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
    lookahead_vae=None,
    grid_picture: GridPicture | None = None,
) -> tuple[dict, dict]:
    """One SRSoup run from a LATENT of one image: the LATENT of the L images and the run's report.

    As ComfyUI's SamplerCustom node samples with a SAMPLER: the scheduler's sigmas for the model,
    the empty-latent channel fix, the noise of the seed (and of the latent's batch index), the
    latent's noise mask, the progress bar (the preview is the sampler's grid of all chains), and
    comfy.sample.sample_custom.
    """
    sampler = make_sampler(
        vae, rewards, prompt, settings, lookahead_vae=lookahead_vae, grid_picture=grid_picture
    )
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
    ratios = {key: latent[key] for key in DOWNSCALE_RATIOS if key in latent}
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"], **ratios)
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    callback = progress_callback(sigmas.shape[-1] - 1)
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
