"""Sample Reward Soups: the all-in-one SRSoupKSampler, a SAMPLER for SamplerCustomAdvanced, and
a report node for that SAMPLER."""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..comfy_adapter.sampling import scheduler_names
from ..comfy_adapter.srsoup import SRSoupSampler, make_sampler, sample_front
from ..plots.pareto_plot import labelled_grid
from ..sampling_math.guidance import MODES, GuidanceError, GuidanceSettings
from ..sampling_math.search_gradient import CORRECTIONS
from ..sampling_math.weights import resolve_weights
from .rewards import PROMPT_TOOLTIP, connected_rewards, reward_inputs

CATEGORY = "multireward/srsoup"

WEIGHTS_TOOLTIP = (
    "Weight rows, one per image: e.g. '1,0; 0.5,0.5; 0,1' (rows by ';' or new lines, one value per "
    "connected reward). Rows are normalised to sum to 1 and the one-hot rows (the exemplar chains) are "
    "added if missing. Leave empty to use the grid below."
)


VAE_TOOLTIP = "Decodes look-ahead predictions so the rewards can see them, and the final images."
LOOKAHEAD_VAE_TOOLTIP = (
    "Optional cheap decoder for the look-ahead images only (e.g. taesd for SD1.5, taesdxl, taesd3, taef1 "
    "from Load VAE, files in models/vae_approx): the look-aheads cost one decode each, so a tiny decoder "
    "makes guidance much faster; the final images and their scores still use vae. Rewards see the cheap "
    "decoder's images while guiding. The report says which decoder scored the look-aheads."
)


def lookahead_vae_input():
    return io.Vae.Input("lookahead_vae", optional=True, tooltip=LOOKAHEAD_VAE_TOOLTIP)


def front_picture(tiles, weights, columns: int):
    """The live preview: every chain's current image, captioned with its weight row."""
    labels = [" / ".join(f"{w:.2g}" for w in row) for row in weights.tolist()]
    return labelled_grid(tiles, labels, columns)


def guidance_inputs() -> list:
    """Inputs shared by the all-in-one node and the SAMPLER node."""
    return [
        *reward_inputs(
            "The first reward (from Reward Loader).",
            "A second reward: its trade-off with the first is the front.",
        ),
        io.String.Input("prompt", default="", multiline=True, tooltip=PROMPT_TOOLTIP),
        io.String.Input("weights", default="", multiline=True, tooltip=WEIGHTS_TOOLTIP),
        io.Int.Input(
            "grid_divisions",
            default=5,
            min=1,
            max=20,
            tooltip="With no weight rows: the simplex grid "
            "with this many steps per edge (2 rewards, 5 divisions: 0, 0.2, ..., 1: six images).",
        ),
        io.Combo.Input(
            "mode",
            options=list(MODES),
            default="srsoup",
            tooltip=(
                "srsoup: Sample Reward Soups (only the one-hot exemplar chains query rewards during the first K "
                "guided steps; the others reuse their rewards). weighted_sum: every chain queries every reward it "
                "weighs at every guided step (the baseline). single: only the one-hot chains, each guided by its "
                "own reward."
            ),
        ),
        io.Int.Input(
            "candidates",
            default=30,
            min=2,
            max=512,
            tooltip="N: candidates (reward queries) per chain "
            "per guided step. More gives a better search gradient and costs linearly.",
        ),
        io.Int.Input(
            "soup_steps",
            default=20,
            min=0,
            max=10000,
            tooltip="K: the first K guided steps use soups "
            "(srsoup mode). Up to about 40% of the guided steps costs almost nothing in quality.",
        ),
        io.Int.Input("guided_start", default=0, min=0, max=10000, tooltip="First step that is guided."),
        io.Int.Input(
            "guided_end",
            default=10000,
            min=1,
            max=10000,
            tooltip="Steps from here on are not guided (the last step has no noise and is never guided).",
        ),
        io.Combo.Input(
            "correction",
            options=list(CORRECTIONS),
            default="divided_by_s",
            tooltip=(
                "How a soup chain corrects the exemplars' noises by the offset of its mean: divided_by_s (scale-free, "
                "default), authors (the SRSoup code's VP-unit form), none (plain interpolation)."
            ),
        ),
        io.Int.Input(
            "guidance_seed",
            default=0,
            min=0,
            max=0xFFFFFFFFFFFFFFFF,
            control_after_generate=False,
            tooltip="Seed of the candidate noises: same inputs, same images.",
        ),
    ]


