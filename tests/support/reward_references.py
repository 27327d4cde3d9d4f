"""Independent references for reward parity, and tiny weights in the real checkpoints' key layouts.

References are the published code where it can be imported harmlessly: hpsv2's vendored
open_clip and ImageReward's BLIP (both installed with --no-deps into a separate folder by
install_references.py), and transformers' CLIPModel (what PickScore's authors use). ImageReward's
BLIP was written for transformers 4; the few helpers transformers 5 moved or dropped are put back
here, each with the transformers 4 code, so the reference computes what it always did.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import harness
import numpy as np
import torch
from PIL import Image

from support import install_reward_references as install_references

# The CLIP tokenizer files of the ComfyUI host the tests run on.
COMFY_CLIP_TOKENIZER = harness.COMFYUI_DIR / "comfy" / "sd1_tokenizer"

# Tiny sizes: two heads everywhere (64-wide heads), real CLIP vocabulary and context length.
TINY_VISION = {"width": 128, "layers": 2, "patch_size": 8, "image_size": 32}
TINY_TEXT = {"width": 128, "layers": 2, "heads": 2, "context_length": 77, "vocab_size": 49408}
TINY_EMBED = 64


def _bare_package(name: str, folder: Path) -> None:
    """Register a package without running its __init__ (which imports training-only extras)."""
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = [str(folder)]
        sys.modules[name] = module


def reference_root() -> Path:
    root = install_references.install()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return root


# ---- HPSv2's own open_clip ------------------------------------------------------------------------


def hps_open_clip():
    root = reference_root()
    _bare_package("hpsv2", root / "hpsv2")
    import hpsv2.src.open_clip as hps_open_clip_module

    return hps_open_clip_module


def hps_tiny_model_and_transform(quick_gelu: bool = False, embed_dim: int = TINY_EMBED):
    """hpsv2's create_model_and_transforms with a tiny config, exactly as img_score.py calls it."""
    oc = hps_open_clip()
    from hpsv2.src.open_clip import factory

    factory._MODEL_CONFIGS["tiny-test-clip"] = {
        "embed_dim": embed_dim,
        "quick_gelu": quick_gelu,
        "vision_cfg": {**TINY_VISION, "head_width": 64},
        "text_cfg": TINY_TEXT,
    }
    model, _, preprocess_val = oc.create_model_and_transforms(
        "tiny-test-clip",
        None,
        precision="fp32",
        device="cpu",
        jit=False,
        force_quick_gelu=quick_gelu,
        light_augmentation=True,
        output_dict=True,
    )
    randomize(model)
    return model.eval(), preprocess_val, oc.get_tokenizer("ViT-H-14")


def hps_full_size_state(config_name: str = "ViT-H-14", quick_gelu: bool = False) -> dict:
    """The full key set and shapes of a published OpenCLIP model, as meta tensors."""
    hps_open_clip()
    from hpsv2.src.open_clip import factory
    from hpsv2.src.open_clip.model import CLIP

    config = dict(factory._MODEL_CONFIGS[config_name])
    with torch.device("meta"):
        model = CLIP(**config, quick_gelu=quick_gelu)
    return model.state_dict()


# ---- ImageReward's BLIP ---------------------------------------------------------------------------


def image_reward_blip():
    """ImageReward's vit.py and med.py modules, importable under transformers 5 and timm 1.x."""
    root = reference_root()
    import transformers.modeling_utils as modeling_utils
    import transformers.pytorch_utils as pytorch_utils

    for name in ("apply_chunking_to_forward", "prune_linear_layer"):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, getattr(pytorch_utils, name))
    if not hasattr(modeling_utils, "find_pruneable_heads_and_indices"):
        modeling_utils.find_pruneable_heads_and_indices = _not_used
    _fake_fairscale()
    for name, folder in (
        ("ImageReward", "ImageReward"),
        ("ImageReward.models", "ImageReward/models"),
        ("ImageReward.models.BLIP", "ImageReward/models/BLIP"),
    ):
        _bare_package(name, root / folder)
    import ImageReward.models.BLIP.med as med
    import ImageReward.models.BLIP.vit as vit

    _restore_transformers4_helpers(med.BertModel)
    return vit, med


def _not_used(*args, **kwargs):
    raise NotImplementedError("head pruning is not part of scoring")


