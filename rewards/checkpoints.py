"""Reading reward checkpoint files safely, and telling the user when a file is the wrong kind.

safetensors is preferred. `.pt`/`.pth`/`.bin`/`.ckpt` files are read only through
`torch.load(weights_only=True)`, which cannot run code hidden in a pickle; a file that needs more
than that is refused rather than trusted.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable

import torch

from .base import RewardError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Prefixes that training frameworks put in front of every key.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_checkpoint(path: str, reward_label: str) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file as a flat {key: tensor} dict on the CPU."""
    if not os.path.isfile(path):
        raise RewardError(f"reward '{reward_label}': checkpoint file '{path}' does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".safetensors":
        state = _load_safetensors(path, reward_label)
    elif suffix in PICKLE_SUFFIXES:
        state = _load_pickle_weights_only(path, reward_label)
    else:
        raise RewardError(
            f"reward '{reward_label}': cannot read '{os.path.basename(path)}'; "
            f"expected .safetensors (preferred) or one of {', '.join(PICKLE_SUFFIXES)}"
        )
    return unwrap_state_dict(state, path, reward_label)


def _load_safetensors(path: str, reward_label: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as error:
        raise RewardError(
            f"reward '{reward_label}': '{os.path.basename(path)}' is not a readable safetensors file ({error})"
        ) from error


def _load_pickle_weights_only(path: str, reward_label: str) -> dict:
    name = os.path.basename(path)
    if _is_torchscript_archive(path):
        raise RewardError(
            f"reward '{reward_label}': '{name}' is a TorchScript archive (e.g. OpenAI's original CLIP .pt), "
            "which cannot be loaded without running its code; use the safetensors or open_clip "
            "state-dict release of the same weights"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as error:
        raise RewardError(
            f"reward '{reward_label}': refused to load '{name}': it needs more than "
            "torch.load(weights_only=True) allows (it pickles Python objects, which could run code). "
            f"Convert it to safetensors with a trusted tool first. Loader said: {str(error)[:300]}"
        ) from error


def _is_torchscript_archive(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(entry.endswith("/code/") or "/code/__torch__" in entry for entry in archive.namelist())


def unwrap_state_dict(state, path: str, reward_label: str) -> dict[str, torch.Tensor]:
    """Accept {"state_dict": {...}} (HPSv2, Lightning) and "module."-prefixed keys."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise RewardError(
            f"reward '{reward_label}': '{os.path.basename(path)}' holds no tensors (got {type(state).__name__})"
        )
    tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    for prefix in WRAPPER_PREFIXES:
        if tensors and all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
    return tensors


# Key prefixes of checkpoints people commonly pick by mistake, to name them in errors.
KNOWN_LAYOUTS = (
    ("model.diffusion_model.", "a Stable Diffusion checkpoint (UNet)"),
    ("double_blocks.", "a Flux diffusion model"),
    ("lora_unet_", "a LoRA"),
    ("first_stage_model.", "a Stable Diffusion checkpoint (VAE part)"),
    ("decoder.conv_in.", "a VAE"),
    ("blip.visual_encoder.", "an ImageReward (BLIP) checkpoint"),
    ("vision_model.embeddings.", "a Hugging Face CLIP model"),
    ("text_model.embeddings.", "a Hugging Face CLIP text model"),
    ("visual.conv1.", "an OpenCLIP/OpenAI CLIP model"),
    ("transformer.resblocks.", "an OpenCLIP text tower"),
    ("layers.0.weight", "an aesthetic MLP head"),
    ("encoder.block.", "a T5 text encoder"),
)


def describe_layout(keys: Iterable[str]) -> str:
    keys = list(keys)
    for prefix, description in KNOWN_LAYOUTS:
        if any(key.startswith(prefix) for key in keys):
            return description
    sample = ", ".join(sorted(keys)[:4])
    return f"an unrecognised checkpoint (keys like {sample})"


def require_keys(
    state: dict, required: Iterable[str], reward_label: str, expected: str, path: str = ""
) -> None:
    """Raise a RewardError naming the mismatch when `state` lacks keys the reward needs."""
    missing = [key for key in required if key not in state]
    if not missing:
        return
    where = f"'{os.path.basename(path)}'" if path else "the checkpoint"
    raise RewardError(
        f"reward '{reward_label}': {where} is not {expected}: it looks like {describe_layout(state)}; "
        f"missing keys such as {', '.join(missing[:3])}. Choose the reward's own checkpoint file."
    )