def guidance_request(options: dict) -> tuple[list, str, GuidanceSettings]:
    """(rewards, prompt, settings) of a node's guidance inputs (see guidance_inputs), checked up front."""
    rewards = connected_rewards(options)
    prompt = options.get("prompt") or ""
    for reward in rewards:
        if reward.needs_prompt and not prompt.strip():
            raise GuidanceError(
                f"prompt: reward '{reward.label}' scores against the prompt, but the prompt is empty"
            )
    settings = GuidanceSettings(
        weights=resolve_weights(options.get("weights") or "", len(rewards), options["grid_divisions"]),
        mode=options["mode"],
        candidates=options["candidates"],
        soup_steps=options["soup_steps"],
        guided_start=options["guided_start"],
        guided_end=options["guided_end"],
        correction=options["correction"],
        seed=options["guidance_seed"],
    )
    return rewards, prompt, settings


class SRSoupKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_SRSoupKSampler",
            display_name="SRSoup KSampler",
            category=CATEGORY,
            description="Sample Reward Soups: guides sampling with black-box rewards and makes a whole Pareto "
            "front of images, one per weight row, from one noise, spending far fewer reward queries than "
            "guiding each weight row on its own (weighted sum, also offered). Ancestral (eta = 1) steps.",
            # An output node so its report shows on the node even when only the latents are used.
            is_output_node=True,
            inputs=[
                io.Model.Input("model"),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input(
                    "latent_image",
                    tooltip="One latent (batch of 1): all images start from its noise. A noise mask (Set Latent "
                    "Noise Mask, VAE Encode for Inpainting) is honoured as KSampler honours it: only the masked "
                    "region is repainted, and the rewards judge the composed image.",
                ),
                io.Vae.Input("vae", tooltip=VAE_TOOLTIP),
                lookahead_vae_input(),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Seed of the starting noise and, unless set apart, of the candidates.",
                ),
                io.Int.Input("steps", default=50, min=1, max=10000),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Combo.Input("scheduler", options=scheduler_names(), default="normal"),
                *[i for i in guidance_inputs() if i.id != "guidance_seed"],
            ],
            outputs=[
                io.Latent.Output(
                    display_name="latents", tooltip="The L images, ordered by weight as in the report."
                ),
                io.String.Output(
                    display_name="report",
                    tooltip="JSON: weights, final scores, queries used and what "
                    "weighted sum would use, hypervolume and its reference point.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls, model, positive, negative, latent_image, vae, seed, steps, cfg, scheduler, **options
    ) -> io.NodeOutput:
        batch = latent_image["samples"].shape[0]
        if batch != 1:
            raise GuidanceError(
                f"latent_image: SRSoup makes all its images from one latent; got a batch of "
                f"{batch}. Use a batch of 1 (e.g. Latent From Batch)."
            )
        rewards, prompt, settings = guidance_request({**options, "guidance_seed": seed})
        latents, report = sample_front(
            model,
            positive,
            negative,
            latent_image,
            vae,
            rewards,
            prompt,
            settings,
            seed=seed,
            steps=steps,
            cfg=cfg,
            scheduler=scheduler,
            lookahead_vae=options.get("lookahead_vae"),
            grid_picture=front_picture,
        )
        return io.NodeOutput(latents, json.dumps(report), ui=run_ui(report))


class SRSoupSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_SRSoupSampler",
            display_name="SRSoup Sampler",
            category=CATEGORY,
            description="Sample Reward Soups as a SAMPLER for SamplerCustomAdvanced, so it composes with any "
            "guider (CFGGuider, Diffusion Blend, ...). Give it a latent batch of 1; it returns one latent per "
            "weight row. Connect it and the sampled LATENT to SRSoup Report for the numbers.",
            inputs=[
                io.Vae.Input("vae", tooltip=VAE_TOOLTIP),
                lookahead_vae_input(),
                *guidance_inputs(),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, vae, **options) -> io.NodeOutput:
        return io.NodeOutput(
            make_sampler(
                vae,
                *guidance_request(options),
                lookahead_vae=options.get("lookahead_vae"),
                grid_picture=front_picture,
            )
        )


class SRSoupReport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_SRSoupReport",
            display_name="SRSoup Report",
            category=CATEGORY,
            description="The report of the last run of an SRSoup Sampler (queries, scores, hypervolume).",
            is_output_node=True,
            inputs=[
                io.Sampler.Input("sampler"),
                io.Latent.Input(
                    "samples", tooltip="The sampler's output; connecting it runs this node after."
                ),
            ],
            outputs=[io.String.Output(display_name="report")],
        )

    @classmethod
    def execute(cls, sampler, samples) -> io.NodeOutput:
        if not isinstance(sampler, SRSoupSampler):
            raise GuidanceError("sampler: connect the SAMPLER of an SRSoup Sampler node")
        if sampler.last_run is None:
            raise GuidanceError(
                "sampler: this SRSoup sampler has not run yet; connect the sampled LATENT too"
            )
        report = sampler.last_run.report()
        return io.NodeOutput(json.dumps(report), ui=run_ui(report))

    @classmethod
    def fingerprint_inputs(cls, sampler, samples):
        return float("nan")  # the report changes with every run of the sampler


