"""Rewards that compare CLIP image and text embeddings: HPSv2 / HPSv2.1, PickScore, CLIP score.

All three run on open_clip's CLIP class, rebuilt from the checkpoint's shapes (clip_arch).
"""

from __future__ import annotations

import json
import os

import torch

from . import preprocess as pre
from .base import RewardError
from .checkpoints import load_checkpoint
from .clip_arch import build_clip, openclip_layout, vision_shape
from .model_manager import ModelManager
from .neural import NeuralReward, tokenize_for_clip


class ClipSimilarityReward(NeuralReward):
    """Cosine similarity of normalised image and text features, scaled per reward."""

    needs_prompt = True

    def __init__(
        self, model, dtype_name: str, name: str | None = None, manager: ModelManager | None = None
    ) -> None:
        self.shape = vision_shape(model.state_dict())
        super().__init__(model, dtype_name, name, manager)

    def bytes_per_image(self) -> int:
        return self.shape.activation_bytes(self.element_size())

    def encode_prompt(self, module, prompt: str, device: torch.device) -> torch.Tensor:
        tokens = tokenize_for_clip(prompt, module.context_length, device)
        return module.encode_text(tokens, normalize=True).float()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        pixels = pre.to_channels_first(images)
        return pre.normalize(pre.resize_shortest_center_crop(pixels, self.shape.image_size))

    def cosine(self, module, pixels: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        image_features = module.encode_image(pixels, normalize=True).float()
        return (image_features @ text_features.T).squeeze(-1)

    def score_pixels(self, module, pixels, context) -> torch.Tensor:
        return self.cosine(module, pixels, context)


class HpsV2(ClipSimilarityReward):
    """HPSv2: cosine of OpenCLIP ViT-H-14 features (about 0.2 to 0.35); images are fitted inside a
    square (longest side, black padding), as HPSv2's own evaluation transform does."""

    name = "hpsv2"
    expected = "an HPSv2 checkpoint (OpenCLIP ViT-H-14, e.g. HPS_v2_compressed.pt)"

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        pixels = pre.to_channels_first(images)
        return pre.normalize(pre.resize_longest_and_pad(pixels, self.shape.image_size))


class PickScore(ClipSimilarityReward):
    """PickScore_v1: logit_scale.exp() * cosine (about 18 to 23 on real images)."""

    name = "pickscore"
    expected = "a PickScore_v1 checkpoint (Hugging Face CLIP-H, model.safetensors)"

    def score_pixels(self, module, pixels, context) -> torch.Tensor:
        return module.logit_scale.float().exp() * self.cosine(module, pixels, context)


class ClipScore(ClipSimilarityReward):
    """CLIP score as torchmetrics defines it: 100 * max(cosine, 0)."""

    name = "clip_score"
    expected = "a CLIP checkpoint (OpenCLIP/OpenAI or Hugging Face layout)"

    def score_pixels(self, module, pixels, context) -> torch.Tensor:
        return 100.0 * self.cosine(module, pixels, context).clamp(min=0.0)


def hpsv2_from_state(
    state: dict, dtype_name: str, name: str = "hpsv2", path: str = "", manager: ModelManager | None = None
) -> HpsV2:
    # HPSv2 fine-tunes LAION's ViT-H-14, which uses exact GELU.
    model = build_clip(
        openclip_layout(state), quick_gelu=False, reward_label=name, expected=HpsV2.expected, path=path
    )
    return HpsV2(model, dtype_name, name, manager)


def pickscore_from_state(
    state: dict,
    dtype_name: str,
    quick_gelu: bool = False,
    path: str = "",
    manager: ModelManager | None = None,
) -> PickScore:
    model = build_clip(openclip_layout(state), quick_gelu, "pickscore", PickScore.expected, path)
    return PickScore(model, dtype_name, manager=manager)


def clip_score_from_state(
    state: dict, dtype_name: str, quick_gelu: bool, path: str = "", manager: ModelManager | None = None
) -> ClipScore:
    model = build_clip(openclip_layout(state), quick_gelu, "clip_score", ClipScore.expected, path)
    return ClipScore(model, dtype_name, manager=manager)


def load_hpsv2(path: str, dtype_name: str, name: str = "hpsv2", manager: ModelManager | None = None) -> HpsV2:
    return hpsv2_from_state(load_checkpoint(path, name), dtype_name, name, path, manager)


def load_pickscore(path: str, dtype_name: str, manager: ModelManager | None = None) -> PickScore:
    """A single weights file, or the model file inside a local copy of the PickScore_v1 folder (its
    config.json, when present, decides the activation)."""
    config = read_hf_config(path)
    quick_gelu = config.get("vision_config", {}).get("hidden_act") == "quick_gelu"
    return pickscore_from_state(load_checkpoint(path, "pickscore"), dtype_name, quick_gelu, path, manager)


def load_clip_score(path: str, dtype_name: str, manager: ModelManager | None = None) -> ClipScore:
    state = load_checkpoint(path, "clip_score")
    return clip_score_from_state(state, dtype_name, uses_quick_gelu(path), path, manager)


def uses_quick_gelu(path: str) -> bool:
    """OpenAI's CLIPs use QuickGELU, LAION's exact GELU; weights alike in shape. A Hugging Face
    config.json next to the file decides; else the file or folder name ("openai", "quickgelu")."""
    config = read_hf_config(path)
    if config:
        return config.get("vision_config", {}).get("hidden_act") == "quick_gelu"
    lowered = path.replace("\\", "/").lower().split("/")[-2:]
    return any("openai" in part or "quickgelu" in part for part in lowered)


def read_hf_config(path: str) -> dict:
    config_path = os.path.join(os.path.dirname(path), "config.json")
    if not os.path.isfile(config_path):
        return {}
    try:
        with open(config_path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise RewardError(f"cannot read '{config_path}' next to the weights: {error}") from error
