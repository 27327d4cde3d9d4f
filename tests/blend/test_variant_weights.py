"""The per-run LoRA variant weights: merged as ComfyUI merges, swapped in and always swapped back."""

from __future__ import annotations

import pytest
import torch
from conftest import independent_lora_model, lora_slots, sampling_graph

from multireward.comfy_adapter.lora import VariantWeights, load_lora_variant


def _parameters(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return dict(module.named_parameters())


def _loaded_base():
    """The tiny model loaded as itself: other tests' LoraLoader clones share its module and ComfyUI
    leaves the last one's patches merged until another clone is loaded (as a sampler run does)."""
    import comfy.model_management
    import tiny_models

    base = tiny_models.tiny_sd15(0)[0]
    comfy.model_management.load_models_gpu([base], force_full_load=True)
    return base


def test_merged_weights_equal_comfyuis_own_lora_merge(comfy, blend_loras):
    base = _loaded_base()
    variant = load_lora_variant(base, blend_loras.a, "lora_1")
    weights = VariantWeights(base, [variant])
    stock = _parameters(independent_lora_model(comfy, blend_loras.a))
    slots = weights.merged(0)
    assert len(slots) == len(variant.patches) > 0
    for key, slot in zip(variant.patches, slots, strict=True):
        assert torch.equal(slot.merged, stock[key]), key


def test_swap_restores_the_models_own_weights_even_after_an_error(comfy, blend_loras):
    base = _loaded_base()
    before = _parameters(base.model)
    weights = VariantWeights(base, [load_lora_variant(base, blend_loras.b, "lora_1")])
    with pytest.raises(RuntimeError, match="interrupted"), weights.swapped_in(0):
        changed = _parameters(base.model)
        assert any(changed[k] is not before[k] for k in before)
        raise RuntimeError("interrupted")
    after = _parameters(base.model)
    assert all(after[k] is before[k] for k in before)


def test_a_sampling_run_leaves_the_shared_model_untouched(comfy, blend_loras):
    base = _loaded_base()
    before = {k: (p, p.detach().clone()) for k, p in _parameters(base.model).items()}
    nodes = {
        "m": {
            "class_type": "MultiReward_DiffusionBlend",
            "inputs": {
                "model": ["1", 0],
                **lora_slots([blend_loras.a, blend_loras.b], [0.3, 0.7]),
                "normalise_weights": True,
                "blend_lambda": 1.0,
            },
        }
    }
    comfy.run(sampling_graph(nodes, ["m", 0], steps=2))
    after = _parameters(base.model)
    for key, (parameter, values) in before.items():
        assert after[key] is parameter and torch.equal(parameter, values), key


def test_on_a_cpu_host_a_second_run_of_the_same_model_merges_nothing(comfy, blend_loras, monkeypatch):
    import nodes
    import tiny_models

    import multireward.comfy_adapter.lora as lora_adapter
    from multireward.pack_nodes.blend import DiffusionBlend

    merges = []
    original = lora_adapter.merged_weight

    def counting_merge(*args, **kwargs):
        merges.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(lora_adapter, "merged_weight", counting_merge)
    base, clip, _ = tiny_models.tiny_sd15(0)
    model = DiffusionBlend.execute(
        base,
        **lora_slots([blend_loras.a, blend_loras.b], [0.5, 0.5]),
        normalise_weights=True,
        blend_lambda=1.0,
    ).result[0]
    positive = nodes.CLIPTextEncode().encode(clip, "an apple")[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}

    def sample():
        return nodes.common_ksampler(model, 1, 3, 4.0, "euler", "normal", positive, positive, latent)[0][
            "samples"
        ]

    first = sample()
    merged_once = len(merges)
    second = sample()
    assert merged_once > 0 and len(merges) == merged_once
    assert torch.equal(first, second)
