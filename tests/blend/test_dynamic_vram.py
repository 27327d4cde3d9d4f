"""Blends under ComfyUI's dynamic VRAM (ModelPatcherDynamic, on by default on NVIDIA GPUs since
ComfyUI 0.1x), exercised as far as a CPU allows.

Dynamic VRAM needs CUDA (comfy-aimdo), and ModelPatcherDynamic hands a CPU load device to the plain
ModelPatcher, so it cannot run here. What it does to a module can: the module keeps its weight on
the offload device and ComfyUI streams it through a VRAM buffer (`_v`); the forward pass takes the
weight ComfyUI's `resolve_cast_module_with_vbar` gives, either the copy still resident in VRAM or a
fresh transfer with the model's own patches applied (its lowvram function), and then the module's
weight functions. Each module a LoRA touches is put in that state, with the resident copy and the
transfer buffer as ComfyUI would have left them, and that real ComfyUI function is asked for the
weight while a variant is swapped in. Ground truth: ComfyUI's stock LoRA merge of the same LoRAs.
(bench/gpu_dynamic_vram.py compares whole images with and without dynamic VRAM on a GPU.)
"""

from __future__ import annotations

import pytest
import tiny_models
import torch

from multireward.comfy_adapter.lora import VariantWeights, load_lora_variant

ops = pytest.importorskip("comfy.ops")
pytestmark = pytest.mark.skipif(
    not hasattr(ops, "resolve_cast_module_with_vbar"), reason="this ComfyUI has no dynamic VRAM"
)


def _fresh_model():
    base = tiny_models.tiny_sd15(0)[0].model
    module = base.model_config.get_model({})
    module.load_state_dict(base.state_dict())
    return tiny_models._model_patcher(module)


def _with_loras(patcher, host, names: list[str]):
    import comfy.sd
    import comfy.utils

    for name in names:
        state = comfy.utils.load_torch_file(str(host.models_dir("loras") / name), safe_load=True)
        patcher = comfy.sd.load_lora_for_models(patcher, None, state, 1.0, 0.0)[0]
    return patcher


def _stock_merge(host, names: list[str]) -> dict[str, torch.Tensor]:
    """Every weight of the tiny model with the LoRAs merged by ComfyUI's own ModelPatcher."""
    patcher = _with_loras(_fresh_model(), host, names)
    for key in patcher.patches:
        patcher.patch_weight_to_device(key, device_to=torch.device("cpu"))
    return dict(patcher.model.state_dict())


def _stream(module, key: str, patches: dict, resident: bool) -> None:
    """Leave `module` as ModelPatcherDynamic and one streamed use leave it (see the module doc)."""
    import comfy.memory_management
    from comfy.model_patcher import LowVramPatch

    module._v = object()  # ComfyUI's VRAM buffer handle
    module.weight_function, module.bias_function = [], []
    module.weight_lowvram_function = LowVramPatch(key, patches) if key in patches else None
    module.bias_lowvram_function = None
    own = module.weight_lowvram_function or (lambda weight: weight)
    if resident:  # the copy ComfyUI wrote back to VRAM after the last use: the model's own weight
        module._v_weight, module._v_bias = own(module.weight.detach().clone()), module.bias
        module._prefetch = {"resident": True, "signature": None}
        return
    module.pinned = [None if t is None else t.detach().clone() for t in (module.weight, module.bias)]
    module._prefetch = {
        "resident": False,
        "signature": None,
        "needs_cast": False,
        "xfer_dest": torch.empty(comfy.memory_management.vram_aligned_size(module.pinned), dtype=torch.uint8),
        "cast_geometry": comfy.memory_management.tensors_to_geometries(module.pinned),
    }


def _weight_comfyui_computes_with(module) -> torch.Tensor:
    import comfy.memory_management

    prefetch = dict(module._prefetch)
    if not prefetch["resident"]:  # each use transfers the pinned original weight anew
        views = comfy.memory_management.interpret_gathered_like(
            prefetch["cast_geometry"], prefetch["xfer_dest"]
        )
        for view, tensor in zip(views, module.pinned, strict=True):
            if tensor is not None:
                view.copy_(tensor)
    weight, _ = ops.resolve_cast_module_with_vbar(
        module, torch.float32, torch.device("cpu"), torch.float32, None, False
    )
    module._prefetch = prefetch  # as before the use: the next use resolves the same way
    return weight.clone()


@pytest.mark.parametrize("resident", [True, False], ids=["resident in VRAM", "streamed in"])
def test_a_streamed_module_computes_with_the_variants_merged_weight(comfy, blend_loras, resident):
    from comfy.utils import get_attr

    patcher = _with_loras(_fresh_model(), comfy, [blend_loras.a])  # the model's own patches
    variant = load_lora_variant(patcher, blend_loras.b, "lora_1")
    keys = [key for key in variant.patches if key.endswith(".weight")]
    modules = {key: get_attr(patcher.model, key.rpartition(".")[0]) for key in keys}
    for key, module in modules.items():
        _stream(module, key, patcher.patches, resident)
    own = {key: _weight_comfyui_computes_with(module) for key, module in modules.items()}
    with_b = _stock_merge(comfy, [blend_loras.a, blend_loras.b])
    only_a = _stock_merge(comfy, [blend_loras.a])
    weights = VariantWeights(patcher, [variant])
    with weights.swapped_in(0):
        for key, module in modules.items():
            assert torch.equal(_weight_comfyui_computes_with(module), with_b[key]), key
            assert module.weight is not weights.slots[0][0].merged  # the streamed original is untouched
    for key, module in modules.items():
        assert torch.equal(_weight_comfyui_computes_with(module), own[key]), key
        torch.testing.assert_close(own[key], only_a[key], rtol=1e-6, atol=1e-6)
