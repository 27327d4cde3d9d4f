"""DB-MPA-LS draws one LoRA per real sampler step, for every sampler ComfyUI ships.

Ground truth the pack does not compute: at every model call a unet wrapper reads (1) the sampler's
own loop index, from the sampler function's frame (its loop variable), and (2) which LoRA's merged
weight is actually in the model, by comparing a weight with the ones ComfyUI's stock LoRA merge gives.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import independent_lora_model, lora_slots
from tqdm.auto import trange

from multireward.sampling_math.blend import stochastic_choices

THIS_MODULES_TRANGE = trange  # what this module's samplers iterate when no run watches them

WEIGHTS = [0.5, 0.5]
SEED = 3  # its first draws switch LoRA often: most step boundaries are a change of LoRA
STEPS = 6


def _sampler_files() -> set[str]:
    """Where ComfyUI keeps its samplers' step loops."""
    import comfy.extra_samplers.uni_pc
    import comfy.k_diffusion.sampling
    import comfy_extras.nodes_advanced_samplers

    modules = (comfy.k_diffusion.sampling, comfy.extra_samplers.uni_pc, comfy_extras.nodes_advanced_samplers)
    return {str(Path(module.__file__).resolve()) for module in modules} | {str(Path(__file__).resolve())}


@dataclass
class Call:
    loop_index: int | None
    lora: str
    rejected_steps: int = 0  # dpm_adaptive's count of rejected (retried) steps so far


def _sampler_loop(frame) -> Call:
    """The step loop's index in the outermost sampler frame that has one: `i` for k-diffusion
    samplers, `step_index` for UniPC, the step counter of DPM-Solver's adaptive loop."""
    files = _sampler_files()
    found = Call(None, "")
    while frame is not None:
        if str(Path(frame.f_code.co_filename).resolve()) in files:
            local = frame.f_locals
            if frame.f_code.co_name == "dpm_solver_adaptive":
                found = Call(local["info"]["steps"], "", local["info"]["n_reject"])
            elif frame.f_code.co_name == "sample" and "step_index" in local:
                found = Call(local["step_index"], "")
            elif "i" in local and isinstance(local["i"], int):
                found = Call(local["i"], "")
        frame = frame.f_back
    return found


def _which_lora(probe: torch.nn.Parameter, references: dict[str, torch.Tensor]) -> str:
    matches = [name for name, weight in references.items() if torch.equal(probe, weight)]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.fixture(scope="module")
def recorded_mixer(comfy, blend_loras):
    """(a function that samples with the mixer under a sampler and returns the calls, the LoRAs)."""
    import nodes
    import tiny_models
    from comfy.utils import get_attr

    from multireward.pack_nodes.blend import LoRAStochasticMixer

    base, clip, _ = tiny_models.tiny_sd15(0)
    names = [blend_loras.a, blend_loras.b]
    # A weight every LoRA changes, and its value in the base model and in each stock LoRA merge.
    key = "diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    references = {"base": get_attr(base.model, key).detach().clone()}
    for name in names:
        references[name] = get_attr(independent_lora_model(comfy, name), key).detach()
    mixer = LoRAStochasticMixer.execute(
        base, blend_lambda=1.0, seed=SEED, **lora_slots(names, WEIGHTS)
    ).result[0]
    positive = nodes.CLIPTextEncode().encode(clip, "an apple")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}

    def sample(sample_function) -> list[Call]:
        calls: list[Call] = []

        def recorder(apply_model, args):
            probe = get_attr(apply_model.__self__, key)  # the BaseModel being run
            call = _sampler_loop(sys._getframe(1))
            call.lora = _which_lora(probe, references)
            calls.append(call)
            return apply_model(args["input"], args["timestep"], **args["c"])

        model = mixer.clone()
        model.set_model_unet_function_wrapper(recorder)
        sample_function(model, positive, negative, latent)
        return calls

    return sample, names


def _ksampler(sampler_name: str):
    import nodes

    def run(model, positive, negative, latent):
        nodes.common_ksampler(model, 5, STEPS, 4.0, sampler_name, "karras", positive, negative, latent)

    return run


