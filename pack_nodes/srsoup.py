"""Sample Reward Soups: the all-in-one SRSoupKSampler, a SAMPLER for SamplerCustomAdvanced, and
a report node for that SAMPLER."""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..comfy_adapter.interrupt import check_interrupt
from ..comfy_adapter.sampling import scheduler_names
from ..comfy_adapter.srsoup import SRSoupSampler, make_sampler, sample_front
from ..plots.pareto_plot import labelled_grid
from ..sampling_math.guidance import MODES, GuidanceError, GuidanceSettings
from ..sampling_math.search_gradient import CORRECTIONS
from ..sampling_math.soup_schedule import SCHEDULES
from ..sampling_math.weights import MAX_WEIGHT_ROWS, resolve_weights
from .rewards import PROMPT_TOOLTIP, connected_rewards, reward_inputs

CATEGORY = "multireward/srsoup"

WEIGHTS_TOOLTIP = (
    "Weight rows, one per image: e.g. '1,0; 0.5,0.5; 0,1' (rows by ';' or new lines, one value per "
    "connected reward). Rows are normalised to sum to 1 and the one-hot rows (the exemplar chains) are "
    "added if missing, so a single row '0.5,0.5' makes three images. Rows that agree to 9 decimals are "
    f"kept once. At most {MAX_WEIGHT_ROWS} rows. Leave empty to use the grid below."
)

SCHEDULE_TOOLTIP = (
    "How long each chain soups (srsoup mode). per_chain: each chain's own K by where its weight row sits, "
    "from soup_centre (a row at the centre of the simplex) to soup_edge (a row next to a one-hot row), as "
    "fractions of the guided steps; the default (0.05, 0.8) stayed within 0.98x weighted sum's hypervolume "
    "and 0.05 bias on every benchmark toy where any schedule did, saving 1.4-1.5x queries. fixed: every "
    "chain soups the first soup_steps (K) guided steps, as in the paper; about 50% of the guided steps "
    "saves about 1.8x on smooth trade-offs, but keep it near 20% when rewards favour different kinds of image."
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
                "srsoup: Sample Reward Soups (while a chain soups, see soup_schedule, it queries nothing and "
                "reuses the rewards of the one-hot exemplar chains). weighted_sum: every chain queries every reward it "
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
            tooltip="K of the fixed soup_schedule: the first K guided steps use soups (srsoup mode). A K above "
            "the guided steps soups all of them (the estimate says so). About 20% of the guided steps kept "
            "the front on every benchmark toy; about 50% only on smooth trade-offs.",
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
        *schedule_inputs(),
    ]


def schedule_inputs() -> list:
    """The soup schedule. Optional, so they come after every other widget (saved workflows keep their
    widget values in place) and an API prompt written before them still runs: without them it runs
    the fixed schedule it was written for (guidance_request). A new node shows per_chain."""
    fraction = {"min": 0.0, "max": 1.0, "step": 0.05, "optional": True}
    return [
        io.Combo.Input(
            "soup_schedule",
            options=list(SCHEDULES),
            default="per_chain",
            optional=True,
            tooltip=SCHEDULE_TOOLTIP,
        ),
        io.Float.Input(
            "soup_centre",
            default=0.05,
            **fraction,
            tooltip="per_chain: K of a chain whose row sits at the centre of the simplex (equal weights), as a "
            "fraction of the guided steps. Central rows drift furthest from the exemplars: keep it small.",
        ),
        io.Float.Input(
            "soup_edge",
            default=0.8,
            **fraction,
            tooltip="per_chain: K of a chain whose row sits next to a one-hot row, as a fraction of the guided "
            "steps; rows in between get K in proportion to their distance from the nearest one-hot row.",
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
        weights=resolve_weights(
            options.get("weights") or "", len(rewards), options["grid_divisions"], check_interrupt
        ),
        mode=options["mode"],
        candidates=options["candidates"],
        soup_steps=options["soup_steps"],
        soup_schedule=options.get("soup_schedule", "fixed"),
        soup_centre=options.get("soup_centre", GuidanceSettings.soup_centre),
        soup_edge=options.get("soup_edge", GuidanceSettings.soup_edge),
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
    "total_queries",
)


def run_ui(report: dict) -> dict:
    """The node's ui output: the summary as text, and the run's numbers as data for the frontend."""
    numbers = {key: report[key] for key in RUN_NUMBERS}
    return {**ui.PreviewText(summary(report)).as_dict(), "multireward_run": (numbers,)}


def schedule_text(report: dict) -> str:
    """The soup schedule as it ran: the fixed K, or the per-chain fractions."""
    if report["soup_schedule"] == "per_chain":
        return f"per-chain soup schedule (centre {report['soup_centre']:g}, edge {report['soup_edge']:g})"
    text = f"K = {report['soup_steps_K']}"
    if report["soup_steps_set"] != report["soup_steps_K"]:
        text += f" (set to {report['soup_steps_set']}; there are only {report['guided_steps']} guided steps)"
    return text


def chain_notes(report: dict) -> list[str]:
    """Per image: its K and the queries on its own candidates, where chains differ (per-chain)."""
    if report["soup_schedule"] != "per_chain":
        return [""] * len(report["weights"])
    return [
        f"   (K = {k}, {queries} queries)"
        for k, queries in zip(report["chain_soup_steps"], report["queries_per_chain"], strict=True)
    ]


def summary(report: dict) -> str:
    lines = [
        f"{report['mode']}: {len(report['weights'])} images, N = {report['candidates_N']}, {schedule_text(report)}",
        f"reward queries: {report['queries']} (weighted sum: {report['weighted_sum_queries']}"
        + (f", {report['query_saving']:.2f}x fewer)" if report["query_saving"] else ")"),
        f"in all, with the final scoring: {report['total_queries']} queries (guidance {report['queries']} + "
        f"{report['final_scoring_queries']}: each image once by every reward); per judge: "
        + ", ".join(str(q) for q in report["total_queries_per_reward"]),
        f"look-ahead passes: {report['lookahead_passes']} (weighted sum: {report['weighted_sum_lookahead_passes']})",
        f"look-aheads decoded by {report['lookahead_decoder']}, final images by {report['final_decoder']}",
        *blend_lines(report),
        f"hypervolume: {report['hypervolume']:.4g} (reference {[round(v, 4) for v in report['reference_point']]})",
        f"time: {report['seconds']:.1f} s",
        "weights -> scores (" + ", ".join(report["rewards"]) + "):",
    ]
    for row, scores, note in zip(report["weights"], report["scores"], chain_notes(report), strict=True):
        weights, values = ", ".join(f"{w:.2f}" for w in row), ", ".join(f"{s:.4f}" for s in scores)
        lines.append(f"  {weights}  ->  {values}{note}")
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
