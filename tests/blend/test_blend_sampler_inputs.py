"""Diffusion Blend Sampler refuses a sampler or scheduler name ComfyUI does not offer (ComfyUI's own
KSampler would run it as its first one without a word); what a user sees depends on the host."""

from __future__ import annotations

import harness
import pytest
from conftest import lora_slots, sampling_graph

from multireward.pack_nodes.blend import DiffusionBlendSampler
from multireward.sampling_math.blend import BlendInputError


def _blend_sampler_graph(blend_loras, **choices) -> dict:
    graph = sampling_graph({}, ["1", 0])
    inputs = {
        k: graph["ks"]["inputs"][k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")
    }
    inputs.update(choices)
    graph["db"] = {
        "class_type": "MultiReward_DiffusionBlendSampler",
        "inputs": {
            "model": ["1", 0],
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "latent_image": ["lat", 0],
            **inputs,
            **lora_slots([blend_loras.a, blend_loras.b], [0.5, 0.5]),
            "normalise_weights": True,
            "blend_lambda": 1.0,
        },
    }
    graph["out"]["inputs"]["samples"] = ["db", 0]
    del graph["ks"]
    return graph


@pytest.mark.parametrize("input_name", ["sampler_name", "scheduler"])
def test_an_unknown_sampler_or_scheduler_is_refused_naming_the_input(comfy, blend_loras, input_name):
    result = comfy.run(_blend_sampler_graph(blend_loras, **{input_name: "bogus"}), expect_success=False)
    assert not result.success
    message = str(result.error)
    if harness.COMFYUI_CHECKS_COMBO_VALUES:  # ComfyUI refuses it before the node runs
        assert "Value not in list" in message and f"{input_name}: 'bogus' not in" in message
    else:
        assert f"{input_name}: 'bogus' is not offered by this ComfyUI; allowed: " in message
    assert comfy.run(_blend_sampler_graph(blend_loras)).success  # and the next prompt works


def test_the_nodes_own_check_for_whatever_reaches_it(comfy, blend_loras):
    inputs = _blend_sampler_graph(blend_loras, sampler_name="bogus")["db"]["inputs"]
    with pytest.raises(
        BlendInputError, match=r"sampler_name: 'bogus' is not offered by this ComfyUI; allowed: euler, "
    ):
        DiffusionBlendSampler.execute(
            **{**inputs, "model": None, "positive": None, "negative": None, "latent_image": None}
        )
