"""Diffusion Blend nodes in a real ComfyUI with the tiny SD1.5 model and tiny LoRAs.

Exactness is checked against the stock LoraLoader and against blends computed here, outside the
nodes, from independent copies of the model with the LoRA merged by ComfyUI's stock LoRA path.
"""

from __future__ import annotations

import json
import logging

import harness
import pytest
import torch
from conftest import (
    flow_custom_sampling_graph,
    independent_lora_model,
    lora_slots,
    sampled_latent,
    sampling_graph,
)

from multireward.sampling_math.blend import stochastic_choices

BASE = ["1", 0]


def _klknob(lora: str, blend_lambda: float) -> dict:
    return {
        "m": {
            "class_type": "MultiReward_KLKnob",
            "inputs": {"model": BASE, "lora_name": lora, "blend_lambda": blend_lambda},
        }
    }


def _stock_lora(lora: str) -> dict:
    return {
        "m": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": BASE, "lora_name": lora, "strength_model": 1.0},
        }
    }


def _diffusion_blend(names, weights, normalise=True, blend_lambda=1.0) -> dict:
    inputs = {
        "model": BASE,
        **lora_slots(names, weights),
        "normalise_weights": normalise,
        "blend_lambda": blend_lambda,
    }
    return {"m": {"class_type": "MultiReward_DiffusionBlend", "inputs": inputs}}


def _mixer(names, weights, seed=0, blend_lambda=1.0) -> dict:
    inputs = {"model": BASE, **lora_slots(names, weights), "blend_lambda": blend_lambda, "seed": seed}
    return {"m": {"class_type": "MultiReward_LoRAStochasticMixer", "inputs": inputs}}


_latents: dict[str, torch.Tensor] = {}


def _latent(comfy, model_nodes: dict | None, **graph_options) -> torch.Tensor:
    """The sampled latent of a graph; sampling is deterministic, so a graph already run is reused."""
    model_ref = ["m", 0] if model_nodes else BASE
    graph = sampling_graph(model_nodes or {}, model_ref, **graph_options)
    key = json.dumps(graph, sort_keys=True)
    if key not in _latents:
        _latents[key] = sampled_latent(comfy.run(graph))
    return _latents[key]


def _reference_latent(host, coefficients: dict[str, float], with_base: bool, **graph_options) -> torch.Tensor:
    """Sample with D = D_pre + sum_i c_i (D_i - D_pre) (or sum_i c_i D_i), computed in this test
    from independent model copies, through the stock KSampler code path."""
    import comfy.samplers
    import nodes
    import tiny_models

    graph = sampling_graph({}, BASE, **graph_options)
    result = host.run(graph)
    positive, negative, latent = result.output("pos"), result.output("neg"), result.output("lat")
    lora_models = {name: independent_lora_model(host, name) for name in coefficients}

    def reference(args):
        def run(model):
            return comfy.samplers.calc_cond_batch(
                model, args["conds"], args["input"], args["sigma"], args["model_options"]
            )

        outputs = {name: run(model) for name, model in lora_models.items()}
        base = run(args["model"]) if with_base else None
        blended = []
        for slot in range(len(args["conds"])):
            if with_base:
                value = base[slot].clone()
                for name, c in coefficients.items():
                    value += c * (outputs[name][slot] - base[slot])
            else:
                value = sum(c * outputs[name][slot] for name, c in coefficients.items())
            blended.append(value)
        return blended

    model = tiny_models.tiny_sd15(0)[0].clone()
    model.set_model_sampler_calc_cond_batch_function(reference)
    inputs = graph["ks"]["inputs"]
    out = nodes.common_ksampler(
        model,
        inputs["seed"],
        inputs["steps"],
        inputs["cfg"],
        inputs["sampler_name"],
        inputs["scheduler"],
        positive,
        negative,
        latent,
    )[0]
    return out["samples"]


def _draw_log(caplog) -> dict[int, list[int]]:
    """The mixer's record of which variant each model evaluation used, per step, of the last run."""
    records = [r for r in caplog.records if "variant index per step" in r.getMessage()]
    assert records, "the mixer logged no draws"
    return records[-1].args[1]