def _assert_draw_per_loop_step(calls: list[Call], names: list[str]) -> None:
    assert calls and all(c.loop_index is not None for c in calls), calls
    steps = max(c.loop_index for c in calls) + 1
    expected = stochastic_choices(WEIGHTS, steps, SEED)
    wrong = [(c.loop_index, c.lora) for c in calls if c.lora != names[expected[c.loop_index]]]
    assert not wrong, f"calls with another step's LoRA: {wrong}; draws per step {expected}"


def _all_samplers() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.SAMPLER_NAMES)


@pytest.mark.parametrize("sampler_name", _all_samplers())
def test_every_model_call_uses_the_draw_of_the_samplers_own_step(recorded_mixer, sampler_name):
    sample, names = recorded_mixer
    calls = sample(_ksampler(sampler_name))
    _assert_draw_per_loop_step(calls, names)


def _custom(sampler):
    """Sample as SamplerCustom does, with a SAMPLER object."""
    import comfy.sample
    import comfy.samplers

    def run(model, positive, negative, latent):
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", STEPS)
        noise = comfy.sample.prepare_noise(latent["samples"], 5)
        comfy.sample.sample_custom(
            model, noise, 4.0, sampler, sigmas, positive, negative, latent["samples"], seed=5
        )

    return run


def _advanced_samplers() -> dict:
    import comfy.samplers
    import comfy_extras.nodes_advanced_samplers as advanced

    return {
        "SamplerEulerCFGpp": comfy.samplers.KSAMPLER(advanced.sample_euler_pp),
        "SamplerLCMUpscale": comfy.samplers.KSAMPLER(
            advanced.sample_lcm_upscale,
            extra_options={"total_upscale": 1.5, "upscale_steps": 2, "upscale_method": "bilinear"},
        ),
    }


@pytest.mark.parametrize("node", ["SamplerEulerCFGpp", "SamplerLCMUpscale"])
def test_the_advanced_samplers_of_comfy_extras_draw_per_step(recorded_mixer, node):
    sample, names = recorded_mixer
    _assert_draw_per_loop_step(sample(_custom(_advanced_samplers()[node])), names)


def test_dpm_adaptive_rejected_and_extra_steps_each_draw(recorded_mixer):
    """dpm_adaptive picks its own steps and retries rejected ones: each try is a step of its loop."""
    import comfy.samplers

    sample, names = recorded_mixer
    sampler = comfy.samplers.ksampler("dpm_adaptive", {"rtol": 1e-4, "atol": 1e-5, "h_init": 2.0})
    calls = sample(_custom(sampler))
    _assert_draw_per_loop_step(calls, names)
    assert max(c.loop_index for c in calls) >= STEPS  # more steps than the schedule's
    assert calls[-1].rejected_steps > 0


def sample_third_party_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A sampler from another pack: Heun steps, its loop on this module's own trange."""
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = (x - denoised) / sigmas[i]
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = (x_2 - model(x_2, sigmas[i + 1] * s_in, **extra_args)) / sigmas[i + 1]
        x = x + (d + d_2) / 2 * dt
    return x


def test_a_third_party_sampler_on_its_own_trange_draws_per_step(recorded_mixer):
    import comfy.samplers

    sample, names = recorded_mixer
    _assert_draw_per_loop_step(sample(_custom(comfy.samplers.KSAMPLER(sample_third_party_heun))), names)


def test_comfyuis_modules_are_as_they_were_after_a_run_even_a_failed_one(recorded_mixer):
    import comfy.extra_samplers.uni_pc
    import comfy.k_diffusion.sampling as k_diffusion
    import comfy.samplers

    sample, _ = recorded_mixer
    before = (k_diffusion.trange, comfy.extra_samplers.uni_pc.trange, k_diffusion.DPMSolver.eps, trange)
    seen_during = []

    def failing(model, x, sigmas, extra_args=None, callback=None, disable=None):
        seen_during.append(globals()["trange"] is not THIS_MODULES_TRANGE)
        model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
        raise RuntimeError("sampler failed")

    sample(_custom(comfy.samplers.KSAMPLER(sample_third_party_heun)))
    with pytest.raises(RuntimeError, match="sampler failed"):
        sample(_custom(comfy.samplers.KSAMPLER(failing)))
    assert seen_during == [True]  # watched while the run sampled
    after = (k_diffusion.trange, comfy.extra_samplers.uni_pc.trange, k_diffusion.DPMSolver.eps, trange)
    assert after == before
