"""LAION "improved aesthetic predictor": OpenAI CLIP ViT-L/14 image embedding, L2-normalised, into
an MLP 768-1024-128-64-16-1 without activations (sac+logos+ava1-l14-linearMSE.pth). Scores are
about 1 to 10.

Where the CLIP tower comes from: the head file alone holds only the MLP. The tower is either in the
same file (a combined file: the head's `layers.*` keys next to the tower's keys) or in a second
file chosen on Reward Loader's `companion_file` input, in OpenCLIP/OpenAI layout (`visual.*`, e.g.
open_clip's ViT-L-14 openai release) or Hugging Face layout (`vision_model.*` +
`visual_projection.weight`, e.g. openai/clip-vit-large-patch14 or ComfyUI's clip_vision_l). Both
must sit in the rewards folder.
"""

from __future__ import annotations

import itertools
import re

import torch
import torch.nn.functional as F
from torch import nn

from . import preprocess as pre
from .base import RewardError
from .checkpoints import describe_layout, load_checkpoint, require_keys
from .clip_arch import build_vision_tower, hf_clip_to_openclip, is_hf_clip, vision_shape
from .model_manager import ModelManager
from .neural import NeuralReward

HEAD_LINEAR_INDICES = (0, 2, 4, 6, 7)  # nn.Sequential positions of the Linear layers (Dropouts between)
HEAD_KEYS = tuple(f"layers.{i}.weight" for i in HEAD_LINEAR_INDICES)
HEAD_EXPECTED = "a LAION aesthetic predictor head (sac+logos+ava1-l14-linearMSE: keys layers.0 ... layers.7)"
TOWER_EXPECTED = "a CLIP ViT-L/14 image tower (OpenCLIP 'visual.*' or Hugging Face 'vision_model.*' keys)"


def aesthetic_head(sizes: list[int]) -> nn.Sequential:
    """The published MLP: Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear."""
    dropouts = (0.2, 0.2, 0.1)
    layers: list[nn.Module] = []
    for index in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[index], sizes[index + 1]))
        if index < len(dropouts):
            layers.append(nn.Dropout(dropouts[index]))
    return nn.Sequential(*layers)


def head_sizes(state: dict) -> list[int]:
    weights = [state[key] for key in HEAD_KEYS]
    sizes = [weights[0].shape[1], *(w.shape[0] for w in weights)]
    for previous, weight in itertools.pairwise(weights):
        if weight.shape[1] != previous.shape[0]:
            raise RewardError(f"reward 'laion_aesthetic': head layers do not chain: sizes {sizes}")
    if sizes[-1] != 1:
        raise RewardError(f"reward 'laion_aesthetic': head ends in {sizes[-1]} outputs, expected 1")
    return sizes


class AestheticModel(nn.Module):
    def __init__(self, visual: nn.Module, layers: nn.Sequential) -> None:
        super().__init__()
        self.visual = visual
        self.layers = layers

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        embedding = self.visual(pixels).float()
        # The original normalises the embedding in numpy (float32) before the head.
        embedding = F.normalize(embedding, dim=-1).to(self.layers[0].weight.dtype)
        return self.layers(embedding).squeeze(-1)


class LaionAesthetic(NeuralReward):
    name = "laion_aesthetic"
    expected = HEAD_EXPECTED

    def __init__(self, model: AestheticModel, dtype_name: str, manager: ModelManager | None = None) -> None:
        self.shape = vision_shape({f"visual.{k}": v for k, v in model.visual.state_dict().items()})
        super().__init__(model, dtype_name, manager=manager)

    def bytes_per_image(self) -> int:
        return self.shape.activation_bytes(self.element_size())

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        pixels = pre.to_channels_first(images)
        return pre.normalize(pre.resize_shortest_center_crop(pixels, self.shape.image_size))

    def score_pixels(self, module, pixels, context) -> torch.Tensor:
        return module(pixels)


def split_tower(state: dict) -> dict:
    """The image-tower keys of a file, in OpenCLIP layout (empty when the file has none)."""
    if is_hf_clip(state):
        state = hf_clip_to_openclip(state)
    return {key: value for key, value in state.items() if key.startswith("visual.")}


def aesthetic_model(head_state: dict, tower_state: dict, path: str = "") -> AestheticModel:
    """The CLIP tower and the MLP head as one module (on the meta device if the states are meta)."""
    require_keys(head_state, HEAD_KEYS, "laion_aesthetic", HEAD_EXPECTED, path)
    sizes = head_sizes(head_state)
    # OpenAI's CLIP ViT-L/14, which the predictor was trained on, uses QuickGELU.
    tower = build_vision_tower(tower_state, True, "laion_aesthetic", TOWER_EXPECTED)
    embed_dim = vision_shape(tower_state).embed_dim
    if embed_dim != sizes[0]:
        raise RewardError(
            f"reward 'laion_aesthetic': the CLIP tower gives {embed_dim}-wide embeddings but the head "
            f"takes {sizes[0]}; the head needs CLIP ViT-L/14 (768)"
        )
    with torch.device("meta"):
        head = aesthetic_head(sizes)
    head_only = {k[len("layers.") :]: v for k, v in head_state.items() if re.match(r"layers\.\d+\.", k)}
    head.load_state_dict(head_only, strict=True, assign=True)
    return AestheticModel(tower, head)


def aesthetic_from_states(
    head_state: dict, tower_state: dict, dtype_name: str, path: str = "", manager: ModelManager | None = None
) -> LaionAesthetic:
    return LaionAesthetic(aesthetic_model(head_state, tower_state, path), dtype_name, manager)


def load_laion_aesthetic(
    path: str, dtype_name: str, companion_path: str | None = None, manager: ModelManager | None = None
) -> LaionAesthetic:
    head_state = load_checkpoint(path, "laion_aesthetic")
    require_keys(head_state, HEAD_KEYS, "laion_aesthetic", HEAD_EXPECTED, path)
    tower_state = split_tower(head_state)
    if not tower_state:
        if companion_path is None:
            raise RewardError(
                "reward 'laion_aesthetic': the head file holds no CLIP image tower; choose the CLIP "
                "ViT-L/14 weights (e.g. clip-vit-large-patch14 model.safetensors) in companion_file, "
                "or use a combined file"
            )
        companion = load_checkpoint(companion_path, "laion_aesthetic")
        tower_state = split_tower(companion)
        if not tower_state:
            raise RewardError(
                f"reward 'laion_aesthetic': companion_file '{companion_path}' is not {TOWER_EXPECTED}; "
                f"it looks like {describe_layout(companion)}"
            )
    return aesthetic_from_states(head_state, tower_state, dtype_name, path, manager)
