"""Images per second of every reward on this machine's CPU (or ComfyUI's device), with tiny and
real-shaped random weights, over batch sizes. Prints a table.

    .host/comfyui-0.33.0/venv/bin/python bench/bench_rewards.py                 # quick defaults
    .host/comfyui-0.33.0/venv/bin/python bench/bench_rewards.py --skip-real --batch-sizes 1 8 32
    .host/comfyui-0.33.0/venv/bin/python bench/bench_rewards.py --rewards hpsv2 imagereward --real-batch-sizes 1 4
    .host/comfyui-0.33.0/venv/bin/python bench/bench_rewards.py --gpu --real-batch-sizes 1 8 32   # when a GPU is lent

Real-shaped weights are random (no downloads) but have the published shapes: ViT-H/14 for HPSv2
and PickScore, ViT-L/14 for CLIP score and the LAION aesthetic tower, BLIP ViT-L + BERT-base for
ImageReward. Images are 512x512, so the resize each reward does is timed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]  # as pytest's pythonpath (pyproject.toml)

import harness  # noqa: E402  (puts ComfyUI on sys.path with CPU arguments; makes `multireward` importable)

NEURAL = ("laion_aesthetic", "hpsv2", "pickscore", "clip_score", "imagereward")
WEIGHT_FREE = ("jpeg_compressibility", "colorfulness", "remote_http")
PROMPT = "a photo of a red house on a hill at sunset"

# (vision width, layers, patch, image size, embed) and (text width, layers) per shape.
CLIP_SHAPES = {
    "tiny": {"vision": (128, 2, 8, 32, 64), "text": (128, 2)},
    "vit-h-14": {"vision": (1280, 32, 14, 224, 1024), "text": (1024, 24)},
    "vit-l-14": {"vision": (1024, 24, 14, 224, 768), "text": (768, 12)},
}
BLIP_SHAPES = {"tiny": (128, 2, 32, 128, 2, 64), "blip-large": (1024, 24, 224, 768, 12, 512)}


def fill_random(module: torch.nn.Module, seed: int = 0) -> dict:
    """Materialise a meta-built module on the CPU with small random weights; its state dict."""
    module = module.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("logit_scale"):
                parameter.fill_(4.6052)
            elif parameter.ndim == 1 and name.endswith("weight"):
                parameter.normal_(1.0, 0.02, generator=generator)
            else:
                parameter.normal_(0.0, 0.02, generator=generator)
    return module.state_dict()


def clip_state(shape: str) -> dict:
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    width, layers, patch, size, embed = CLIP_SHAPES[shape]["vision"]
    text_width, text_layers = CLIP_SHAPES[shape]["text"]
    heads = 16 if width == 1280 else width // 64
    with torch.device("meta"):
        model = CLIP(
            embed,
            CLIPVisionCfg(
                layers=layers, width=width, head_width=width // heads, patch_size=patch, image_size=size
            ),
            CLIPTextCfg(
                context_length=77,
                vocab_size=49408,
                width=text_width,
                heads=text_width // 64,
                layers=text_layers,
            ),
        )
    return fill_random(model)


def build_reward(name: str, real: bool, workdir: Path):
    from multireward.comfy_adapter.reward_models import ComfyModelManager
    from multireward.rewards import aesthetic, clip_rewards

    manager = ComfyModelManager()  # the rewards as the nodes build them

    if name == "hpsv2":
        return clip_rewards.hpsv2_from_state(
            clip_state("vit-h-14" if real else "tiny"), "auto", manager=manager
        )
    if name == "pickscore":
        return clip_rewards.pickscore_from_state(
            clip_state("vit-h-14" if real else "tiny"), "auto", manager=manager
        )
    if name == "clip_score":
        return clip_rewards.clip_score_from_state(
            clip_state("vit-l-14" if real else "tiny"), "auto", quick_gelu=True, manager=manager
        )
    if name == "laion_aesthetic":
        tower = {
            k: v for k, v in clip_state("vit-l-14" if real else "tiny").items() if k.startswith("visual.")
        }
        embed = tower["visual.proj"].shape[1]
        with torch.device("meta"):
            head = torch.nn.Sequential(*aesthetic.aesthetic_head([embed, 1024, 128, 64, 16, 1]))
        head_state = {f"layers.{k}": v for k, v in fill_random(head).items()}
        return aesthetic.aesthetic_from_states(head_state, tower, "auto", manager=manager)
    if name == "imagereward":
        return build_imagereward(real, workdir)
    raise ValueError(name)


def build_imagereward(real: bool, workdir: Path):
    from multireward.comfy_adapter.reward_models import ComfyModelManager
    from multireward.rewards import imagereward as ir

    width, layers, size, text_width, text_layers, positions = BLIP_SHAPES["blip-large" if real else "tiny"]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "a",
        "photo",
        "of",
        "red",
        "house",
        "on",
        "hill",
        "at",
    ]
    vocab += [f"word{i}" for i in range(30522 - len(vocab))]
    vocab_path = workdir / "vocab.txt"
    vocab_path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    with torch.device("meta"):
        visual = ir.BlipVisionTransformer(width, layers, width // 64, 4 * width, 16, (size // 16) ** 2 + 1)
        text = ir.BlipTextEncoder(
            30524, positions, text_width, text_layers, text_width // 64, 4 * text_width, width
        )
        model = ir.ImageRewardModel(ir.Blip(visual, text), [text_width, 1024, 128, 64, 16, 1])
    return ir.imagereward_from_state(fill_random(model), str(vocab_path), "auto", manager=ComfyModelManager())


def build_weight_free(name: str):
    from multireward.rewards import registry

    if name != "remote_http":
        return registry.build_reward(name), None
    from multireward.rewards.reference_server import make_server
    from multireward.rewards.remote import RemoteHttpReward, RemoteSettings

    server = make_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    return RemoteHttpReward(RemoteSettings(url=url, batch_size=8, max_concurrent=2)), server


def images_per_second(reward, batch_size: int, repeats: int) -> float:
    images = torch.rand(batch_size, 512, 512, 3, generator=torch.Generator().manual_seed(batch_size))
    reward.score(images[:1], PROMPT)  # warm-up: loads the model onto its device
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        reward.score(images, PROMPT)
        timings.append(time.perf_counter() - started)
    return batch_size / sorted(timings)[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rewards", nargs="+", default=[*NEURAL, *WEIGHT_FREE])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16], help="for tiny/weight-free")
    parser.add_argument("--real-batch-sizes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-real", action="store_true", help="only tiny weights (fast)")
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="use ComfyUI's default device (a GPU, fp16 under dtype auto) instead of --cpu",
    )
    options = parser.parse_args()

    harness.prepare_comfy_imports()
    if options.gpu:
        from comfy.cli_args import args

        args.cpu = False  # read when comfy.model_management is first imported, just below
    harness.install_pack_alias()
    from multireward.comfy_adapter.reward_models import ComfyModelManager

    torch.set_grad_enabled(False)
    device = ComfyModelManager.load_device()
    print(
        f"device: {device}, torch threads: {torch.get_num_threads()}, images 512x512, prompt-based rewards use one prompt"
    )
    print(f"{'reward':<22}{'weights':<14}{'dtype':<10}{'batch':>6}{'images/s':>12}{'s/image':>10}")
    with tempfile.TemporaryDirectory() as workdir:
        for name in options.rewards:
            runs = (
                [("-", False, options.batch_sizes)]
                if name in WEIGHT_FREE
                else [("tiny", False, options.batch_sizes)]
            )
            if name in NEURAL and not options.skip_real:
                runs.append(("real-shaped", True, options.real_batch_sizes))
            for label, real, batch_sizes in runs:
                server = None
                if name in WEIGHT_FREE:
                    reward, server = build_weight_free(name)
                else:
                    reward = build_reward(name, real, Path(workdir))
                dtype = str(getattr(reward, "dtype", "-")).replace("torch.", "")
                for batch_size in batch_sizes:
                    rate = images_per_second(reward, batch_size, options.repeats)
                    print(
                        f"{name:<22}{label:<14}{dtype:<10}{batch_size:>6}{rate:>12.2f}{1 / rate:>10.3f}",
                        flush=True,
                    )
                if server is not None:
                    server.shutdown()
                del reward


if __name__ == "__main__":
    main()
