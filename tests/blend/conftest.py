"""Fixtures for the Diffusion Blend node tests: tiny LoRAs in ComfyUI's key format, and graphs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from tiny_models import lora_slots  # noqa: F401  (the blend tests import it from here)

LORA_RANK = 4


def tiny_unet_lora(seed: int, scale: float = 0.6, include_convs: bool = True) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA for every linear and conv of the tiny UNet (convs LoCon-style). The scale is
    large enough that different LoRAs give clearly different images from the random tiny model."""
    import tiny_models

    weights = tiny_models.tiny_sd15(0)[0].model.state_dict()
    shapes = [(key, weight.shape) for key, weight in weights.items()]
    return tiny_models.random_unet_lora(
        shapes, seed, LORA_RANK, scale, convs="all" if include_convs else "none"
    )


def foreign_lora() -> dict[str, torch.Tensor]:
    """A Flux-style LoRA: none of its keys exist in an SD1.5 UNet."""
    generator = torch.Generator().manual_seed(99)
    state = {}
    for block in range(2):
        name = f"lora_unet_double_blocks_{block}_img_attn_qkv"
        state[f"{name}.lora_down.weight"] = torch.randn((4, 3072), generator=generator)
        state[f"{name}.lora_up.weight"] = torch.randn((9216, 4), generator=generator)
    return state


@dataclass(frozen=True)
class BlendLoras:
    a: str
    b: str
    c: str
    foreign: str


@pytest.fixture(scope="session")
def blend_loras(comfy) -> BlendLoras:
    from safetensors.torch import save_file

    folder = comfy.models_dir("loras")
    files = {
        "blend_test_a.safetensors": tiny_unet_lora(1),
        "blend_test_b.safetensors": tiny_unet_lora(2),
        "blend_test_c.safetensors": tiny_unet_lora(3, include_convs=False),
        "blend_test_foreign.safetensors": foreign_lora(),
    }
    for name, state in files.items():
        save_file(state, str(folder / name))
    return BlendLoras(*files.keys())


def sampling_graph(
    model_nodes: dict,
    model_ref: list,
    *,
    steps: int = 4,
    sampler: str = "euler",
    scheduler: str = "normal",
    seed: int = 7,
    cfg: float = 5.0,
    batch: int = 1,
) -> dict:
    """Tiny SD1.5 (node "1"), prompts, an empty 64x64 latent, a stock KSampler ("ks") fed by
    `model_ref`, and a SaveLatent so the graph has an output."""
    graph = {
        "1": {"class_type": "MultiRewardTest_TinySD15", "inputs": {"seed": 0}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red apple", "clip": ["1", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
        "ks": {
            "class_type": "KSampler",
            "inputs": {
                "model": model_ref,
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "latent_image": ["lat", 0],
                "denoise": 1.0,
            },
        },
        # An output node that needs no decode: the tests compare latents, which fix the images.
        "out": {
            "class_type": "SaveLatent",
            "inputs": {"samples": ["ks", 0], "filename_prefix": "blend_test"},
        },
    }
    graph.update(model_nodes)
    return graph


def sampled_latent(result) -> torch.Tensor:
    return result.output("ks", 0)["samples"]


def independent_lora_model(host, lora_name: str, base=None):
    """A copy of the model (the tiny SD1.5 one unless `base` gives a MODEL) with the LoRA merged by
    ComfyUI's stock LoRA path.

    Its own module, so a reference blend can call it and the base model in the same step. Built by
    the model's own config and given the same weights (a BaseModel cannot be deep-copied since
    ComfyUI 0.4: its config answers every unknown attribute, __setstate__ included, with None).
    """
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sd
    import comfy.utils
    import tiny_models

    base = (base or tiny_models.tiny_sd15(0)[0]).model
    module = base.model_config.get_model({})
    module.load_state_dict(base.state_dict())
    device = comfy.model_management.get_torch_device()
    patcher = comfy.model_patcher.ModelPatcher(module, load_device=device, offload_device=device)
    path = host.models_dir("loras") / lora_name
    lora_state = comfy.utils.load_torch_file(str(path), safe_load=True)
    patched, _ = comfy.sd.load_lora_for_models(patcher, None, lora_state, 1.0, 0.0)
    # ModelPatcher's own per-weight merge, key by key.
    for key in patched.patches:
        patched.patch_weight_to_device(key, device_to=device)
    module.current_patcher = patched
    return module


def tiny_flow_lora(seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA in ComfyUI's generic key format ("diffusion_model.<module>.lora_up.weight") for
    every linear of the tiny SD3-shaped MMDiT."""
    import tiny_models

    model = tiny_models.tiny_flow(0)[0].model
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, weight in model.state_dict().items():
        if key.startswith("diffusion_model.") and key.endswith(".weight") and weight.ndim == 2:
            name = key[: -len(".weight")]
            out_features, in_features = weight.shape
            state[f"{name}.lora_down.weight"] = (
                torch.randn((LORA_RANK, in_features), generator=generator) * scale
            )
            state[f"{name}.lora_up.weight"] = (
                torch.randn((out_features, LORA_RANK), generator=generator) * scale / in_features**0.5
            )
    return state


@pytest.fixture(scope="session")
def flow_loras(comfy) -> tuple[str, str]:
    from safetensors.torch import save_file

    folder = comfy.models_dir("loras")
    names = ("blend_test_flow_a.safetensors", "blend_test_flow_b.safetensors")
    for seed, name in enumerate(names, start=5):
        save_file(tiny_flow_lora(seed), str(folder / name))
    return names


def custom_advanced_nodes(
    guider: dict, model_ref: list, latent: dict, *, steps: int = 4, sampler: str = "euler", out: str = "sca"
) -> dict:
    """`guider` ("guider"), a seeded noise, the sampler, the model's scheduler, `latent` ("lat") and
    SamplerCustomAdvanced (`out`)."""
    return {
        "guider": guider,
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}},
        "sampler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "sigmas": {
            "class_type": "BasicScheduler",
            "inputs": {"model": model_ref, "scheduler": "simple", "steps": steps, "denoise": 1.0},
        },
        "lat": latent,
        out: {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", 0],
                "guider": ["guider", 0],
                "sampler": ["sampler", 0],
                "sigmas": ["sigmas", 0],
                "latent_image": ["lat", 0],
            },
        },
    }


FLOW_LATENT = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}


def flow_custom_sampling_graph(
    model_nodes: dict, model_ref: list, *, steps: int = 4, sampler: str = "euler"
) -> dict:
    """Tiny SD3-shaped flow model ("f") sampled through CFGGuider + SamplerCustomAdvanced ("sca")."""
    guider = {
        "class_type": "CFGGuider",
        "inputs": {"model": model_ref, "positive": ["f", 1], "negative": ["f", 2], "cfg": 4.0},
    }
    graph = {
        "f": {"class_type": "MultiRewardTest_TinyFlow", "inputs": {"seed": 0}},
        **custom_advanced_nodes(guider, model_ref, FLOW_LATENT, steps=steps, sampler=sampler),
        "out": {
            "class_type": "SaveLatent",
            "inputs": {"samples": ["sca", 0], "filename_prefix": "blend_flow"},
        },
    }
    graph.update(model_nodes)
    return graph
