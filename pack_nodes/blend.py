"""Diffusion Blend nodes: DiffusionBlend (DB-MPA), LoRAStochasticMixer (DB-MPA-LS), KLKnob (DB-KLA).

Each node returns a MODEL whose prediction per conditioning is a blend of LoRA variants of the input
model, followed by ComfyUI's normal CFG, so it works in the stock KSampler and in every sampler.
"""

from __future__ import annotations

import logging
import math

from comfy_api.latest import io

from ..comfy_adapter.blend_model import BlendSpec, StochasticSpec, patch_model
from ..comfy_adapter.lora import load_lora_variant, lora_files
from ..comfy_adapter.sampling import sample_with_ksampler, sampler_names, scheduler_names
from ..sampling_math.blend import (
    BlendInputError,
    draw_probabilities,
    is_on_simplex,
    normalise_onto_simplex,
    plan_blend,
    validate_weights,
)
from .types import NO_FILE

CATEGORY = "multireward/blend"
MAX_LORAS = 4
MAX_LAMBDA = 5.0

MODEL_TOOLTIP = "The base model; the LoRAs are applied to it (it may already carry other patches)."
LAMBDA_TOOLTIP = (
    "lambda in D = D_pre + lambda * sum_i w_i (D_i - D_pre): 0 is the base model, 1 the blend itself, "
    "above 1 extrapolates away from the base."
)


def _lora_slot_inputs(weight_min: float, weight_tooltip: str) -> list:
    inputs = []
    for slot in range(1, MAX_LORAS + 1):
        optional = slot > 2
        options = [NO_FILE, *lora_files()] if optional else lora_files()
        inputs.append(
            io.Combo.Input(
                f"lora_{slot}",
                options=options,
                default=NO_FILE if optional else None,
                tooltip=f"LoRA {slot} from models/loras" + (" (optional)." if optional else "."),
            )
        )
        inputs.append(
            io.Float.Input(
                f"weight_{slot}", default=1.0, min=weight_min, max=10.0, step=0.01, tooltip=weight_tooltip
            )
        )
    return inputs


def _chosen_loras(kwargs: dict) -> tuple[list[str], list[float], list[str]]:
    """(LoRA names, their weights, the weight inputs' names) of the slots that hold a LoRA."""
    names, weights, weight_names = [], [], []
    for slot in range(1, MAX_LORAS + 1):
        name = kwargs.get(f"lora_{slot}", NO_FILE)
        if name and name != NO_FILE:
            names.append(name)
            weights.append(float(kwargs[f"weight_{slot}"]))
            weight_names.append(f"weight_{slot}")
    if len(names) < 2:
        raise BlendInputError(
            f"lora_1..lora_{MAX_LORAS}: a blend needs 2 to {MAX_LORAS} LoRAs, {len(names)} chosen; "
            "for a single LoRA use KLKnob"
        )
    return names, weights, weight_names


def _load_variants(model, names: list[str], weight_names: list[str]) -> list:
    """Each chosen LoRA, errors naming its own input (lora_k goes with weight_k)."""
    return [
        load_lora_variant(model, name, weight_name.replace("weight_", "lora_"))
        for name, weight_name in zip(names, weight_names, strict=True)
    ]


def _format_weights(weights: list[float]) -> str:
    return "(" + ", ".join(f"{w:.4g}" for w in weights) + ")"


def _validate_lambda(blend_lambda: float) -> None:
    if not math.isfinite(blend_lambda) or blend_lambda < 0:
        raise BlendInputError(f"lambda is {blend_lambda}; allowed: 0 to {MAX_LAMBDA}")


def _blend_weights(weights: list[float], weight_names: list[str], normalise: bool) -> tuple[list[float], str]:
    """The weights the blend uses, and a sentence saying what was done to them."""
    if normalise:
        simplex = normalise_onto_simplex(weights, labels=weight_names)
        if is_on_simplex(weights):
            return simplex, f"weights {_format_weights(weights)} are on the simplex"
        return (
            simplex,
            f"weights {_format_weights(weights)} normalised onto the simplex: {_format_weights(simplex)}",
        )
    values = validate_weights(weights, allow_negative=True, labels=weight_names)
    if is_on_simplex(values):
        return values, f"weights {_format_weights(values)} used as given (they are on the simplex)"
    return values, (
        f"weights {_format_weights(values)} used as given, off the simplex (sum {math.fsum(values):.4g}): "
        "general form D_pre + lambda * sum_i w_i (D_i - D_pre)"
    )


