"""Reward models under ComfyUI's model management: the one place that builds ModelPatchers for
plain torch modules, loads them, and picks devices, dtypes and batch chunk sizes.

Rewards call only these helpers. Newer ComfyUI versions change how ModelPatchers load (e.g. a
"dynamic VRAM" patcher on NVIDIA), so keeping every such call here means one place adapts.
"""

from __future__ import annotations

import comfy.model_management as model_management
import comfy.model_patcher
import torch

DTYPE_BY_NAME = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Share of the free memory a reward forward may fill with activations; the rest stays for
# ComfyUI's other models and for allocator slack.
FREE_MEMORY_SHARE = 0.5
MAX_CHUNK = 64


def reward_load_device() -> torch.device:
    """Where reward models run: ComfyUI's compute device (CPU when started with --cpu)."""
    return model_management.get_torch_device()


def reward_offload_device() -> torch.device:
    """Where reward weights wait between uses: the same place ComfyUI parks text encoders."""
    return model_management.text_encoder_offload_device()


def resolve_dtype(dtype_name: str, device: torch.device | None = None) -> torch.dtype:
    """The torch dtype for a node's dtype choice; "auto" is fp16 where the device runs it well."""
    device = device if device is not None else reward_load_device()
    if dtype_name == "auto":
        if model_management.is_device_cpu(device):
            return torch.float32
        return torch.float16 if model_management.should_use_fp16(device) else torch.float32
    try:
        return DTYPE_BY_NAME[dtype_name]
    except KeyError:
        allowed = ", ".join(["auto", *DTYPE_BY_NAME])
        raise ValueError(f"dtype: unknown choice '{dtype_name}'; allowed: {allowed}") from None


def manage_module(module: torch.nn.Module, dtype: torch.dtype) -> comfy.model_patcher.ModelPatcher:
    """Wrap a plain torch module in a ModelPatcher so ComfyUI loads and offloads it like any model."""
    offload_device = reward_offload_device()
    module = module.to(device=offload_device, dtype=dtype).eval().requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(
        module, load_device=reward_load_device(), offload_device=offload_device
    )


def load_for_inference(patcher: comfy.model_patcher.ModelPatcher) -> torch.device:
    """Make ComfyUI put the whole module on its load device (freeing others if needed)."""
    model_management.load_models_gpu([patcher], force_full_load=True)
    return patcher.load_device


def module_of(patcher: comfy.model_patcher.ModelPatcher) -> torch.nn.Module:
    return patcher.model


def safe_chunk_size(device: torch.device, bytes_per_image: int, wanted: int) -> int:
    """How many images one forward may take: what fits in a share of the free memory, at most
    `wanted` (the batch size) and MAX_CHUNK, at least 1."""
    free = model_management.get_free_memory(device)
    fits = int(free * FREE_MEMORY_SHARE) // max(1, int(bytes_per_image))
    return max(1, min(wanted, MAX_CHUNK, fits))


def throw_if_interrupted() -> None:
    """Stop a long scoring loop when the user presses Cancel in ComfyUI."""
    model_management.throw_exception_if_processing_interrupted()
