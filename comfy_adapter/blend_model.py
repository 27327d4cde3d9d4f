"""A MODEL patch that evaluates LoRA variants per model call and blends their denoised predictions.

It is a CALC_COND_BATCH wrapper: ComfyUI's calc_cond_batch is where every guider asks the model for
predictions (CFGGuider for positive and negative, DualCFGGuider and PerpNegGuider for their three
conds, SAG, PAG and skip-layer guidance for their extra passes). Each call evaluates the variants
the blend needs on the same conds (batched as ComfyUI batches them) and blends them per
conditioning; the guider then combines the blends as it would the model's own predictions. So the
stock KSampler, SamplerCustomAdvanced, every guider and every sampler use it unchanged.

A SAMPLER_SAMPLE wrapper brackets each sampling run: on a GPU the variants' merged weights live
exactly as long as the run (ComfyUI's memory manager does not know about them), and for the mixer
the sampler's own step loop is watched (`sampler_steps`), so samplers that call the model several
times per step use one stochastic draw per step.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, field

import comfy.patcher_extension
import torch

from ..sampling_math.blend import (
    BlendPlan,
    combine_predictions,
    resolve_step,
    step_index_for_sigma,
    stochastic_choices,
)
from .lora import LoraVariant, VariantWeights
from .sampler_steps import StepLoop, watch_steps

CALC_COND_BATCH = comfy.patcher_extension.WrappersMP.CALC_COND_BATCH
BLEND_MARK = "multireward_blend"
BASE = -1  # index of the base model (no LoRA) in a stochastic draw


class BlendStackingError(ValueError):
    pass


class BlendMultiGpuError(RuntimeError):
    pass


@dataclass
class StochasticSpec:
    """DB-MPA-LS: per step one index drawn from `weights`; index == len(variants) means the base."""

    weights: list[float]
    seed: int


def keeps_merged_weights(model_patcher) -> bool:
    """Whether merged weights outlive a run: only where the model runs on the CPU (see weights_for)."""
    return torch.device(model_patcher.load_device).type == "cpu"


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

        Where the model runs on the CPU (a CPU-only host), the merged weights are kept for the next
        run of the same patcher and patch set: there is no device memory to protect, and a merge of
        full SD1.5 costs a second per LoRA on a CPU. On any other device (a GPU, whatever
        --highvram or --gpu-only make the offload device) they live for one run only: ComfyUI's
        memory manager is asked for room for them before they are merged, and nothing of them is
        left in device memory between runs.
        """
        key = (id(model_patcher.model), model_patcher.patches_uuid)
        if self.kept_weights is not None and self.kept_weights[0] == key:
            return self.kept_weights[1]
        weights = VariantWeights(model_patcher, self.variants)
        if keeps_merged_weights(model_patcher):
            self.kept_weights = (key, weights)
        return weights

    def is_kept(self, weights: VariantWeights) -> bool:
        return self.kept_weights is not None and self.kept_weights[1] is weights


@dataclass
class BlendRun:
    """State of one sampling run: merged weights, the sampler's step, and what was used per step."""

    spec: BlendSpec
    schedule: list[float]
    loop: StepLoop | None = None  # the sampler's own step loop, where it can be seen
    completed_steps: int | None = 0  # steps the sampler's callback reported (where no loop is seen)
    choices: list[int] = field(default_factory=list)
    weights: VariantWeights | None = None
    evaluations: dict[int, list[int]] = field(default_factory=dict)

    def variant_weights(self, model_patcher) -> VariantWeights:
        if self.weights is None:
            self.weights = self.spec.weights_for(model_patcher)
        return self.weights

    @property
    def follows_sampler_loop(self) -> bool:
        return self.loop is not None and self.loop.index is not None

    def step_of(self, sigma: float) -> int:
        if self.follows_sampler_loop:
            return self.loop.index
        # A sampler whose loop cannot be seen: the sigma, corrected by the steps its callback
        # reported (exact for one model call per step); samplers that add steps of their own may
        # count past the schedule.
        step = resolve_step(step_index_for_sigma(sigma, self.schedule), self.completed_steps)
        return min(step, len(self.schedule) - 2)

    def choice(self, step: int) -> int:
        """The draw of `step`: the seeded sequence is the same however far it is drawn, so samplers
        that take more steps than the schedule (dpm_adaptive) extend it."""
        if step >= len(self.choices):
            stochastic = self.spec.stochastic
            count = max(step + 1, 2 * len(self.choices), len(self.schedule) - 1)
            self.choices = stochastic_choices(stochastic.weights, count, stochastic.seed)
        return self.choices[step]

    def release(self) -> None:
        if self.weights is not None and not self.spec.is_kept(self.weights):
            self.weights.release()
        self.weights = None