def _fake_fairscale() -> None:
    """vit.py imports fairscale's checkpoint_wrapper; it is only used for gradient checkpointing."""
    if "fairscale.nn.checkpoint.checkpoint_activations" in sys.modules:
        return
    for name in ("fairscale", "fairscale.nn", "fairscale.nn.checkpoint"):
        sys.modules[name] = types.ModuleType(name)
    wrapper = types.ModuleType("fairscale.nn.checkpoint.checkpoint_activations")
    wrapper.checkpoint_wrapper = lambda module, **kwargs: module
    sys.modules[wrapper.__name__] = wrapper


def _restore_transformers4_helpers(bert_model_class) -> None:
    def invert_attention_mask(self, mask):  # transformers 4 ModuleUtilsMixin.invert_attention_mask
        extended = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
        extended = extended.to(torch.float32)
        return (1.0 - extended) * torch.finfo(torch.float32).min

    def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
        return [None] * num_hidden_layers

    bert_model_class.init_weights = lambda self: None  # weights are loaded right after
    bert_model_class.invert_attention_mask = invert_attention_mask
    bert_model_class.get_head_mask = get_head_mask


TINY_BERT_WORDS = [
    "a",
    "photo",
    "of",
    "cat",
    "dog",
    "red",
    "blue",
    "house",
    "on",
    "the",
    "hill",
    "##s",
    "tree",
]
BERT_SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert_vocab(path: Path) -> int:
    words = BERT_SPECIALS + TINY_BERT_WORDS
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return len(words) + 2  # + [DEC], [ENC], as BLIP's init_tokenizer adds


class ImageRewardReference(torch.nn.Module):
    """ImageReward.score written with the package's own modules (ImageReward.py's forward)."""

    MEAN = 0.16717362830052426
    STD = 1.0333394966054072

    def __init__(self, vit, med, vocab_size: int, width: int = 128, image_size: int = 32) -> None:
        super().__init__()
        self.blip = torch.nn.Module()
        self.blip.visual_encoder = vit.VisionTransformer(
            img_size=image_size, patch_size=16, embed_dim=width, depth=2, num_heads=width // 64
        )
        config = med.BertConfig(
            vocab_size=vocab_size,
            hidden_size=width,
            num_hidden_layers=2,
            num_attention_heads=width // 64,
            intermediate_size=2 * width,
            max_position_embeddings=64,
            layer_norm_eps=1e-12,
            hidden_act="gelu",
            add_cross_attention=True,
        )
        config.encoder_width = width
        self.blip.text_encoder = med.BertModel(config=config, add_pooling_layer=False)
        self.mlp = torch.nn.Module()
        self.mlp.layers = torch.nn.Sequential(
            torch.nn.Linear(width, 1024),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(1024, 128),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(64, 16),
            torch.nn.Linear(16, 1),
        )
        randomize(self)
        self.eval()

    def score(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        image_embeds = self.blip.visual_encoder(pixels)
        image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long)
        text_output = self.blip.text_encoder(
            input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            return_dict=True,
        )
        rewards = self.mlp.layers(text_output.last_hidden_state[:, 0, :].float())
        return ((rewards - self.MEAN) / self.STD).squeeze(-1)


def image_reward_checkpoint_state(reference: ImageRewardReference) -> dict:
    """ImageReward.pt's layout: the model's state dict, plus BLIP pre-training leftovers."""
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    width = reference.blip.text_encoder.config.hidden_size
    state["blip.vision_proj.weight"] = torch.randn(256, width)
    state["blip.text_proj.weight"] = torch.randn(256, width)
    return state


def imagereward_preprocess(image_size: int):
    """ImageReward.py's _transform(n_px)."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose(
        [
            Resize(image_size, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(image_size),
            lambda image: image.convert("RGB"),
            ToTensor(),
            Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )


# ---- shared helpers -------------------------------------------------------------------------------


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights that keep activations of order one through every layer (std 1.5/sqrt(fan_in)),
    so that activations run in their non-linear range: a wrong GELU variant or head count changes
    the scores far beyond the test tolerance. Norm scales near 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("logit_scale"):
                parameter.fill_(float(np.log(1 / 0.07)))
            elif parameter.ndim == 1 and name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)  # LayerNorm scales
            elif parameter.ndim >= 2:
                parameter.copy_(1.5 * noise / np.sqrt(parameter[0].numel()))
            else:
                parameter.copy_(0.1 * noise)


def random_uint8_images(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = rng.integers(0, 256, size=(1, 1, 3))
        noise = rng.integers(-60, 61, size=(height, width, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return images


def as_comfy_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """ComfyUI IMAGE batch from 8-bit arrays (what LoadImage gives for a PNG)."""
    return torch.stack([torch.from_numpy(a).float() / 255.0 for a in arrays])


def as_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array)
