"""Which rewards exist, what each needs, and how to build one from its checkpoint file.

    reward = build_reward("hpsv2", "/models/HPS_v2_compressed.pt", device="cuda:0")

builds a reward outside ComfyUI (plain torch on that device); the Reward Loader node builds the same
rewards with ComfyUI's model manager instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .base import Reward, RewardError
from .colorfulness import Colorfulness
from .jpeg import JpegCompressibility
from .model_manager import DTYPE_NAMES, ModelManager, TorchModelManager
from .sharpness import Sharpness

#: What build_reward gives a spec: checkpoint path (None for weight-free rewards), dtype name,
#: companion path (None when unused) and the model manager.
Builder = Callable[[str | None, str, str | None, ModelManager], Reward]


@dataclass(frozen=True)
class RewardSpec:
    name: str
    description: str
    build: Builder
    needs_checkpoint: bool = False
    needs_prompt: bool = False
    #: Suggested file name, shown in errors when no file was chosen.
    expected_file: str = ""
    #: What the optional second file (a companion checkpoint) is for; "" when unused.
    companion: str = ""


REWARDS: dict[str, RewardSpec] = {}

#: The pip package behind a module the neural rewards import, where the two names differ.
PACKAGE_OF_MODULE = {"open_clip": "open_clip_torch"}


def register(spec: RewardSpec) -> None:
    REWARDS[spec.name] = spec


register(
    RewardSpec(
        name="jpeg_compressibility",
        description="-(JPEG kilobytes) at quality 95; no weights. Higher means a simpler image.",
        build=lambda path, dtype, companion, manager: JpegCompressibility(),
    )
)
register(
    RewardSpec(
        name="colorfulness",
        description="Hasler-Suesstrunk colourfulness; no weights. Conflicts with JPEG compressibility.",
        build=lambda path, dtype, companion, manager: Colorfulness(),
    )
)
register(
    RewardSpec(
        name="sharpness",
        description="Variance of the Laplacian (fine detail); no weights. Conflicts with JPEG compressibility.",
        build=lambda path, dtype, companion, manager: Sharpness(),
    )
)


# Neural rewards import their model code (open_clip, transformers) only when built, so listing the
# rewards stays cheap.


def _build_laion_aesthetic(path, dtype, companion_path, manager):
    from .aesthetic import load_laion_aesthetic

    return load_laion_aesthetic(path, dtype, companion_path, manager)


def _build_hpsv2(name):
    def build(path, dtype, companion_path, manager):
        from .clip_rewards import load_hpsv2

        return load_hpsv2(path, dtype, name, manager)

    return build


def _build_pickscore(path, dtype, companion_path, manager):
    from .clip_rewards import load_pickscore

    return load_pickscore(path, dtype, manager)


def _build_imagereward(path, dtype, companion_path, manager):
    from .imagereward import load_imagereward

    return load_imagereward(path, dtype, manager)


def _build_clip_score(path, dtype, companion_path, manager):
    from .clip_rewards import load_clip_score

    return load_clip_score(path, dtype, manager)


register(
    RewardSpec(
        name="laion_aesthetic",
        description="LAION improved aesthetic predictor on CLIP ViT-L/14 (about 1-10). Head file + the CLIP "
        "tower in companion_file (or one combined file).",
        build=_build_laion_aesthetic,
        needs_checkpoint=True,
        expected_file="sac+logos+ava1-l14-linearMSE.pth",
        companion="the CLIP ViT-L/14 image tower (e.g. clip-vit-large-patch14 model.safetensors)",
    )
)
for _name, _file in (("hpsv2", "HPS_v2_compressed.pt"), ("hpsv2.1", "HPS_v2.1_compressed.pt")):
    register(
        RewardSpec(
            name=_name,
            description=f"Human Preference Score {_name[3:]} ({_file}, OpenCLIP ViT-H-14): image-prompt cosine, "
            "about 0.2-0.35.",
            build=_build_hpsv2(_name),
            needs_checkpoint=True,
            needs_prompt=True,
            expected_file=_file,
        )
    )
register(
    RewardSpec(
        name="pickscore",
        description="PickScore_v1 (CLIP-H): logit-scaled image-prompt similarity, about 18-23. A single file "
        "or the model file inside a PickScore_v1 folder.",
        build=_build_pickscore,
        needs_checkpoint=True,
        needs_prompt=True,
        expected_file="PickScore_v1/model.safetensors",
    )
)
register(
    RewardSpec(
        name="imagereward",
        description="ImageReward (BLIP), about -2 to 2; needs bert-base-uncased vocab.txt next to the weights.",
        build=_build_imagereward,
        needs_checkpoint=True,
        needs_prompt=True,
        expected_file="ImageReward/ImageReward.pt",
    )
)
register(
    RewardSpec(
        name="clip_score",
        description="CLIP score, 100 * max(cosine, 0), with any OpenCLIP/OpenAI/Hugging Face CLIP checkpoint.",
        build=_build_clip_score,
        needs_checkpoint=True,
        needs_prompt=True,
        expected_file="open_clip_model.safetensors",
    )
)


def reward_names() -> list[str]:
    return list(REWARDS)


def get_spec(name: str) -> RewardSpec:
    try:
        return REWARDS[name]
    except KeyError:
        allowed = ", ".join(REWARDS)
        raise RewardError(f"reward_name: unknown reward '{name}'; allowed: {allowed}") from None


def build_reward(
    name: str,
    path: str | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: str = "auto",
    companion_path: str | None = None,
    manager: ModelManager | None = None,
) -> Reward:
    """The reward `name` (see reward_names()) from its checkpoint file, ready to score.

    Neural rewards run on `device` in plain torch unless a model manager is given (ComfyUI's, from
    the adapter); weight-free rewards ignore path, device and dtype. `companion_path` is the second
    file some rewards take (RewardSpec.companion says which).
    """
    spec = get_spec(name)
    if spec.needs_checkpoint and not path:
        raise RewardError(
            f"reward '{name}' needs a checkpoint file (e.g. {spec.expected_file}); none was given"
        )
    if dtype not in DTYPE_NAMES:
        raise RewardError(f"dtype: unknown choice '{dtype}'; allowed: {', '.join(DTYPE_NAMES)}")
    manager = manager if manager is not None else TorchModelManager(device)
    try:
        return spec.build(path, dtype, companion_path if spec.companion else None, manager)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if not missing or missing == __name__.split(".")[0]:
            raise  # the pack itself is broken, not the environment
        raise RewardError(missing_package_message(name, missing)) from error


def missing_package_message(reward_name: str, module: str) -> str:
    """What to install when a neural reward's model code cannot be imported."""
    package = PACKAGE_OF_MODULE.get(module, module)
    return (
        f"reward '{reward_name}' needs the Python package {package} (module '{module}'), which is not "
        f"installed in the Python that runs ComfyUI ({sys.executable}). Install it with "
        f'"{sys.executable}" -m pip install {package}, then restart ComfyUI.'
    )
