"""Which rewards exist, what each needs, and how to build one from the rewards model folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import Reward, RewardError
from .colorfulness import Colorfulness
from .jpeg import JpegCompressibility
from .sharpness import Sharpness

DTYPES = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class RewardSpec:
    name: str
    description: str
    #: Builds the reward from a full weights path (None for weight-free rewards) and a dtype name.
    build: Callable[[str | None, str], Reward]
    needs_weights: bool = False
    needs_prompt: bool = False
    #: Suggested file name, shown in errors when no file was chosen.
    expected_file: str = ""
    #: What the optional second file (Reward Loader's companion_file) is for; "" when unused.
    #: Rewards that use it are built as build(path, dtype, companion_path).
    companion: str = ""


REWARDS: dict[str, RewardSpec] = {}


def register(spec: RewardSpec) -> None:
    REWARDS[spec.name] = spec


register(
    RewardSpec(
        name="jpeg_compressibility",
        description="-(JPEG kilobytes) at quality 95; no weights. Higher means a simpler image.",
        build=lambda path, dtype: JpegCompressibility(),
    )
)
register(
    RewardSpec(
        name="colorfulness",
        description="Hasler-Suesstrunk colourfulness; no weights. Conflicts with JPEG compressibility.",
        build=lambda path, dtype: Colorfulness(),
    )
)
register(
    RewardSpec(
        name="sharpness",
        description="Variance of the Laplacian (fine detail); no weights. Conflicts with JPEG compressibility.",
        build=lambda path, dtype: Sharpness(),
    )
)


# Neural rewards import their model code (open_clip, transformers) only when built, so listing the
# rewards stays cheap.


def _build_laion_aesthetic(path, dtype, companion_path=None):
    from .aesthetic import load_laion_aesthetic

    return load_laion_aesthetic(path, dtype, companion_path)


def _build_hpsv2(name):
    def build(path, dtype, companion_path=None):
        from .clip_rewards import load_hpsv2

        return load_hpsv2(path, dtype, name)

    return build


def _build_pickscore(path, dtype, companion_path=None):
    from .clip_rewards import load_pickscore

    return load_pickscore(path, dtype)


def _build_imagereward(path, dtype, companion_path=None):
    from .imagereward import load_imagereward

    return load_imagereward(path, dtype)


def _build_clip_score(path, dtype, companion_path=None):
    from .clip_rewards import load_clip_score

    return load_clip_score(path, dtype)


register(
    RewardSpec(
        name="laion_aesthetic",
        description="LAION improved aesthetic predictor on CLIP ViT-L/14 (about 1-10). Head file + the CLIP "
        "tower in companion_file (or one combined file).",
        build=_build_laion_aesthetic,
        needs_weights=True,
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
            needs_weights=True,
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
        needs_weights=True,
        needs_prompt=True,
        expected_file="PickScore_v1/model.safetensors",
    )
)
register(
    RewardSpec(
        name="imagereward",
        description="ImageReward (BLIP), about -2 to 2; needs bert-base-uncased vocab.txt next to the weights.",
        build=_build_imagereward,
        needs_weights=True,
        needs_prompt=True,
        expected_file="ImageReward/ImageReward.pt",
    )
)
register(
    RewardSpec(
        name="clip_score",
        description="CLIP score, 100 * max(cosine, 0), with any OpenCLIP/OpenAI/Hugging Face CLIP checkpoint.",
        build=_build_clip_score,
        needs_weights=True,
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
