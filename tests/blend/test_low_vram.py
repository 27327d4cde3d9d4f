"""Blends on a partially loaded model (ComfyUI's lowvram loading), forced on a CPU.

ComfyUI never partially loads a model whose load device is the CPU, so the one decision it makes on
a GPU with too little free memory, the budget LoadedModel.model_load gets, is fixed here to a third
of the model; everything else is ComfyUI's own: modules past the budget keep their weights on the
offload device, cast them per call and merge the model's own patches then (LowVramPatch).
Ground truth: the stock LoraLoader under the same loading, and the blend of a fully loaded model.
"""

from __future__ import annotations

import pytest
import tiny_models
import torch
from conftest import lora_slots

from multireward.pack_nodes.blend import DiffusionBlend, KLKnob


@pytest.fixture
def fresh_model():
    """A tiny SD1.5 model of its own (its loading state must not leak into other tests)."""
    import comfy.model_management

    base = tiny_models.tiny_sd15(0)[0].model
    module = base.model_config.get_model({})
    module.load_state_dict(base.state_dict())
    yield tiny_models._model_patcher(module)
    comfy.model_management.unload_all_models()


@pytest.fixture
def low_vram(monkeypatch):
    """ComfyUI loads every model with a budget of a third of its size; yields what it loaded."""
    from comfy import model_management

    original = model_management.LoadedModel.model_load
    loads = []

    def partial_load(self, lowvram_model_memory=0, force_patch_weights=False):
        budget = self.model.model_size() // 3
        loads.append(budget)
        return original(self, lowvram_model_memory=budget, force_patch_weights=force_patch_weights)

    monkeypatch.setattr(model_management.LoadedModel, "model_load", partial_load)
    return loads


def _sample(model) -> tuple[torch.Tensor, set[bool]]:
    """The sampled latent, and whether ComfyUI ran the model partially loaded (read at each call)."""
    import nodes

    _, clip, _ = tiny_models.tiny_sd15(0)
    partially_loaded = set()

    def record(apply_model, args):
        partially_loaded.add(bool(apply_model.__self__.model_lowvram))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(record)
    positive = nodes.CLIPTextEncode().encode(clip, "a red apple")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    out = nodes.common_ksampler(model, 7, 4, 5.0, "euler", "normal", positive, negative, latent)[0]
    return out["samples"], partially_loaded


def _stock_lora(model, lora: str):
    import nodes

    return nodes.LoraLoaderModelOnly().load_lora_model_only(model, lora, 1.0)[0]


def test_klknob_after_a_lora_loader_equals_two_stock_lora_loaders_partially_loaded(
    comfy, blend_loras, fresh_model, low_vram
):
    upstream = _stock_lora(fresh_model, blend_loras.a)  # its patches are merged at cast time
    knob, knob_partial = _sample(KLKnob.execute(upstream, blend_loras.b, 1.0).result[0])
    stock, stock_partial = _sample(_stock_lora(upstream, blend_loras.b))
    assert low_vram and knob_partial == stock_partial == {True}
    torch.testing.assert_close(knob, stock, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(knob, _sample(upstream)[0], atol=1e-3)


def test_a_blend_partially_loaded_equals_the_blend_fully_loaded(comfy, blend_loras, fresh_model, monkeypatch):
    upstream = _stock_lora(fresh_model, blend_loras.c)
    inputs = lora_slots([blend_loras.a, blend_loras.b], [0.3, 0.7])
    blend = DiffusionBlend.execute(upstream, normalise_weights=True, blend_lambda=1.5, **inputs).result[0]
    full, full_partial = _sample(blend)
    from comfy import model_management

    model_management.unload_all_models()
    original = model_management.LoadedModel.model_load
    monkeypatch.setattr(
        model_management.LoadedModel,
        "model_load",
        lambda self, lowvram_model_memory=0, force_patch_weights=False: original(
            self, self.model.model_size() // 3, force_patch_weights
        ),
    )
    partial, partial_partial = _sample(blend)
    assert full_partial == {False} and partial_partial == {True}
    torch.testing.assert_close(partial, full, rtol=1e-5, atol=1e-5)
