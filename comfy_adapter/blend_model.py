"""A MODEL patch that evaluates LoRA variants per step and blends their denoised predictions.

It sits in model_options["sampler_calc_cond_batch_function"], where ComfyUI asks for the positive and
negative predictions before CFG: every variant is evaluated on the same conds (positive and negative
batched as usual), blended per conditioning, and ComfyUI's normal CFG runs once on the blend. So the
stock KSampler, SamplerCustomAdvanced and every sampler use it unchanged.

A SAMPLER_SAMPLE wrapper brackets each sampling run: on a GPU the variants' merged weights live
exactly as long as the run (ComfyUI's memory manager does not know about them), and the sampler's per-step
callback tells which step an evaluation belongs to, so samplers that call the model several times per
step use one stochastic draw per step.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import comfy.patcher_extension
import comfy.samplers
import torch

from ..sampling_math.blend import (
    BlendPlan,
    combine_predictions,
    resolve_step,
    step_index_for_sigma,
    stochastic_choices,
)
from .lora import LoraVariant, VariantWeights

CALC_COND_BATCH = "sampler_calc_cond_batch_function"
BLEND_MARK = "multireward_blend"
BASE = -1  # index of the base model (no LoRA) in a stochastic draw


class BlendStackingError(ValueError):
    pass


@dataclass
class StochasticSpec:
    """DB-MPA-LS: per step one index drawn from `weights`; index == len(variants) means the base."""

    weights: list[float]
    seed: int


@dataclass
class BlendSpec:
    label: str
    variants: list[LoraVariant]
    plan: BlendPlan | None = None  # deterministic blend (DB-MPA, KLKnob)
    stochastic: StochasticSpec | None = None  # LS
    run_key: str = field(default_factory=lambda: f"{BLEND_MARK}_run_{uuid.uuid4().hex}")
    kept_weights: tuple[tuple, VariantWeights] | None = None

    def weights_for(self, model_patcher) -> VariantWeights:
        """Merged weights for a run of this patcher.

        Where the model runs in the memory it is kept in (a CPU-only host), the merged weights are
        kept for the next run of the same patcher and patch set: ComfyUI's memory manager has no
        device memory to protect there, and a merge of full SD1.5 costs a second per LoRA on a CPU.
        On a GPU they live for one run only, so ComfyUI's accounting of VRAM stays true.
        """
        key = (id(model_patcher.model), model_patcher.patches_uuid)
        if self.kept_weights is not None and self.kept_weights[0] == key:
            return self.kept_weights[1]
        weights = VariantWeights(model_patcher, self.variants)
        if model_patcher.load_device == model_patcher.offload_device:
            self.kept_weights = (key, weights)
        return weights

    def is_kept(self, weights: VariantWeights) -> bool:
        return self.kept_weights is not None and self.kept_weights[1] is weights


@dataclass
class BlendRun:
    """State of one sampling run: merged weights, steps completed, and what was used per step."""

    spec: BlendSpec
    schedule: list[float]
    choices: list[int] | None = None
    completed_steps: int | None = 0
    weights: VariantWeights | None = None
    evaluations: dict[int, list[int]] = field(default_factory=dict)

    def variant_weights(self, model_patcher) -> VariantWeights:
        if self.weights is None:
            self.weights = self.spec.weights_for(model_patcher)
        return self.weights

    def step_of(self, sigma: float) -> int:
        step = resolve_step(step_index_for_sigma(sigma, self.schedule), self.completed_steps)
        # Samplers that add steps of their own (restart) may count past the schedule.
        return min(step, len(self.schedule) - 2)

    def release(self) -> None:
        if self.weights is not None and not self.spec.is_kept(self.weights):
            self.weights.release()
        self.weights = None


def patch_model(model_patcher, spec: BlendSpec):
    """A clone of the MODEL whose predictions are the blend described by `spec`."""
    previous = model_patcher.model_options.get(CALC_COND_BATCH)
    if getattr(previous, BLEND_MARK, False):
        raise BlendStackingError(
            "model: this MODEL already comes from a Diffusion Blend / LoRA mixer / KLKnob node; their "
            "blends cannot be stacked (each swaps LoRA weights into the same model). Use one node with "
            "all the LoRAs instead."
        )
    patched = model_patcher.clone()
    patched.set_model_sampler_calc_cond_batch_function(_make_calc_function(spec, previous, patched))
    patched.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, spec.run_key, _make_run_wrapper(spec)
    )
    return patched


def _make_run_wrapper(spec: BlendSpec):
    def run_wrapper(executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        schedule = [float(s) for s in sigmas]
        run = BlendRun(spec, schedule)
        if spec.stochastic is not None:
            run.choices = stochastic_choices(spec.stochastic.weights, len(schedule) - 1, spec.stochastic.seed)
        model_options = extra_args["model_options"]
        model_options[spec.run_key] = run
        try:
            return executor(guider, sigmas, extra_args, _counting_callback(run, callback), *args, **kwargs)
        finally:
            model_options.pop(spec.run_key, None)
            run.release()
            _log_run(run)

    return run_wrapper


def _counting_callback(run: BlendRun, callback):
    """The sampler reports step i done through this callback; the next evaluations are step i+1."""

    def step_done(step, *args, **kwargs):
        run.completed_steps = int(step) + 1
        if callback is not None:
            return callback(step, *args, **kwargs)
        return None

    return step_done


def _log_run(run: BlendRun) -> None:
    if run.spec.stochastic is None or not run.evaluations:
        return
    names = [v.name for v in run.spec.variants] + ["(base model)"]
    used = [names[run.evaluations[step][0]] for step in sorted(run.evaluations)]
    logging.info("multireward %s: LoRA per step: %s", run.spec.label, used)
    logging.debug(
        "multireward %s: variant index per step: %s",
        run.spec.label,
        {step: indices for step, indices in sorted(run.evaluations.items())},
    )


def _make_calc_function(spec: BlendSpec, previous, own_patcher):
    def evaluate(args) -> list[torch.Tensor]:
        if previous is not None:
            return previous(args)
        return comfy.samplers.calc_cond_batch(
            args["model"], args["conds"], args["input"], args["sigma"], args["model_options"]
        )

    def blended_calc_cond_batch(args):
        run = _current_run(spec, args)
        # The patcher being sampled (a later LoraLoader may have cloned ours and added patches); ours
        # when the caller did not go through ModelPatcher.pre_run.
        model_patcher = getattr(args["model"], "current_patcher", None) or own_patcher
        if spec.stochastic is not None:
            return _stochastic_evaluation(run, model_patcher, args, evaluate)
        return _blended_evaluation(spec.plan, run, model_patcher, args, evaluate)

    setattr(blended_calc_cond_batch, BLEND_MARK, True)
    return blended_calc_cond_batch


def _current_run(spec: BlendSpec, args) -> BlendRun:
    run = args["model_options"].get(spec.run_key)
    if run is not None:
        return run
    # Called outside a sampler run (no wrapper ran): correct but merges weights for this call only.
    schedule = args["model_options"].get("transformer_options", {}).get("sample_sigmas")
    sigma = float(args["sigma"].flatten()[0])
    run = BlendRun(
        spec, [float(s) for s in schedule] if schedule is not None else [sigma, 0.0], completed_steps=None
    )
    if spec.stochastic is not None:
        run.choices = stochastic_choices(spec.stochastic.weights, len(run.schedule) - 1, spec.stochastic.seed)
    return run


def _evaluate_variant(run: BlendRun, model_patcher, index: int, args, evaluate) -> list[torch.Tensor]:
    if index == BASE:
        return evaluate(args)
    with run.variant_weights(model_patcher).swapped_in(index):
        return evaluate(args)


def _stochastic_evaluation(run: BlendRun, model_patcher, args, evaluate):
    step = run.step_of(float(args["sigma"].flatten()[0]))
    choice = run.choices[step]
    index = BASE if choice == len(run.spec.variants) else choice
    run.evaluations.setdefault(step, []).append(choice)
    return _evaluate_variant(run, model_patcher, index, args, evaluate)


def _blended_evaluation(plan: BlendPlan, run: BlendRun, model_patcher, args, evaluate):
    base = evaluate(args) if plan.needs_base else None
    variants = {i: _evaluate_variant(run, model_patcher, i, args, evaluate) for i in plan.active_variants}
    blended = []
    for slot, cond in enumerate(args["conds"]):
        if cond is None:  # CFG 1 skips the negative: keep ComfyUI's placeholder
            reference = base if base is not None else variants[plan.active_variants[0]]
            blended.append(reference[slot])
            continue
        blended.append(
            combine_predictions(
                plan,
                base[slot] if base is not None else None,
                {i: outputs[slot] for i, outputs in variants.items()},
            )
        )
    return blended


def describe_blend(model_options: dict) -> dict | None:
    """What the MODEL being sampled blends, read only, for another sampler's report (SRSoup's).

    During a sampling run the blend's run wrapper keeps its BlendRun in the model options under its
    run key; None when the model is not a blend (or outside a run).
    """
    runs = [run for key, run in model_options.items() if key.startswith(f"{BLEND_MARK}_run_")]
    if not runs:
        return None
    spec = runs[0].spec
    described = {"node": spec.label, "loras": [variant.name for variant in spec.variants]}
    if spec.stochastic is not None:
        # LoRAs first, the base model last (StochasticSpec's order).
        described.update(draw_probabilities=list(spec.stochastic.weights), seed=spec.stochastic.seed)
    else:
        described.update(
            coefficients=list(spec.plan.variant_coefficients), base_model_pass=spec.plan.needs_base
        )
    return described
