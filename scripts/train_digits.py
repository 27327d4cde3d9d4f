#!/usr/bin/env python3
"""Train the digits model: a small SD1.5-layout text-to-image model of scikit-learn's handwritten
digits, saved as the compact weights that scripts/digit_checkpoint.py assembles into a checkpoint
ComfyUI's CheckpointLoaderSimple loads as SD1.5 (model card: docs/digit_model.md).

    .host/comfyui-0.33.0/venv/bin/python scripts/train_digits.py            # the committed weights
    .host/comfyui-0.33.0/venv/bin/python scripts/train_digits.py --steps 200 --out /tmp/try.safetensors

Runs on a CPU (2 threads by default) in the ComfyUI test host's venv: ComfyUI's own tokenizer
turns the training prompts into token ids, and ComfyUI's own classes give the full checkpoint's
keys and shapes. Needs scikit-learn (load_digits: 1,797 8x8 digits shipped inside the package,
BSD licence, no download). Deterministic from --seed for a given --threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PACK_ROOT / "tests" / "support" / "digit_model" / "digits_sd15_compact.safetensors"

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PROMPT_TEMPLATES = [
    "a handwritten digit {digit}",
    "a handwritten {word}",
    "the digit {digit}",
    "digit {word}",
    "the number {digit}",
    "a handwritten number {word}",
    "{digit}",
]
UNCONDITIONAL_SHARE = 0.1  # empty prompts, for classifier-free guidance
TIMESTEPS = 1000
EVAL_SAMPLES_PER_DIGIT = 20


def setup_imports() -> None:
    """ComfyUI (CPU arguments, as the test harness sets it) and tests/support's digit_model."""
    sys.path.insert(0, str(PACK_ROOT / "tests"))
    import harness

    harness.prepare_comfy_imports()


def sd15_schedule() -> torch.Tensor:
    """alphas_cumprod of SD1.5's discrete schedule, as ComfyUI's ModelSamplingDiscrete builds it."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def full_shapes() -> dict[str, tuple[int, ...]]:
    """Every key and shape of the SD1.5 checkpoint, from ComfyUI's own classes."""
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.taesd.taesd
    from support.digit_model.narrow_sd15 import FULL_CHANNELS, FULL_TEXT, TEXT_PREFIX, UNET_PREFIX
    from tiny_models import sd15_unet_config

    shapes = {}
    # One level with one ResBlock and transformer, and a middle ResBlock: the narrow UNet's layout.
    config = comfy.supported_models.SD15(sd15_unet_config(FULL_CHANNELS, FULL_TEXT))
    config.set_inference_dtype(torch.float16, None)
    unet = config.get_model({}).diffusion_model
    shapes.update({UNET_PREFIX + k: tuple(v.shape) for k, v in unet.state_dict().items()})
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float16)
    prefix = "transformer.text_model."
    shapes.update(
        {
            TEXT_PREFIX + k[len(prefix) :]: tuple(v.shape)
            for k, v in clip.state_dict().items()
            if k.startswith(prefix)
        }
    )
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    shapes.update({"first_stage_model." + k: tuple(v.shape) for k, v in taesd.state_dict().items()})
    return shapes


def prompt_table() -> tuple[torch.Tensor, torch.Tensor, list[int], dict[int, int]]:
    """Token ids (ComfyUI's SD1 tokenizer, 77 long) of every template for every digit
    [10, templates, 77] and of the empty prompt [77]; the tokens that name a digit; and the
    number words' tokens mapped to their digit's token (they share its vector)."""
    import comfy.sd1_clip

    tokenizer = comfy.sd1_clip.SD1Tokenizer()

    def ids(prompt: str) -> list[int]:
        return [token for token, _weight in tokenizer.tokenize_with_weights(prompt)["l"][0]]

    table = [
        [ids(template.format(digit=digit, word=WORDS[digit])) for template in PROMPT_TEMPLATES]
        for digit in range(10)
    ]
    empty = ids("")

    def token_of(name: str) -> int:
        (token,) = set(ids(name)) - set(empty)
        return token

    synonyms = {token_of(word): token_of(str(digit)) for digit, word in enumerate(WORDS)}
    content = sorted({token_of(str(digit)) for digit in range(10)} | set(synonyms))
    return torch.tensor(table), torch.tensor(empty), content, synonyms


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """load_digits as model-space latents [N, 4, 8, 8], labels [N], and the raw 0..16 images."""
    from sklearn.datasets import load_digits
    from support.digit_model.codec import ink_to_latent

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)
    return ink_to_latent(images / 16.0), torch.tensor(digits.target), images


# Loss: noise-prediction error weighted by 1 / alphas_cumprod (the v-prediction loss, EDM's
# weighting for unit-scale data), capped at LOSS_WEIGHT_CAP. Plain noise-prediction loss gives the
# high-noise steps, where the digit is decided, almost no weight; uncapped, the last steps (weight
# up to 213), where the noise is all there is to predict, take over.
LOSS_WEIGHT_CAP = 20.0


