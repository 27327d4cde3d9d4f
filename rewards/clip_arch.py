"""CLIP models (OpenAI, OpenCLIP, Hugging Face layouts) rebuilt on open_clip_torch from the shapes
in a checkpoint, so one code path loads the real weights and the tiny test weights alike.

Attention head counts are not visible in weight shapes: they follow the published configs
(64-wide heads, except ViT-H/14 and ViT-bigG/14 image towers, which use 16 heads).
Whether a model uses QuickGELU (OpenAI's CLIPs) or exact GELU (LAION's) is not visible either:
each reward says which one its published model uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, _build_vision_tower

from .base import RewardError
from .checkpoints import require_keys

# Image-tower widths whose published head count is not width / 64.
VISION_HEADS_BY_WIDTH = {1280: 16, 1664: 16}
HEAD_WIDTH = 64

VISION_KEYS = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "visual.ln_post.weight")
TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "text_projection", "ln_final.weight")


@dataclass(frozen=True)
class VisionShape:
    width: int
    layers: int
    heads: int
    patch_size: int
    image_size: int
    mlp_ratio: float
    embed_dim: int

    def config(self) -> CLIPVisionCfg:
        return CLIPVisionCfg(
            layers=self.layers,
            width=self.width,
            head_width=self.width // self.heads,
            mlp_ratio=self.mlp_ratio,
            patch_size=self.patch_size,
            image_size=self.image_size,
        )

    def activation_bytes(self, element_size: int) -> int:
        """Rough peak activation memory of one image through the tower."""
        tokens = (self.image_size // self.patch_size) ** 2 + 1
        per_layer = tokens * self.width * (6 + 2 * self.mlp_ratio) + self.heads * tokens * tokens * 2
        return int(per_layer * element_size * 2)


@dataclass(frozen=True)
class TextShape:
    width: int
    layers: int
    heads: int
    context_length: int
    vocab_size: int
    mlp_ratio: float
    embed_dim: int

    def config(self) -> CLIPTextCfg:
        return CLIPTextCfg(
            context_length=self.context_length,
            vocab_size=self.vocab_size,
            width=self.width,
            heads=self.heads,
            layers=self.layers,
            mlp_ratio=self.mlp_ratio,
        )


def count_blocks(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    if not indices:
        return 0
    if indices != set(range(max(indices) + 1)):
        raise RewardError(f"checkpoint has gaps in its blocks under '{prefix}': {sorted(indices)}")
    return max(indices) + 1


def vision_shape(state: dict, prefix: str = "visual.") -> VisionShape:
    conv = state[prefix + "conv1.weight"]
    width, patch_size = conv.shape[0], conv.shape[-1]
    tokens = state[prefix + "positional_embedding"].shape[0]
    grid = round((tokens - 1) ** 0.5)
    hidden = state[prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    return VisionShape(
        width=width,
        layers=count_blocks(state, prefix + "transformer.resblocks."),
        heads=VISION_HEADS_BY_WIDTH.get(width, max(1, width // HEAD_WIDTH)),
        patch_size=patch_size,
        image_size=grid * patch_size,
        mlp_ratio=hidden / width,
        embed_dim=state[prefix + "proj"].shape[1],
    )


def text_shape(state: dict) -> TextShape:
    vocab_size, width = state["token_embedding.weight"].shape
    hidden = state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    return TextShape(
        width=width,
        layers=count_blocks(state, "transformer.resblocks."),
        heads=max(1, width // HEAD_WIDTH),
        context_length=state["positional_embedding"].shape[0],
        vocab_size=vocab_size,
        mlp_ratio=hidden / width,
        embed_dim=state["text_projection"].shape[1],
    )


def build_clip(state: dict, quick_gelu: bool, reward_label: str, expected: str, path: str = "") -> CLIP:
    """An open_clip CLIP holding `state` (OpenCLIP/OpenAI layout). Works for meta tensors too."""
    require_keys(state, VISION_KEYS + TEXT_KEYS, reward_label, expected, path)
    vision, text = vision_shape(state), text_shape(state)
    if vision.embed_dim != text.embed_dim:
        raise RewardError(
            f"reward '{reward_label}': image and text towers project to different sizes "
            f"({vision.embed_dim} vs {text.embed_dim}); is this file {expected}?"
        )
    with torch.device("meta"):
        model = CLIP(vision.embed_dim, vision.config(), text.config(), quick_gelu=quick_gelu)
    load_exact(model, state, reward_label, expected)
    return model.eval()


def build_vision_tower(state: dict, quick_gelu: bool, reward_label: str, expected: str, path: str = ""):
    """Only the image tower of a CLIP (keys under 'visual.'), as an open_clip VisionTransformer."""
    require_keys(state, VISION_KEYS, reward_label, expected, path)
    vision = vision_shape(state)
    tower_state = {key[len("visual.") :]: value for key, value in state.items() if key.startswith("visual.")}
    with torch.device("meta"):
        tower = _build_vision_tower(vision.embed_dim, vision.config(), quick_gelu=quick_gelu)
    load_exact(tower, tower_state, reward_label, expected)
    return tower.eval()


def load_exact(module: torch.nn.Module, state: dict, reward_label: str, expected: str) -> None:
    """Load every parameter of `module` from `state`; extra keys beyond the module are an error too,
    except buffers that older releases saved (position_ids, attn_mask)."""
    state = {k: v for k, v in state.items() if not k.endswith(("position_ids", "attn_mask"))}
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise RewardError(
            f"reward '{reward_label}': the weights do not fit {expected}: {str(error)[:600]}"
        ) from error
    rebuild_meta_buffers(module)


def rebuild_meta_buffers(module: torch.nn.Module) -> None:
    """Buffers that are computed, not saved (the text tower's causal mask), were built on the meta
    device with the skeleton; compute them for real unless the weights themselves are meta."""
    weights_are_real = not any(p.is_meta for p in module.parameters())
    if weights_are_real and isinstance(module, CLIP) and module.attn_mask.is_meta:
        size = module.context_length
        causal = torch.full((size, size), float("-inf")).triu_(1)  # open_clip's additive causal mask
        module.register_buffer("attn_mask", causal, persistent=False)
    leftover = [name for name, buffer in module.named_buffers() if buffer.is_meta]
    if weights_are_real and leftover:
        raise RuntimeError(f"internal: buffers left on the meta device: {leftover[:3]}")


# ---- Hugging Face CLIPModel layout -> OpenCLIP layout -------------------------------------------

HF_TOWERS = (("vision_model.", "visual.transformer.resblocks."), ("text_model.", "transformer.resblocks."))
HF_LAYER_PARTS = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}
HF_SINGLE_KEYS = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "logit_scale": "logit_scale",
}
HF_PROJECTIONS = {"visual_projection.weight": "visual.proj", "text_projection.weight": "text_projection"}


def is_hf_clip(state: dict) -> bool:
    return "vision_model.embeddings.patch_embedding.weight" in state or (
        "text_model.embeddings.token_embedding.weight" in state
    )


def hf_clip_to_openclip(state: dict) -> dict:
    """Rename a transformers CLIPModel / CLIPVisionModelWithProjection state dict to OpenCLIP keys."""
    converted = {}
    for key, value in state.items():
        if key in HF_SINGLE_KEYS:
            converted[HF_SINGLE_KEYS[key]] = value
        elif key in HF_PROJECTIONS:
            converted[HF_PROJECTIONS[key]] = value.t()  # nn.Linear weight [out, in] -> proj [in, out]
    for hf_prefix, open_prefix in HF_TOWERS:
        layers = count_blocks(state, hf_prefix + "encoder.layers.")
        for index in range(layers):
            source, target = f"{hf_prefix}encoder.layers.{index}.", f"{open_prefix}{index}."
            for part in ("weight", "bias"):
                qkv = [state[f"{source}self_attn.{name}_proj.{part}"] for name in ("q", "k", "v")]
                converted[f"{target}attn.in_proj_{part}"] = torch.cat(qkv, dim=0)
                for hf_part, open_part in HF_LAYER_PARTS.items():
                    converted[f"{target}{open_part}{part}"] = state[f"{source}{hf_part}{part}"]
    return converted


def openclip_layout(state: dict) -> dict:
    """State dict in OpenCLIP key layout, whichever of the two common layouts the file uses."""
    return hf_clip_to_openclip(state) if is_hf_clip(state) else state