#: The numbers of a run the frontend shows (js/multireward.js SRSoupPanel.executed).
RUN_NUMBERS = (
    "queries",
    "weighted_sum_queries",
    "lookahead_passes",
    "weighted_sum_lookahead_passes",
    "guided_steps",
    "seconds",
)


def run_ui(report: dict) -> dict:
    """The node's ui output: the summary as text, and the run's numbers as data for the frontend."""
    numbers = {key: report[key] for key in RUN_NUMBERS}
    return {**ui.PreviewText(summary(report)).as_dict(), "multireward_run": (numbers,)}


def summary(report: dict) -> str:
    lines = [
        f"{report['mode']}: {len(report['weights'])} images, N = {report['candidates_N']}, K = {report['soup_steps_K']}",
        f"reward queries: {report['queries']} (weighted sum: {report['weighted_sum_queries']}"
        + (f", {report['query_saving']:.2f}x fewer)" if report["query_saving"] else ")"),
        f"look-ahead passes: {report['lookahead_passes']} (weighted sum: {report['weighted_sum_lookahead_passes']})",
        f"look-aheads decoded by {report['lookahead_decoder']}, final images by {report['final_decoder']}",
        *blend_lines(report),
        f"hypervolume: {report['hypervolume']:.4g} (reference {[round(v, 4) for v in report['reference_point']]})",
        f"time: {report['seconds']:.1f} s",
        "weights -> scores (" + ", ".join(report["rewards"]) + "):",
    ]
    for row, scores in zip(report["weights"], report["scores"], strict=True):
        lines.append(
            "  " + ", ".join(f"{w:.2f}" for w in row) + "  ->  " + ", ".join(f"{s:.4f}" for s in scores)
        )
    return "\n".join(lines)


def blend_lines(report: dict) -> list[str]:
    """What the model blended (a Diffusion Blend / KL Knob MODEL) and what SRSoup guided on top of it."""
    blend = report.get("blended_model")
    if not blend:
        return []
    if "draw_probabilities" in blend:
        how = f"one LoRA per step, drawn with probabilities {blend['draw_probabilities']} (base model last)"
    else:
        terms = " + ".join(
            f"{c:g} (D[{name}] - D_pre)"
            for name, c in zip(blend["loras"], blend["coefficients"], strict=True)
        )
        how = f"D = D_pre + {terms}"
    return [
        f"blended model ({blend['node']}): {how}",
        f"guided on top by SRSoup with: {', '.join(report['rewards'])}",
    ]


NODES = [SRSoupKSampler, SRSoupSamplerNode, SRSoupReport]
