"""The bundled example workflows, described compactly and written in ComfyUI's UI format.

    .host/comfyui-0.33.0/venv/bin/python scripts/example_workflows.py    # rewrites example_workflows/*.json + .jpg

Each names ComfyUI's standard SD1.5 checkpoint, which a user swaps for their own; the tests and
the demo runner swap in the tiny test checkpoint instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workflows import NodeSpec, build_ui_workflow

PACK_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = PACK_ROOT / "example_workflows"
STANDARD_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
NEGATIVE = "blurry, low quality"

AUTHORS_THREE_REWARD_ROWS = (
    "1,0,0; 0.8,0.2,0; 0.8,0,0.2; 0.6,0.4,0; 0.6,0,0.4; 0.33,0.33,0.34; 0.2,0.8,0; 0,1,0; "
    "0,0.8,0.2; 0,0.6,0.4; 0.2,0,0.8; 0,0.2,0.8; 0,0,1"
)


def sd15_front(width: int = 512, height: int = 512) -> list[NodeSpec]:
    """Checkpoint, the prompt typed once (feeding both the text encoder and the rewards), latent."""
    return [
        NodeSpec(1, "CheckpointLoaderSimple", (0, 0), {"ckpt_name": STANDARD_CHECKPOINT}, size=(320, 100)),
        NodeSpec(
            2,
            "PrimitiveStringMultiline",
            (0, 160),
            {"value": PROMPT},
            title="Prompt (typed once)",
            size=(320, 120),
        ),
        NodeSpec(3, "CLIPTextEncode", (380, 0), links={"clip": (1, 1), "text": (2, 0)}, size=(320, 80)),
        NodeSpec(
            4,
            "CLIPTextEncode",
            (380, 140),
            {"text": NEGATIVE},
            links={"clip": (1, 1)},
            title="Negative",
            size=(320, 120),
        ),
        NodeSpec(
            5,
            "EmptyLatentImage",
            (380, 320),
            {"width": width, "height": height, "batch_size": 1},
            size=(320, 110),
        ),
    ]


def reward_loaders(names: list[str], first_id: int = 20, top: int = 480) -> list[NodeSpec]:
    return [
        NodeSpec(
            first_id + k,
            "MultiReward_RewardLoader",
            (0, top + 160 * k),
            {"reward_name": name},
            size=(320, 110),
        )
        for k, name in enumerate(names)
    ]


def reward_links(names: list[str], first_id: int = 20) -> dict:
    slots = ["reward", "reward_2", "reward_3", "reward_4"]
    return {slots[k]: (first_id + k, 0) for k in range(len(names))}


def outputs_after(sampler_id: int, report_slot: int | None, prefix: str, x: int = 1180) -> list[NodeSpec]:
    nodes = [
        NodeSpec(40, "VAEDecode", (x, 0), links={"samples": (sampler_id, 0), "vae": (1, 2)}, size=(220, 50)),
        NodeSpec(
            41,
            "SaveImage",
            (x + 260, 0),
            {"filename_prefix": f"{prefix}/image"},
            links={"images": (40, 0)},
            size=(420, 300),
        ),
    ]
    if report_slot is not None:
        nodes += [
            NodeSpec(
                42,
                "MultiReward_ParetoFront",
                (x, 120),
                {"size": 768},
                links={"report": (sampler_id, report_slot), "images": (40, 0)},
                size=(300, 330),
            ),
            NodeSpec(
                43,
                "SaveImage",
                (x + 260, 360),
                {"filename_prefix": f"{prefix}/pareto"},
                links={"images": (42, 0)},
                title="Save Pareto plot",
                size=(420, 460),
            ),
            NodeSpec(
                45,
                "SaveImage",
                (x + 260, 860),
                {"filename_prefix": f"{prefix}/grid"},
                links={"images": (42, 1)},
                title="Save labelled grid",
                size=(420, 300),
            ),
            NodeSpec(
                44,
                "MultiReward_SaveReport",
                (x, 500),
                {"filename_prefix": f"{prefix}/report"},
                links={"report": (sampler_id, report_slot)},
                size=(300, 80),
            ),
        ]
    return nodes


def srsoup_sampler(
    rewards: list[str], weights: str = "", grid: int = 5, model: tuple[int, int] = (1, 0)
) -> NodeSpec:
    return NodeSpec(
        30,
        "MultiReward_SRSoupKSampler",
        (760, 0),
        {
            "seed": 42,
            "steps": 50,
            "cfg": 5.0,
            "scheduler": "normal",
            "weights": weights,
            "grid_divisions": grid,
            "mode": "srsoup",
            "candidates": 30,
            "soup_steps": 20,
            "guided_start": 0,
            "guided_end": 10000,
            "correction": "divided_by_s",
        },
        links={
            "model": model,
            "positive": (3, 0),
            "negative": (4, 0),
            "latent_image": (5, 0),
            "vae": (1, 2),
            "prompt": (2, 0),
            **reward_links(rewards),
        },
        size=(360, 700),
    )


def srsoup_two_rewards() -> list[NodeSpec]:
    # Two rewards that conflict on photographs and on the demo's grey digits alike (colourfulness
    # is zero on grey): a simple, small file against fine detail.
    rewards = ["jpeg_compressibility", "sharpness"]
    return [
        *sd15_front(),
        *reward_loaders(rewards),
        srsoup_sampler(rewards),
        *outputs_after(30, 1, "srsoup_two_rewards"),
    ]


def srsoup_three_rewards() -> list[NodeSpec]:
    rewards = ["jpeg_compressibility", "colorfulness", "sharpness"]
    return [
        *sd15_front(),
        *reward_loaders(rewards),
        srsoup_sampler(rewards, AUTHORS_THREE_REWARD_ROWS),
        *outputs_after(30, 1, "srsoup_three_rewards"),
    ]


def srsoup_sampler_custom_advanced() -> list[NodeSpec]:
    rewards = ["jpeg_compressibility", "sharpness"]
    return [
        *sd15_front(),
        *reward_loaders(rewards),
        NodeSpec(
            31,
            "MultiReward_SRSoupSampler",
            (760, 0),
            {
                "weights": "1,0; 0.75,0.25; 0.5,0.5; 0.25,0.75; 0,1",
                "mode": "srsoup",
                "candidates": 30,
                "soup_steps": 15,
                "correction": "divided_by_s",
                "guidance_seed": 1,
            },
            links={"vae": (1, 2), "prompt": (2, 0), **reward_links(rewards)},
            size=(360, 520),
        ),
        NodeSpec(
            32,
            "CFGGuider",
            (760, 560),
            {"cfg": 5.0},
            links={"model": (1, 0), "positive": (3, 0), "negative": (4, 0)},
            size=(300, 100),
        ),
        NodeSpec(
            33,
            "BasicScheduler",
            (760, 700),
            {"scheduler": "normal", "steps": 40, "denoise": 1.0},
            links={"model": (1, 0)},
            size=(300, 110),
        ),
        NodeSpec(34, "RandomNoise", (760, 850), {"noise_seed": 42}, size=(300, 80)),
        NodeSpec(
            35,
            "SamplerCustomAdvanced",
            (1180, 600),
            links={
                "noise": (34, 0),
                "guider": (32, 0),
                "sampler": (31, 0),
                "sigmas": (33, 0),
                "latent_image": (5, 0),
            },
            size=(300, 110),
        ),
        NodeSpec(
            36,
            "MultiReward_SRSoupReport",
            (1180, 760),
            links={"sampler": (31, 0), "samples": (35, 0)},
            size=(300, 200),
        ),
        *outputs_after(35, None, "srsoup_custom_advanced"),
    ]


def reward_score() -> list[NodeSpec]:
    rewards = ["jpeg_compressibility", "colorfulness", "sharpness"]
    front = sd15_front()
    front[-1].widgets["batch_size"] = 4
    return [
        *front,
        *reward_loaders(rewards),
        NodeSpec(
            30,
            "KSampler",
            (760, 0),
            {
                "seed": 42,
                "steps": 25,
                "cfg": 6.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
            links={"model": (1, 0), "positive": (3, 0), "negative": (4, 0), "latent_image": (5, 0)},
            size=(320, 270),
        ),
        NodeSpec(40, "VAEDecode", (1120, 0), links={"samples": (30, 0), "vae": (1, 2)}, size=(220, 50)),
        NodeSpec(
            45,
            "MultiReward_RewardScore",
            (1120, 100),
            links={"images": (40, 0), "prompt": (2, 0), **reward_links(rewards)},
            size=(420, 300),
        ),
        NodeSpec(
            42,
            "MultiReward_ParetoFront",
            (1120, 450),
            {"size": 512},
            links={"report": (45, 2), "images": (40, 0)},
            size=(300, 330),
        ),
    ]


LORA_A = "aesthetic_reward_lora.safetensors"
LORA_B = "pickscore_reward_lora.safetensors"


def ksampler(node_id: int, pos: tuple[int, int], model: tuple[int, int], steps: int = 30) -> NodeSpec:
    return NodeSpec(
        node_id,
        "KSampler",
        pos,
        {
            "seed": 42,
            "steps": steps,
            "cfg": 7.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
        links={"model": model, "positive": (3, 0), "negative": (4, 0), "latent_image": (5, 0)},
        size=(320, 270),
    )


def kl_knob_sweep() -> list[NodeSpec]:
    """One reward LoRA at lambda 0.5 (conservative), 1 (the LoRA itself) and 2 (extrapolated)."""
    nodes = sd15_front()
    decoded = []
    for k, strength in enumerate((0.5, 1.0, 2.0)):
        knob, sampler, decode = 20 + k, 30 + k, 40 + k
        nodes += [
            NodeSpec(
                knob,
                "MultiReward_KLKnob",
                (760, 330 * k),
                {"lora_name": LORA_A, "blend_lambda": strength},
                links={"model": (1, 0)},
                title=f"KL Knob, lambda {strength:g}",
                size=(320, 110),
            ),
            ksampler(sampler, (1120, 330 * k), (knob, 0)),
            NodeSpec(
                decode,
                "VAEDecode",
                (1480, 330 * k),
                links={"samples": (sampler, 0), "vae": (1, 2)},
                size=(220, 50),
            ),
        ]
        decoded.append(decode)
    nodes += [
        NodeSpec(
            50,
            "ImageBatch",
            (1760, 0),
            links={"image1": (decoded[0], 0), "image2": (decoded[1], 0)},
            size=(220, 50),
        ),
        NodeSpec(
            51,
            "ImageBatch",
            (1760, 120),
            links={"image1": (50, 0), "image2": (decoded[2], 0)},
            size=(220, 50),
        ),
        NodeSpec(
            52,
            "SaveImage",
            (2020, 0),
            {"filename_prefix": "kl_knob_sweep/lambda"},
            links={"images": (51, 0)},
            size=(520, 320),
        ),
    ]
    return nodes


def srsoup_on_kl_knob() -> list[NodeSpec]:
    """Both methods at once: the KL Knob pushes one reward LoRA past itself (lambda 1.5) and SRSoup
    trades two other rewards on top of that model, a front of 6 images from one noise."""
    rewards = ["jpeg_compressibility", "sharpness"]
    return [
        *sd15_front(),
        NodeSpec(
            10,
            "MultiReward_KLKnob",
            (380, 470),
            {"lora_name": LORA_A, "blend_lambda": 1.5},
            links={"model": (1, 0)},
            title="KL Knob: the aesthetic reward LoRA, lambda 1.5",
            size=(320, 110),
        ),
        *reward_loaders(rewards),
        srsoup_sampler(rewards, model=(10, 0)),
        *outputs_after(30, 1, "srsoup_on_kl_knob"),
    ]


def two_lora_slots(first: float, second: float) -> dict:
    return {
        "lora_1": LORA_A,
        "weight_1": first,
        "lora_2": LORA_B,
        "weight_2": second,
        "lora_3": "(none)",
        "lora_4": "(none)",
    }


def diffusion_blend_sampler() -> list[NodeSpec]:
    return [
        *sd15_front(),
        NodeSpec(
            30,
            "MultiReward_DiffusionBlendSampler",
            (760, 0),
            {
                "seed": 42,
                "steps": 30,
                "cfg": 7.5,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                **two_lora_slots(0.5, 0.5),
                "normalise_weights": True,
                "blend_lambda": 1.0,
            },
            links={"model": (1, 0), "positive": (3, 0), "negative": (4, 0), "latent_image": (5, 0)},
            size=(360, 560),
        ),
        NodeSpec(40, "VAEDecode", (1180, 0), links={"samples": (30, 0), "vae": (1, 2)}, size=(220, 50)),
        NodeSpec(
            41,
            "SaveImage",
            (1440, 0),
            {"filename_prefix": "diffusion_blend/image"},
            links={"images": (40, 0)},
            size=(420, 420),
        ),
        NodeSpec(
            42,
            "PreviewAny",
            (1180, 120),
            links={"source": (30, 1)},
            title="What was blended",
            size=(240, 160),
        ),
    ]


def lora_stochastic_mixer() -> list[NodeSpec]:
    return [
        *sd15_front(),
        NodeSpec(
            20,
            "MultiReward_LoRAStochasticMixer",
            (760, 0),
            {**two_lora_slots(0.7, 0.3), "blend_lambda": 1.0, "seed": 7},
            links={"model": (1, 0)},
            size=(360, 400),
        ),
        ksampler(30, (1160, 0), (20, 0), steps=40),
        NodeSpec(40, "VAEDecode", (1520, 0), links={"samples": (30, 0), "vae": (1, 2)}, size=(220, 50)),
        NodeSpec(
            41,
            "SaveImage",
            (1780, 0),
            {"filename_prefix": "lora_stochastic_mixer/image"},
            links={"images": (40, 0)},
            size=(420, 420),
        ),
        NodeSpec(
            42, "PreviewAny", (1160, 320), links={"source": (20, 1)}, title="Draw schedule", size=(300, 160)
        ),
    ]


EXAMPLES = {
    "srsoup_two_rewards": (
        srsoup_two_rewards,
        "SRSoup KSampler: a Pareto front of 6 images trading JPEG compressibility against sharpness",
    ),
    "srsoup_three_rewards": (
        srsoup_three_rewards,
        "SRSoup KSampler with three rewards and the authors' 13 weight rows",
    ),
    "srsoup_sampler_custom_advanced": (
        srsoup_sampler_custom_advanced,
        "The SRSoup SAMPLER in SamplerCustomAdvanced, with its report",
    ),
    "srsoup_on_kl_knob": (
        srsoup_on_kl_knob,
        "SRSoup on a KL Knob model: a reward LoRA extrapolated (lambda 1.5) while SRSoup trades JPEG "
        "compressibility against sharpness",
    ),
    "reward_score": (reward_score, "Score a batch of images with three rewards; plot the trade-off"),
    "kl_knob_sweep": (
        kl_knob_sweep,
        "KL Knob (DB-KLA): one reward LoRA at lambda 0.5, 1 and 2, from the same seed",
    ),
    "diffusion_blend_sampler": (
        diffusion_blend_sampler,
        "Diffusion Blend (DB-MPA): two reward LoRAs blended 50/50 at every step",
    ),
    "lora_stochastic_mixer": (
        lora_stochastic_mixer,
        "LoRA Stochastic Mixer (DB-MPA-LS): one LoRA per step, 70/30, at the cost of one model",
    ),
}


def write_examples(object_info: dict, names: list[str] | None = None) -> list[Path]:
    written = []
    for name, (describe, title) in EXAMPLES.items():
        if names and name not in names:
            continue
        workflow = build_ui_workflow(describe(), object_info, extra={"multireward_example": title})
        path = EXAMPLES_DIR / f"{name}.json"
        path.write_text(json.dumps(workflow, indent=1) + "\n")
        write_thumbnail(path.with_suffix(".jpg"), title, workflow)
        written.append(path)
    return written


def write_thumbnail(path: Path, title: str, workflow: dict) -> None:
    """A small card for the template browser: the title and the chain of node types."""
    from PIL import Image, ImageDraw, ImageFont

    card = Image.new("RGB", (512, 384), (32, 34, 40))
    draw = ImageDraw.Draw(card)
    heading = ImageFont.load_default(size=22)
    body = ImageFont.load_default(size=15)
    draw.text((20, 20), "multireward", fill=(240, 120, 80), font=heading)
    words, line, y = title.split(), "", 60
    for word in words:
        if draw.textlength(line + " " + word, font=body) > 470:
            draw.text((20, y), line.strip(), fill=(235, 235, 235), font=body)
            line, y = "", y + 22
        line += " " + word
    draw.text((20, y), line.strip(), fill=(235, 235, 235), font=body)
    types = sorted({node["type"].replace("MultiReward_", "") for node in workflow["nodes"]})
    for k, node_type in enumerate(types[:10]):
        draw.text(
            (20 + 240 * (k % 2), 150 + 22 * (k // 2)), "- " + node_type, fill=(150, 200, 255), font=body
        )
    card.save(path, quality=88)


def main() -> int:
    sys.path.insert(0, str(PACK_ROOT / "scripts"))
    from comfy_server import ComfyServer

    with ComfyServer() as server:
        object_info = server.get("/object_info")
    for path in write_examples(object_info, sys.argv[1:]):
        print(f"wrote {path.relative_to(PACK_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