def build_diffusion_blend(model, kwargs: dict, normalise_weights: bool, blend_lambda: float):
    """The blended MODEL and the sentence describing the blend (shared by both DB-MPA nodes)."""
    _validate_lambda(blend_lambda)
    names, weights, weight_names = _chosen_loras(kwargs)
    used, weights_sentence = _blend_weights(weights, weight_names, normalise_weights)
    plan = plan_blend(used, blend_lambda)
    variants = _load_variants(model, names, weight_names)
    base_note = "runs the base model too" if plan.needs_base else "no base-model pass (lambda * sum w = 1)"
    summary = (
        f"Diffusion Blend of {', '.join(names)}: {weights_sentence}; lambda {blend_lambda:g}; "
        f"{plan.passes_per_step} model passes per step ({base_note})."
    )
    spec = BlendSpec(label="DiffusionBlend", variants=variants, plan=plan)
    logging.info("multireward: %s", summary)
    return patch_model(model, spec), summary


def _blend_option_inputs() -> list:
    return [
        io.Boolean.Input(
            "normalise_weights",
            default=True,
            tooltip="On: weights are scaled to sum to 1 (the simplex, DB-MPA), and the summary says so. "
            "Off: weights are used as given; off the simplex that is the general form "
            "D_pre + lambda * sum_i w_i (D_i - D_pre), which also runs the base model each step.",
        ),
        io.Float.Input(
            "blend_lambda",
            display_name="lambda",
            default=1.0,
            min=0.0,
            max=MAX_LAMBDA,
            step=0.05,
            tooltip=LAMBDA_TOOLTIP,
        ),
    ]


DB_WEIGHT_TOOLTIP = (
    "Weight of this LoRA's prediction in the blend (normalised unless normalise_weights is off)."
)


class DiffusionBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_DiffusionBlend",
            display_name="Diffusion Blend (DB-MPA) Model",
            category=CATEGORY,
            description="Blends 2 to 4 LoRA variants of a model by their denoised predictions at every "
            "step (positive and negative separately, then CFG once): D = sum_i w_i D_i. Use the MODEL in "
            "any KSampler. Costs one model pass per LoRA per step.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                *_lora_slot_inputs(weight_min=-10.0, weight_tooltip=DB_WEIGHT_TOOLTIP),
                *_blend_option_inputs(),
            ],
            outputs=[io.Model.Output(display_name="MODEL"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, model, normalise_weights: bool, blend_lambda: float, **loras) -> io.NodeOutput:
        patched, summary = build_diffusion_blend(model, loras, normalise_weights, blend_lambda)
        return io.NodeOutput(patched, summary)


class DiffusionBlendSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_DiffusionBlendSampler",
            display_name="Diffusion Blend (DB-MPA) Sampler",
            category=CATEGORY,
            description="All in one: samples with the Diffusion Blend of 2 to 4 LoRAs (see Diffusion Blend "
            "Model), like KSampler.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                io.Conditioning.Input("positive"),
                io.Conditioning.Input("negative"),
                io.Latent.Input("latent_image"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Int.Input("steps", default=20, min=1, max=10000),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01),
                io.Combo.Input("sampler_name", options=sampler_names()),
                io.Combo.Input("scheduler", options=scheduler_names()),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01),
                *_lora_slot_inputs(weight_min=-10.0, weight_tooltip=DB_WEIGHT_TOOLTIP),
                *_blend_option_inputs(),
            ],
            outputs=[io.Latent.Output(display_name="LATENT"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        latent_image,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        denoise,
        normalise_weights: bool,
        blend_lambda: float,
        **loras,
    ) -> io.NodeOutput:
        _check_choice("sampler_name", sampler_name, sampler_names())
        _check_choice("scheduler", scheduler, scheduler_names())
        patched, summary = build_diffusion_blend(model, loras, normalise_weights, blend_lambda)
        latent = sample_with_ksampler(
            patched, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise
        )
        return io.NodeOutput(latent, summary)


def _check_choice(input_name: str, value: str, allowed: list[str]) -> None:
    """ComfyUI's KSampler runs an unknown sampler or scheduler name as its first one (euler, simple)
    without a word, and ComfyUI before 0.8 does not check a combo's value itself."""
    if value not in allowed:
        raise BlendInputError(
            f"{input_name}: '{value}' is not offered by this ComfyUI; allowed: {', '.join(allowed)}"
        )


LS_STEPS_TOOLTIP = (
    "One LoRA per denoising step, drawn from Categorical(w): the cost of a single model. Its samples "
    "match DB-MPA's only as the step count grows: on a closed-form toy the extra variance halved each "
    "time the step count doubled, and deterministic samplers (euler, DDIM) showed about half the gap of "
    "ancestral ones. Use more steps (30+) than usual."
)


class LoRAStochasticMixer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_LoRAStochasticMixer",
            display_name="LoRA Stochastic Mixer (DB-MPA-LS)",
            category=CATEGORY,
            description="At every denoising step uses one LoRA, drawn from the weights with a generator "
            "seeded by this node (the same LoRA for the whole batch and both CFG halves). "
            + LS_STEPS_TOOLTIP,
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                *_lora_slot_inputs(
                    weight_min=-10.0,
                    weight_tooltip="Probability weight of this LoRA (normalised onto the simplex; must be >= 0).",
                ),
                io.Float.Input(
                    "blend_lambda",
                    display_name="lambda",
                    default=1.0,
                    min=0.0,
                    max=MAX_LAMBDA,
                    step=0.05,
                    tooltip="Below 1 the base model is drawn with probability 1 - lambda. Above 1 "
                    "(extrapolation) is not possible by drawing; use KLKnob.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                    tooltip="Seeds the per-step LoRA draws only (not the sampling noise). "
                    + LS_STEPS_TOOLTIP,
                ),
            ],
            outputs=[io.Model.Output(display_name="MODEL"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, model, blend_lambda: float, seed: int, **loras) -> io.NodeOutput:
        names, weights, weight_names = _chosen_loras(loras)
        draw_weights, summary = stochastic_mixer_weights(weights, weight_names, blend_lambda)
        variants = _load_variants(model, names, weight_names)
        spec = BlendSpec(
            label="LoRAStochasticMixer", variants=variants, stochastic=StochasticSpec(draw_weights, int(seed))
        )
        summary = f"LoRA Stochastic Mixer of {', '.join(names)}: {summary}; draws seeded by {seed}."
        logging.info("multireward: %s", summary)
        return io.NodeOutput(patch_model(model, spec), summary)


def stochastic_mixer_weights(
    weights: list[float], weight_names: list[str], blend_lambda: float
) -> tuple[list[float], str]:
    """Draw probabilities (LoRAs, then the base model last) and a sentence on them."""
    _validate_lambda(blend_lambda)
    if blend_lambda > 1.0:
        raise BlendInputError(
            f"lambda is {blend_lambda}: LoRAStochasticMixer cannot extrapolate (a random choice of one "
            "model per step only interpolates); use KLKnob for lambda > 1"
        )
    negative = [n for n, w in zip(weight_names, weights, strict=True) if w < 0]
    if negative:
        raise BlendInputError(
            f"{', '.join(negative)}: negative weights ask for extrapolation, which drawing one LoRA per step "
            "cannot do; weights must be >= 0. Use KLKnob (lambda > 1) or Diffusion Blend with "
            "normalise_weights off"
        )
    simplex = normalise_onto_simplex(weights, labels=weight_names)
    draw = draw_probabilities(simplex, blend_lambda)
    sentence = f"draw probabilities {_format_weights(simplex)}"
    if not is_on_simplex(weights):
        sentence = (
            f"weights {_format_weights(weights)} normalised onto the simplex: {_format_weights(simplex)}"
        )
    if blend_lambda < 1.0:
        sentence += (
            f", scaled by lambda {blend_lambda:g} (base model drawn with probability {1 - blend_lambda:.4g})"
        )
    return draw, sentence


class KLKnob(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_KLKnob",
            display_name="KL Knob (DB-KLA)",
            category=CATEGORY,
            description="Moves a model toward (or past) one LoRA by its predictions: "
            "D = D_pre + lambda (D_lora - D_pre) per conditioning, then the usual CFG. lambda 0 is the "
            "base model, 1 the LoRA model (each one pass per step); other values run both.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                io.Combo.Input("lora_name", options=lora_files(), tooltip="The LoRA from models/loras."),
                io.Float.Input(
                    "blend_lambda",
                    display_name="lambda",
                    default=1.0,
                    min=0.0,
                    max=MAX_LAMBDA,
                    step=0.05,
                    tooltip="0: base model; 1: LoRA model; between: interpolation; above 1: extrapolation "
                    "(stronger reward, further from the base; the paper shows up to 2).",
                ),
            ],
            outputs=[io.Model.Output(display_name="MODEL")],
        )

    @classmethod
    def execute(cls, model, lora_name: str, blend_lambda: float) -> io.NodeOutput:
        _validate_lambda(blend_lambda)
        variant = load_lora_variant(model, lora_name, "lora_name")  # a bad file is an error at any lambda
        if blend_lambda == 0:
            return io.NodeOutput(model)  # exactly the base model: one pass per step, no patch
        spec = BlendSpec(label="KLKnob", variants=[variant], plan=plan_blend([1.0], blend_lambda))
        return io.NodeOutput(patch_model(model, spec))


NODES = [DiffusionBlend, DiffusionBlendSampler, LoRAStochasticMixer, KLKnob]

__all__ = ["NODES"]