def learning_rate(step: int, steps: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args) -> dict:
    from support.digit_model.narrow_sd15 import NarrowTextEncoder, NarrowUNet, Widths

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    latents, labels, _ = load_data()
    table, empty, content, synonyms = prompt_table()
    token_ids = sorted(set(table.flatten().tolist()) | set(empty.tolist()))
    widths = Widths(channels=args.channels)
    unet, text = NarrowUNet(widths), NarrowTextEncoder(token_ids, widths, content, synonyms)
    with torch.no_grad():  # the output starts at zero, as diffusion UNets usually do
        unet.out[2].weight.zero_()
        unet.out[2].bias.zero_()
    models = torch.nn.ModuleDict({"unet": unet, "text": text})
    ema = copy.deepcopy(models).requires_grad_(False)
    trained = [parameter for parameter in models.parameters() if parameter.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0)
    alphas_cumprod = sd15_schedule()
    started, losses = time.perf_counter(), []
    for step in range(args.steps):
        batch = torch.randint(len(latents), (args.batch,), generator=generator)
        template = torch.randint(len(PROMPT_TEMPLATES), (args.batch,), generator=generator)
        unconditional = torch.rand(args.batch, generator=generator) < UNCONDITIONAL_SHARE
        tokens = torch.where(unconditional[:, None], empty[None], table[labels[batch], template])
        timesteps = torch.randint(TIMESTEPS, (args.batch,), generator=generator)
        noise = torch.randn(latents[batch].shape, generator=generator)
        alpha = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alpha.sqrt() * latents[batch] + (1 - alpha).sqrt() * noise
        error = (unet(noisy, timesteps.float(), text(tokens)) - noise).square().mean(dim=(1, 2, 3))
        loss = (error * (1 / alpha.flatten()).clamp(max=LOSS_WEIGHT_CAP)).mean()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for averaged, current in zip(ema.parameters(), models.parameters(), strict=True):
                averaged.lerp_(current, 1 - decay)
        losses.append(loss.item())
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            recent = sum(losses[-args.log_every :]) / len(losses[-args.log_every :])
            print(
                f"step {step + 1}/{args.steps}  loss {recent:.4f}  {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    seconds = time.perf_counter() - started
    return {
        "unet": ema["unet"],
        "text": ema["text"],
        "token_ids": token_ids,
        "widths": widths,
        "train_seconds": seconds,
        "final_loss": sum(losses[-200:]) / len(losses[-200:]),
    }


@torch.no_grad()
def sample(unet, text, tokens, empty, steps: int = 20, cfg: float = 4.0, seed: int = 0) -> torch.Tensor:
    """Euler (DDIM) sampling with classifier-free guidance on SD1.5's sigmas: model-space latents."""
    alphas_cumprod = sd15_schedule()
    sigmas_all = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    timesteps = torch.linspace(TIMESTEPS - 1, 0, steps).round().long()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(tokens), 4, 8, 8, generator=generator) * sigmas_all[-1]
    context = text(torch.cat([tokens, empty[None].expand(len(tokens), -1)]))
    for i, t in enumerate(timesteps):
        sigma = sigmas_all[t]
        model_in = torch.cat([x, x]) / (sigma**2 + 1).sqrt()
        eps_cond, eps_uncond = unet(model_in, t.float().expand(2 * len(x)), context).chunk(2)
        eps = eps_uncond + cfg * (eps_cond - eps_uncond)
        denoised = x - sigma * eps
        sigma_next = sigmas_all[timesteps[i + 1]] if i + 1 < steps else 0.0
        x = denoised + sigma_next * (x - denoised) / sigma
    return x


def evaluate(unet, text, seed: int) -> dict:
    """Sample each digit with its first prompt and ask a nearest-centroid classifier what it is."""
    from support.digit_model.recognise import class_centroids, nearest_centroid

    _, labels, images = load_data()
    table, empty, _, _ = prompt_table()
    digits = torch.arange(10).repeat_interleave(EVAL_SAMPLES_PER_DIGIT)
    latents = sample(unet, text, table[digits, 0], empty, seed=seed)
    ink = ((latents[:, 0] + 1) / 2).clamp(0, 1)
    predicted = nearest_centroid(ink, class_centroids(images, labels))
    per_digit = [(predicted[digits == d] == d).float().mean().item() for d in range(10)]
    return {"nearest_centroid_accuracy": (predicted == digits).float().mean().item(), "per_digit": per_digit}


def export(result: dict, out: Path, info: dict) -> Path:
    from support.digit_model.codec import codec_index_sets, codec_tensors
    from support.digit_model.compact import write_compact
    from support.digit_model.narrow_sd15 import axes_of, index_sets

    tensors = {**axes_of(result["unet"], result["text"]), **codec_tensors()}
    sets = {**index_sets(result["widths"], result["token_ids"]), **codec_index_sets()}
    return write_compact(out, tensors, sets, full_shapes(), info)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument(
        "--channels", type=int, default=40, help="active UNet channels (of 320), a multiple of 40"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    setup_imports()
    command = "python scripts/train_digits.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = train(args)
    evaluation = evaluate(result["unet"], result["text"], seed=args.seed + 1)
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("out", "log_every")
    }
    info = {
        "command": command.strip(),
        "settings": settings,
        "prompt_templates": PROMPT_TEMPLATES,
        "unconditional_share": UNCONDITIONAL_SHARE,
        "torch": torch.__version__,
    }
    path = export(result, args.out, info)
    report = {
        "out": str(path),
        "bytes": path.stat().st_size,
        "train_seconds": round(result["train_seconds"], 1),
        "threads": args.threads,
        "final_loss": round(result["final_loss"], 5),
        **evaluation,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