# --- KLKnob ------------------------------------------------------------------------------------------


def test_klknob_lambda_zero_is_exactly_the_base_model(comfy, blend_loras):
    assert torch.equal(_latent(comfy, _klknob(blend_loras.a, 0.0)), _latent(comfy, None))


def test_klknob_lambda_one_is_exactly_the_stock_lora_loader(comfy, blend_loras):
    knob = _latent(comfy, _klknob(blend_loras.a, 1.0))
    stock = _latent(comfy, _stock_lora(blend_loras.a))
    assert torch.equal(knob, stock)
    assert not torch.equal(knob, _latent(comfy, None)), "the LoRA must change the image"


def test_klknob_lambda_two_is_the_extrapolation_computed_outside(comfy, blend_loras):
    knob = _latent(comfy, _klknob(blend_loras.a, 2.0))
    reference = _reference_latent(comfy, {blend_loras.a: 2.0}, with_base=True)
    torch.testing.assert_close(knob, reference, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(knob, _latent(comfy, _stock_lora(blend_loras.a)), atol=1e-2)


# --- DB-MPA ------------------------------------------------------------------------------------------


def test_diffusion_blend_one_hot_is_exactly_that_lora(comfy, blend_loras):
    blended = _latent(comfy, _diffusion_blend([blend_loras.a, blend_loras.b], [0.0, 1.0]))
    assert torch.equal(blended, _latent(comfy, _stock_lora(blend_loras.b)))


def test_diffusion_blend_half_half_is_the_blend_computed_outside(comfy, blend_loras):
    names = [blend_loras.a, blend_loras.b]
    blended = _latent(comfy, _diffusion_blend(names, [0.5, 0.5]))
    reference = _reference_latent(comfy, {blend_loras.a: 0.5, blend_loras.b: 0.5}, with_base=False)
    torch.testing.assert_close(blended, reference, rtol=1e-5, atol=1e-4)


def test_diffusion_blend_normalises_and_says_so(comfy, blend_loras):
    names = [blend_loras.a, blend_loras.b]
    result = comfy.run(sampling_graph(_diffusion_blend(names, [1.0, 1.0]), ["m", 0]))
    summary = result.output("m", 1)
    assert "normalised onto the simplex: (0.5, 0.5)" in summary and "no base-model pass" in summary
    torch.testing.assert_close(
        sampled_latent(result), _latent(comfy, _diffusion_blend(names, [0.5, 0.5])), rtol=0, atol=0
    )


def test_diffusion_blend_off_simplex_uses_the_general_form(comfy, blend_loras):
    names = [blend_loras.a, blend_loras.b]
    result = comfy.run(sampling_graph(_diffusion_blend(names, [1.0, 0.5], normalise=False), ["m", 0]))
    assert "general form D_pre + lambda" in result.output("m", 1)
    reference = _reference_latent(comfy, {blend_loras.a: 1.0, blend_loras.b: 0.5}, with_base=True)
    torch.testing.assert_close(sampled_latent(result), reference, rtol=1e-5, atol=1e-4)


def test_diffusion_blend_sampler_node_equals_the_model_patch_in_ksampler(comfy, blend_loras):
    names = [blend_loras.a, blend_loras.b, blend_loras.c]
    weights = [0.2, 0.3, 0.5]
    patch_latent = _latent(comfy, _diffusion_blend(names, weights))
    graph = sampling_graph({}, BASE)
    graph["db"] = {
        "class_type": "MultiReward_DiffusionBlendSampler",
        "inputs": {
            "model": BASE,
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "latent_image": ["lat", 0],
            **{
                k: graph["ks"]["inputs"][k]
                for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")
            },
            **lora_slots(names, weights),
            "normalise_weights": True,
            "blend_lambda": 1.0,
        },
    }
    graph["out"]["inputs"]["samples"] = ["db", 0]
    result = comfy.run(graph)
    assert torch.equal(result.output("db", 0)["samples"], patch_latent)
    assert "3 model passes per step" in result.output("db", 1)


# --- DB-MPA-LS ---------------------------------------------------------------------------------------


def test_mixer_one_hot_is_exactly_that_lora(comfy, blend_loras):
    mixed = _latent(comfy, _mixer([blend_loras.a, blend_loras.b], [1.0, 0.0], seed=5))
    assert torch.equal(mixed, _latent(comfy, _stock_lora(blend_loras.a)))


def test_mixer_same_seed_same_image_and_seeds_change_the_draws(comfy, blend_loras, caplog):
    names = [blend_loras.a, blend_loras.b]
    with caplog.at_level(logging.DEBUG):
        first = _latent(comfy, _mixer(names, [0.5, 0.5], seed=1), steps=12)
        first_draws = _draw_log(caplog)
        again = sampled_latent(
            comfy.run(sampling_graph(_mixer(names, [0.5, 0.5], seed=1), ["m", 0], steps=12))
        )
        other = _latent(comfy, _mixer(names, [0.5, 0.5], seed=2), steps=12)
        other_draws = _draw_log(caplog)
    assert torch.equal(first, again)
    assert first_draws != other_draws
    assert not torch.equal(first, other)
    assert [d[0] for d in first_draws.values()] == stochastic_choices([0.5, 0.5], 12, seed=1)


@pytest.mark.parametrize("sampler", ["heun", "dpm_2", "euler_ancestral", "dpmpp_2m"])
def test_mixer_draws_once_per_step_for_multi_evaluation_samplers(comfy, blend_loras, caplog, sampler):
    names = [blend_loras.a, blend_loras.b, blend_loras.c]
    steps = 6
    with caplog.at_level(logging.DEBUG):
        _latent(comfy, _mixer(names, [0.3, 0.3, 0.4], seed=9), steps=steps, sampler=sampler)
    draws = _draw_log(caplog)
    expected = stochastic_choices([0.3, 0.3, 0.4], steps, seed=9)
    assert sorted(draws) == list(range(steps))
    for step, used in draws.items():
        assert set(used) == {expected[step]}, (step, used)
    if sampler in ("heun", "dpm_2"):  # these evaluate the model twice in a step
        assert max(len(used) for used in draws.values()) == 2


def test_mixer_uses_one_draw_for_the_whole_batch_and_both_cfg_halves(comfy, blend_loras, caplog):
    names = [blend_loras.a, blend_loras.b]
    with caplog.at_level(logging.DEBUG):
        batch = _latent(comfy, _mixer(names, [0.5, 0.5], seed=6), steps=6, batch=2)
    # One evaluation per euler step: positive and negative of both images in one variant's call.
    assert all(len(used) == 1 for used in _draw_log(caplog).values())
    assert batch.shape[0] == 2 and not torch.equal(batch[0], batch[1])


def test_mixer_draw_frequencies_follow_the_weights_chi_square(comfy, blend_loras, caplog):
    names = [blend_loras.a, blend_loras.b]
    weights = [0.25, 0.75]
    steps = 200
    with caplog.at_level(logging.DEBUG):
        _latent(comfy, _mixer(names, weights, seed=31), steps=steps, cfg=1.0)
    chosen = torch.tensor([used[0] for used in _draw_log(caplog).values()])
    observed = torch.bincount(chosen, minlength=2).double()
    expected = torch.tensor(weights, dtype=torch.float64) * steps
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    assert chi_square < 10.83, (observed.tolist(), chi_square)  # 1 dof, p = 0.001


def test_mixer_lambda_below_one_draws_the_base_model_too(comfy, blend_loras, caplog):
    names = [blend_loras.a, blend_loras.b]
    with caplog.at_level(logging.DEBUG):
        result = comfy.run(
            sampling_graph(_mixer(names, [1.0, 1.0], seed=4, blend_lambda=0.5), ["m", 0], steps=24)
        )
    chosen = {used[0] for used in _draw_log(caplog).values()}
    assert chosen == {0, 1, 2}  # index 2: the base model
    assert "base model drawn with probability 0.5" in result.output("m", 1)


# --- bad inputs ---------------------------------------------------------------------------------------


def _error_message(result) -> str:
    assert not result.success
    return str(result.error)


def test_lora_for_another_architecture_is_an_error_naming_the_file(comfy, blend_loras):
    graph = sampling_graph(_klknob(blend_loras.foreign, 1.0), ["m", 0])
    message = _error_message(comfy.run(graph, expect_success=False))
    assert blend_loras.foreign in message and "matches none of this model's weights" in message
    # In a blend the message names the slot: lora_4 here, with slot 3 left empty.
    nodes = _diffusion_blend([blend_loras.a, blend_loras.b], [1.0, 1.0])
    nodes["m"]["inputs"]["lora_4"] = blend_loras.foreign
    message = _error_message(comfy.run(sampling_graph(nodes, ["m", 0]), expect_success=False))
    assert f"lora_4: LoRA '{blend_loras.foreign}' matches none" in message


def test_all_zero_weights_are_an_error(comfy, blend_loras):
    graph = sampling_graph(_diffusion_blend([blend_loras.a, blend_loras.b], [0.0, 0.0]), ["m", 0])
    message = _error_message(comfy.run(graph, expect_success=False))
    assert "weight_1, weight_2: all weights are zero" in message


def test_negative_weights_for_the_mixer_are_an_error_pointing_to_klknob(comfy, blend_loras):
    graph = sampling_graph(_mixer([blend_loras.a, blend_loras.b], [1.0, -0.5]), ["m", 0])
    message = _error_message(comfy.run(graph, expect_success=False))
    assert "weight_2" in message and ">= 0" in message and "KLKnob" in message


def test_mixer_refuses_extrapolation_pointing_to_klknob(comfy, blend_loras):
    graph = sampling_graph(_mixer([blend_loras.a, blend_loras.b], [0.5, 0.5], blend_lambda=2.0), ["m", 0])
    message = _error_message(comfy.run(graph, expect_success=False))
    assert "cannot extrapolate" in message and "KLKnob" in message


def test_missing_lora_file_is_an_error_naming_it(comfy, blend_loras):
    graph = sampling_graph(_klknob("no_such_lora.safetensors", 1.0), ["m", 0])
    result = comfy.run(graph, expect_success=False)
    assert not result.success and "no_such_lora.safetensors" in str(result.error)
    # The same check where the file vanished after the graph was validated:
    import tiny_models

    from multireward.comfy_adapter.lora import load_lora_variant

    with pytest.raises(FileNotFoundError, match=r"lora_2: LoRA file 'gone.safetensors' was not found"):
        load_lora_variant(tiny_models.tiny_sd15(0)[0], "gone.safetensors", "lora_2")


def test_a_blend_needs_two_loras(comfy, blend_loras):
    graph = sampling_graph(_diffusion_blend([blend_loras.a], [1.0]), ["m", 0])
    message = _error_message(comfy.run(graph, expect_success=False))
    if harness.COMFYUI_CHECKS_COMBO_VALUES:
        # lora_2 offers only LoRA files, so ComfyUI itself refuses "(none)" there, naming the input.
        assert "Value not in list" in message and "lora_2: '(none)' not in" in message
        assert blend_loras.a in message  # the allowed files are listed
    else:
        assert "needs 2 to 4 LoRAs, 1 chosen" in message and "KLKnob" in message
    # The node's own check, for whatever reaches it without ComfyUI's validation.
    from multireward.pack_nodes.blend import build_diffusion_blend
    from multireward.sampling_math.blend import BlendInputError

    one_lora = {"lora_1": blend_loras.a, "weight_1": 1.0, "lora_2": "(none)", "weight_2": 1.0}
    with pytest.raises(BlendInputError, match=r"needs 2 to 4 LoRAs, 1 chosen; for a single LoRA use KLKnob"):
        build_diffusion_blend(None, one_lora, normalise_weights=True, blend_lambda=1.0)


def test_blends_cannot_be_stacked(comfy, blend_loras):
    nodes = _klknob(blend_loras.a, 0.5)
    nodes["m2"] = {
        "class_type": "MultiReward_KLKnob",
        "inputs": {"model": ["m", 0], "lora_name": blend_loras.b, "blend_lambda": 0.5},
    }
    message = _error_message(comfy.run(sampling_graph(nodes, ["m2", 0]), expect_success=False))
    assert "cannot be stacked" in message


# --- beyond eps-prediction and the stock KSampler: a flow model through SamplerCustomAdvanced ---------


def _flow_latent(comfy, model_nodes: dict | None, **options) -> torch.Tensor:
    model_ref = ["m", 0] if model_nodes else ["f", 0]
    graph = flow_custom_sampling_graph(model_nodes or {}, model_ref, **options)
    return comfy.run(graph).output("sca", 0)["samples"]


def _on_flow(nodes: dict) -> dict:
    nodes["m"]["inputs"]["model"] = ["f", 0]
    return nodes


def test_flow_model_klknob_and_blends_through_sampler_custom_advanced(comfy, flow_loras):
    a, b = flow_loras
    stock = _flow_latent(comfy, _on_flow(_stock_lora(a)))
    assert torch.equal(_flow_latent(comfy, _on_flow(_klknob(a, 1.0))), stock)
    assert torch.equal(_flow_latent(comfy, _on_flow(_klknob(a, 0.0))), _flow_latent(comfy, None))
    assert torch.equal(_flow_latent(comfy, _on_flow(_diffusion_blend([a, b], [1.0, 0.0]))), stock)
    assert torch.equal(_flow_latent(comfy, _on_flow(_mixer([a, b], [1.0, 0.0]))), stock)
    blended = _flow_latent(comfy, _on_flow(_diffusion_blend([a, b], [0.5, 0.5])))
    assert torch.isfinite(blended).all() and not torch.equal(blended, stock)


def test_mixer_draws_once_per_step_through_sampler_custom_advanced(comfy, flow_loras, caplog):
    with caplog.at_level(logging.DEBUG):
        _flow_latent(comfy, _on_flow(_mixer(list(flow_loras), [0.5, 0.5], seed=8)), steps=6, sampler="heun")
    draws = _draw_log(caplog)
    assert max(len(used) for used in draws.values()) == 2  # heun: two evaluations in a step
    expected = stochastic_choices([0.5, 0.5], 6, seed=8)
    assert {step: set(used) for step, used in draws.items()} == {s: {c} for s, c in enumerate(expected)}


def test_klknob_composes_with_a_lora_loader_before_and_after(comfy, blend_loras):
    a, b = blend_loras.a, blend_loras.b
    stock_ab = {
        "s1": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": BASE, "lora_name": a, "strength_model": 1.0},
        },
        "m": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": ["s1", 0], "lora_name": b, "strength_model": 1.0},
        },
    }
    knob_after_a = {
        "s1": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": BASE, "lora_name": a, "strength_model": 1.0},
        },
        "m": {
            "class_type": "MultiReward_KLKnob",
            "inputs": {"model": ["s1", 0], "lora_name": b, "blend_lambda": 1.0},
        },
    }
    # A LoraLoader upstream: the variant merges from the original weights, as a chained LoraLoader does.
    assert torch.equal(_latent(comfy, knob_after_a), _latent(comfy, stock_ab))
    knob_before_a = {
        "k": {
            "class_type": "MultiReward_KLKnob",
            "inputs": {"model": BASE, "lora_name": b, "blend_lambda": 1.0},
        },
        "m": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": ["k", 0], "lora_name": a, "strength_model": 1.0},
        },
    }
    # Downstream: the LoRAs are merged in the other order, equal up to float rounding.
    torch.testing.assert_close(_latent(comfy, knob_before_a), _latent(comfy, stock_ab), rtol=1e-4, atol=1e-3)
