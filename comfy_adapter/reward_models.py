"""Reward models under ComfyUI's model management: the model manager the adapter hands the rewards.

Rewards ask a ModelManager (rewards/model_manager.py) for dtypes, devices, loading and chunk sizes;
this one wraps each module in a ModelPatcher so ComfyUI loads and offloads it like any model. Newer
ComfyUI versions change how ModelPatchers load (e.g. a "dynamic VRAM" patcher on NVIDIA), so keeping
every such call here means one place adapts.
"""

from __future__ import annotations

import comfy.model_management as model_management
import comfy.model_patcher
import torch

from ..rewards.model_manager import chunk_for_free_memory, dtype_by_name
from .interrupt import check_interrupt


class ComfyModelManager:
    """Rewards run on ComfyUI's compute device and wait where ComfyUI parks text encoders."""

    @staticmethod
    def load_device() -> torch.device:
        """ComfyUI's compute device (CPU when started with --cpu)."""
        return model_management.get_torch_device()

    @staticmethod
    def offload_device() -> torch.device:
        return model_management.text_encoder_offload_device()

    def resolve_dtype(self, dtype_name: str) -> torch.dtype:
        """The torch dtype for a dtype choice; auto is fp16 where ComfyUI says the device runs it well."""
        if dtype_name == "auto":
            device = self.load_device()
            if model_management.is_device_cpu(device):
                return torch.float32
            return torch.float16 if model_management.should_use_fp16(device) else torch.float32
        return dtype_by_name(dtype_name)

    def manage(self, module: torch.nn.Module, dtype: torch.dtype) -> comfy.model_patcher.ModelPatcher:
        """The module in a ModelPatcher, so ComfyUI loads and offloads it like any model."""
        offload_device = self.offload_device()
        module = module.to(device=offload_device, dtype=dtype).eval().requires_grad_(False)
        return comfy.model_patcher.ModelPatcher(
            module, load_device=self.load_device(), offload_device=offload_device
        )

    def load(self, handle: comfy.model_patcher.ModelPatcher) -> tuple[torch.nn.Module, torch.device]:
        """ComfyUI puts the whole module on its load device (freeing others if needed)."""
        model_management.load_models_gpu([handle], force_full_load=True)
        return handle.model, handle.load_device

    def chunk_size(self, device: torch.device, bytes_per_image: int, wanted: int) -> int:
        return chunk_for_free_memory(model_management.get_free_memory(device), bytes_per_image, wanted)

    def check_interrupt(self) -> None:
        check_interrupt()
