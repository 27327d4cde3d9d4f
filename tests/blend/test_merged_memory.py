"""Merged LoRA weights on a GPU host: never kept in device memory between runs, and ComfyUI's
memory manager is asked for room for them before they are merged.

No GPU here, so the device setup is simulated as far as a CPU allows: a patcher reporting what
ComfyUI reports on a --gpu-only / --highvram host (load device = offload device = the GPU), and a
model whose weights live on a non-CPU device (the meta device: shapes without memory), with
ComfyUI's free_memory recorded.
"""

from __future__ import annotations

import tiny_models
import torch
from safetensors.torch import load_file

from multireward.comfy_adapter.blend_model import BlendRun, BlendSpec
from multireward.comfy_adapter.lora import VariantWeights, load_lora_variant
from multireward.sampling_math.blend import plan_blend


def _patcher_on(load_device: str, offload_device: str, model=None):
    import comfy.model_patcher

    model = model if model is not None else tiny_models.tiny_sd15(0)[0].model
    return comfy.model_patcher.ModelPatcher(
        model, load_device=torch.device(load_device), offload_device=torch.device(offload_device)
    )


def _spec(patcher, lora: str) -> BlendSpec:
    variant = load_lora_variant(patcher, lora, "lora_name")
    return BlendSpec(label="KLKnob", variants=[variant], plan=plan_blend([1.0], 2.0))


def test_merged_weights_are_kept_between_runs_only_where_the_model_runs_on_the_cpu(comfy, blend_loras):
    for load, offload, kept in [("cpu", "cpu", True), ("cuda", "cuda", False), ("cuda", "cpu", False)]:
        patcher = _patcher_on(load, offload)
        spec = _spec(patcher, blend_loras.a)
        first, second = BlendRun(spec, [1.0, 0.0]), BlendRun(spec, [1.0, 0.0])
        weights = first.variant_weights(patcher)
        first.release()
        assert (second.variant_weights(patcher) is weights) is kept, (load, offload)
        assert (spec.kept_weights is not None) is kept, (load, offload)


def test_comfyuis_memory_manager_is_asked_for_room_before_a_merge_on_a_device(
    comfy, blend_loras, monkeypatch
):
    from comfy import model_management

    base = tiny_models.tiny_sd15(0)[0].model
    on_device = base.model_config.get_model({}).to("meta")  # a model whose weights are on a device
    patcher = _patcher_on("meta", "cpu", on_device)
    requests = []
    monkeypatch.setattr(
        model_management,
        "free_memory",
        lambda required, device, keep_loaded=(): requests.append((required, device)) or [],
    )
    weights = VariantWeights(patcher, [load_lora_variant(patcher, blend_loras.a, "lora_name")])
    weights.merged(0)
    # What the LoRA file names, counted here from the file and the model's own weights.
    lora_modules = {k.split(".")[0] for k in load_file(str(comfy.models_dir("loras") / blend_loras.a))}
    weights_of = {
        "lora_unet_" + k[len("diffusion_model.") : -len(".weight")].replace(".", "_"): w
        for k, w in on_device.state_dict().items()
        if k.startswith("diffusion_model.") and k.endswith(".weight")
    }
    expected = sum(weights_of[m].numel() * weights_of[m].element_size() for m in lora_modules)
    assert requests == [(expected + model_management.minimum_inference_memory(), torch.device("meta"))]
    assert all(slot.merged.device.type == "meta" for slot in weights.slots[0])
    weights.merged(0)
    assert len(requests) == 1  # merged once, asked once