def patch_model(model_patcher, spec: BlendSpec):
    """A clone of the MODEL whose predictions are the blend described by `spec`."""
    if any(key.startswith(BLEND_MARK) for key in model_patcher.wrappers.get(CALC_COND_BATCH, {})):
        raise BlendStackingError(
            "model: this MODEL already comes from a Diffusion Blend / LoRA mixer / KLKnob node; their "
            "blends cannot be stacked (each swaps LoRA weights into the same model). Use one node with "
            "all the LoRAs instead."
        )
    patched = model_patcher.clone()
    patched.add_wrapper_with_key(CALC_COND_BATCH, spec.run_key, _make_calc_wrapper(spec, patched))
    patched.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, spec.run_key, _make_run_wrapper(spec)
    )
    return patched


def _make_run_wrapper(spec: BlendSpec):
    def run_wrapper(executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        run = BlendRun(spec, [float(s) for s in sigmas])
        model_options = extra_args["model_options"]
        model_options[spec.run_key] = run
        try:
            with contextlib.ExitStack() as stack:
                if spec.stochastic is not None:  # only the mixer needs the step
                    run.loop = stack.enter_context(watch_steps(executor.class_obj))
                return executor(
                    guider, sigmas, extra_args, _counting_callback(run, callback), *args, **kwargs
                )
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
    how = (
        "the sampler's own steps"
        if run.follows_sampler_loop
        else "steps inferred from the sigmas and the step callback: this sampler's loop was not visible"
    )
    logging.info("multireward %s: LoRA per step (%s): %s", run.spec.label, how, used)
    logging.debug(
        "multireward %s: variant index per step: %s",
        run.spec.label,
        {step: indices for step, indices in sorted(run.evaluations.items())},
    )


def _make_calc_wrapper(spec: BlendSpec, own_patcher):
    def blended_calc_cond_batch(executor, model, conds, x, timestep, model_options):
        def evaluate() -> list[torch.Tensor]:
            return executor(model, conds, x, timestep, model_options)

        if model is not own_patcher.model:  # another model in the same run (a guider's second model)
            return evaluate()
        if "multigpu_clones" in model_options:
            raise BlendMultiGpuError(
                f"{spec.label}: ComfyUI's multi-GPU mode runs copies of the model on other devices, "
                "where the LoRA weights this node swaps in never arrive; sample this MODEL on one device"
            )
        run = _current_run(spec, model_options, timestep)
        # The patcher being sampled (a later LoraLoader may have cloned ours and added patches); ours
        # when the caller did not go through ModelPatcher.pre_run.
        model_patcher = getattr(model, "current_patcher", None) or own_patcher
        sigma = float(timestep.flatten()[0])
        if spec.stochastic is not None:
            return _stochastic_evaluation(run, model_patcher, sigma, evaluate)
        return _blended_evaluation(spec.plan, run, model_patcher, conds, evaluate)

    return blended_calc_cond_batch


def _current_run(spec: BlendSpec, model_options, timestep) -> BlendRun:
    run = model_options.get(spec.run_key)
    if run is not None:
        return run
    # Called outside a sampler run (no wrapper ran): correct but merges weights for this call only.
    schedule = model_options.get("transformer_options", {}).get("sample_sigmas")
    sigma = float(timestep.flatten()[0])
    return BlendRun(
        spec, [float(s) for s in schedule] if schedule is not None else [sigma, 0.0], completed_steps=None
    )


def _evaluate_variant(run: BlendRun, model_patcher, index: int, evaluate) -> list[torch.Tensor]:
    if index == BASE:
        return evaluate()
    with run.variant_weights(model_patcher).swapped_in(index):
        return evaluate()


def _stochastic_evaluation(run: BlendRun, model_patcher, sigma: float, evaluate):
    step = run.step_of(sigma)
    choice = run.choice(step)
    index = BASE if choice == len(run.spec.variants) else choice
    run.evaluations.setdefault(step, []).append(choice)
    return _evaluate_variant(run, model_patcher, index, evaluate)


def _blended_evaluation(plan: BlendPlan, run: BlendRun, model_patcher, conds, evaluate):
    base = evaluate() if plan.needs_base else None
    variants = {i: _evaluate_variant(run, model_patcher, i, evaluate) for i in plan.active_variants}
    blended = []
    for slot, cond in enumerate(conds):
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
