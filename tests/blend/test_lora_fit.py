"""A LoRA whose keys name this model's weights but whose shapes do not fit is refused (all of it)
or trimmed with one warning (part of it), never merged into nothing with ComfyUI's per-weight
'ERROR lora' lines."""

from __future__ import annotations

import logging

import pytest
import tiny_models
import torch
from conftest import LORA_RANK, lora_slots, sampled_latent, sampling_graph, tiny_unet_lora

BASE = ["1", 0]
WIDER = "blend_test_wider.safetensors"  # SD1.5 key names, every shape twice the tiny model's
PARTLY = "blend_test_partly.safetensors"  # fits, except the cross-attention keys (another context width)


@pytest.fixture(scope="module")
def misfit_loras(comfy):
    from safetensors.torch import save_file

    weights = tiny_models.tiny_sd15(0)[0].model.state_dict()
    doubled = [
        (key, (2 * w.shape[0], 2 * w.shape[1], *w.shape[2:])) for key, w in weights.items() if w.ndim >= 2
    ]
    folder = comfy.models_dir("loras")
    save_file(tiny_models.random_unet_lora(doubled, 4, LORA_RANK), str(folder / WIDER))
    partly = tiny_unet_lora(5)
    for name in _cross_attention_downs(partly):
        partly[name] = torch.randn(LORA_RANK, 2 * partly[name].shape[1])
    save_file(partly, str(folder / PARTLY))
    return comfy


def _cross_attention_downs(lora: dict) -> list[str]:
    return [k for k in lora if "attn2_to_k.lora_down" in k or "attn2_to_v.lora_down" in k]


def _knob(lora: str) -> dict:
    return {
        "m": {
            "class_type": "MultiReward_KLKnob",
            "inputs": {"model": BASE, "lora_name": lora, "blend_lambda": 1.0},
        }
    }


def _blend(class_type: str, names: list[str]) -> dict:
    inputs = {"model": BASE, **lora_slots(names, [1.0] * len(names)), "blend_lambda": 1.0}
    inputs.update({"seed": 0} if "Mixer" in class_type else {"normalise_weights": True})
    return {"m": {"class_type": class_type, "inputs": inputs}}


def _lora_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ERROR lora")]


@pytest.mark.parametrize(
    ("nodes", "slot"),
    [
        (lambda a: _knob(WIDER), "lora_name"),
        (lambda a: _blend("MultiReward_DiffusionBlend", [a, WIDER]), "lora_2"),
        (lambda a: _blend("MultiReward_LoRAStochasticMixer", [WIDER, a]), "lora_1"),
    ],
    ids=["KLKnob", "DiffusionBlend", "mixer"],
)
def test_a_lora_that_fits_no_weight_is_refused_naming_slot_file_and_count(
    misfit_loras, blend_loras, caplog, nodes, slot
):
    with caplog.at_level(logging.WARNING):
        result = misfit_loras.run(sampling_graph(nodes(blend_loras.a), ["m", 0]), expect_success=False)
    assert not result.success
    message = str(result.error)
    names = len([k for k in tiny_unet_lora(1) if k.endswith(".lora_down.weight")])
    assert f"{slot}: LoRA '{WIDER}' fits none of this model's weights" in message
    assert f"its keys name {names} weights of this model, 0 of them with the shape the LoRA gives" in message
    assert not _lora_errors(caplog)


def test_a_lora_that_fits_in_part_is_the_stock_lora_loaders_merge_with_one_warning(misfit_loras, caplog):
    with caplog.at_level(logging.WARNING):
        knob = sampled_latent(misfit_loras.run(sampling_graph(_knob(PARTLY), ["m", 0])))
    assert not _lora_errors(caplog)
    warnings = [r.getMessage() for r in caplog.records if PARTLY in r.getMessage()]
    named = [k for k in tiny_unet_lora(5) if k.endswith(".lora_down.weight")]
    misfits = len(_cross_attention_downs(tiny_unet_lora(5)))
    assert len(warnings) == 1, warnings
    assert f"fits {len(named) - misfits} of the {len(named)} weights it names" in warnings[0]
    stock = {
        "m": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": BASE, "lora_name": PARTLY, "strength_model": 1.0},
        }
    }
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        expected = sampled_latent(misfit_loras.run(sampling_graph(stock, ["m", 0])))
    assert len(_lora_errors(caplog)) == misfits  # the stock loader merges the rest, logs the others
    assert torch.equal(knob, expected)
