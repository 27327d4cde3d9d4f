"""Where and how a neural reward's torch module runs: the one thing the rewards need from a host.

Rewards never import ComfyUI. Inside ComfyUI the adapter hands them `ComfyModelManager`
(comfy_adapter/reward_models.py), which puts every reward under ComfyUI's model management; outside
ComfyUI (a script, a Ray Serve replica, a test) `TorchModelManager` runs the module on one torch
device with nothing else to share it with.
"""

from __future__ import annotations

import os
from typing import Protocol

import torch

DTYPE_BY_NAME = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = ("auto", *DTYPE_BY_NAME)

# Share of the free memory a reward forward may fill with activations; the rest stays for other
# models and for allocator slack.
FREE_MEMORY_SHARE = 0.5
MAX_CHUNK = 64


class ModelManager(Protocol):
    """What a neural reward asks of its host, in the order it asks."""

    def resolve_dtype(self, dtype_name: str) -> torch.dtype:
        """The torch dtype for a dtype choice (DTYPE_NAMES); "auto" is the device's best."""

    def manage(self, module: torch.nn.Module, dtype: torch.dtype) -> object:
        """Take charge of a module (eval, no grad, in `dtype`); returns a handle for `load`."""

    def load(self, handle) -> tuple[torch.nn.Module, torch.device]:
        """The module ready to run, and the device it runs on."""

    def chunk_size(self, device: torch.device, bytes_per_image: int, wanted: int) -> int:
        """How many images one forward may take: at most `wanted` and MAX_CHUNK, at least 1."""

    def check_interrupt(self) -> None:
        """Raise if the host wants a long scoring loop, or a wait on a remote judge, to stop."""


def dtype_by_name(dtype_name: str) -> torch.dtype:
    try:
        return DTYPE_BY_NAME[dtype_name]
    except KeyError:
        raise ValueError(f"dtype: unknown choice '{dtype_name}'; allowed: {', '.join(DTYPE_NAMES)}") from None


def chunk_for_free_memory(free_bytes: float, bytes_per_image: int, wanted: int) -> int:
    """What fits in a share of the free memory, at most `wanted` and MAX_CHUNK, at least 1."""
    fits = int(min(free_bytes * FREE_MEMORY_SHARE, 2**62)) // max(1, int(bytes_per_image))
    return max(1, min(wanted, MAX_CHUNK, fits))


def free_memory(device: torch.device) -> float:
    """Free bytes on a CUDA device, or the host's available memory (Linux; unbounded elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return float("inf")


class TorchModelManager:
    """Plain torch: the module lives on one device for good. Used outside ComfyUI."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def resolve_dtype(self, dtype_name: str) -> torch.dtype:
        if dtype_name == "auto":
            return torch.float16 if self.device.type == "cuda" else torch.float32
        return dtype_by_name(dtype_name)

    def manage(self, module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        return module.to(device=self.device, dtype=dtype).eval().requires_grad_(False)

    def load(self, handle: torch.nn.Module) -> tuple[torch.nn.Module, torch.device]:
        return handle, self.device

    def chunk_size(self, device: torch.device, bytes_per_image: int, wanted: int) -> int:
        return chunk_for_free_memory(free_memory(device), bytes_per_image, wanted)

    def check_interrupt(self) -> None:
        pass  # nothing outside ComfyUI asks a reward to stop
