#!/usr/bin/env python3
"""Make two LoRAs of the digits model by a short fine-tune: "thick" (load_digits with its strokes
dilated) and "thin" (strokes eroded), so the blend nodes have two fine-tunes that pull the pictures
in opposite, measurable directions (ink: the mean darkness of the image).

    nice -n 10 .host/comfyui-0.33.0/venv/bin/python scripts/make_digit_loras.py /tmp/loras

writes `digits_thick.safetensors` and `digits_thin.safetensors` there: kohya-format LoRAs
(lora_unet_*.lora_down / lora_up / alpha) over the narrow UNet's linear and 1x1-conv weights,
zero-padded to the full-size keys and shapes of the assembled checkpoint
(scripts/digit_checkpoint.py), so ComfyUI's stock LoraLoaderModelOnly and the blend nodes load
them. Deterministic from --seed for a given --threads (the same bytes); about 20 s of CPU per
LoRA at the defaults (rank 4, 150 steps of batch 32). Dev-only: bench/bench_blend_digits.py uses
it; the pack never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PACK_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PACK_ROOT / "scripts")]

import train_digits  # noqa: E402  (its data, prompts, schedule and sampler)

TARGETS = ("thick", "thin")
#: LoRA file name of each target.
LORA_NAMES = {target: f"digits_{target}.safetensors" for target in TARGETS}


def _cross_pool(ink: torch.Tensor, largest: bool) -> torch.Tensor:
    """Max (or min) of each pixel and its four neighbours, paper (0) beyond the border."""
    padded = F.pad(ink, (1, 1, 1, 1))
    centre, up, down = padded[..., 1:-1, 1:-1], padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]
    left, right = padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]
    shifted = torch.stack([centre, up, down, left, right])
    return shifted.amax(0) if largest else shifted.amin(0)


def restroke(ink: torch.Tensor, target: str) -> torch.Tensor:
    """load_digits ink [N, 8, 8] in [0, 1] with its strokes thickened or thinned. At 8x8 a whole
    grey-scale dilation (erosion) is a big step, so it is taken halfway."""
    if target == "thick":
        return 0.5 * (ink + _cross_pool(ink, largest=True))
    if target == "thin":
        return 0.5 * (ink + _cross_pool(ink, largest=False))
    raise ValueError(f"target must be one of {TARGETS}, not {target!r}")


class LoRA(nn.Module):
    """Adds up @ down to a frozen Linear or 1x1 Conv2d (up starts at zero: no change at step 0)."""

    def __init__(self, base: nn.Module, rank: int, generator: torch.Generator):
        super().__init__()
        self.base = base.requires_grad_(False)
        out_features, in_features = base.weight.shape[:2]
        self.down = nn.Parameter(torch.randn(rank, in_features, generator=generator) / in_features**0.5)
        self.up = nn.Parameter(torch.zeros(out_features, rank))

    def delta(self) -> torch.Tensor:
        return self.up @ self.down

    def forward(self, x):
        weight = self.base.weight + self.delta().view_as(self.base.weight)
        if isinstance(self.base, nn.Conv2d):
            return F.conv2d(x, weight, self.base.bias)
        return F.linear(x, weight, self.base.bias)


def add_loras(unet: nn.Module, rank: int, seed: int) -> dict[str, LoRA]:
    """LoRA on every Linear and 1x1 Conv2d of the UNet, in module order; {module name: LoRA}."""
    unet.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    targets = [
        (name, module)
        for name, module in unet.named_modules()
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1))
    ]
    loras = {}
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        lora = LoRA(module, rank, generator)
        setattr(unet.get_submodule(parent_name) if parent_name else unet, child, lora)
        loras[name] = lora
    return loras


def fine_tune(unet, text, loras: dict[str, LoRA], target: str, args) -> list[float]:
    """The base training loss (train_digits), on the restroked digits, LoRA factors only."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    _, labels, images = train_digits.load_data()
    from support.digit_model.codec import ink_to_latent

    latents = ink_to_latent(restroke(images / 16.0, target))
    table, empty, _, _ = train_digits.prompt_table()
    alphas_cumprod = train_digits.sd15_schedule()
    parameters = [p for lora in loras.values() for p in (lora.down, lora.up)]
    optimiser = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
    losses = []
    for step in range(args.steps):
        batch = torch.randint(len(latents), (args.batch,), generator=generator)
        template = torch.randint(len(train_digits.PROMPT_TEMPLATES), (args.batch,), generator=generator)
        unconditional = torch.rand(args.batch, generator=generator) < train_digits.UNCONDITIONAL_SHARE
        tokens = torch.where(unconditional[:, None], empty[None], table[labels[batch], template])
        timesteps = torch.randint(train_digits.TIMESTEPS, (args.batch,), generator=generator)
        noise = torch.randn(latents[batch].shape, generator=generator)
        alpha = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alpha.sqrt() * latents[batch] + (1 - alpha).sqrt() * noise
        with torch.no_grad():
            context = text(tokens)
        error = (unet(noisy, timesteps.float(), context) - noise).square().mean(dim=(1, 2, 3))
        loss = (error * (1 / alpha.flatten()).clamp(max=train_digits.LOSS_WEIGHT_CAP)).mean()
        for group in optimiser.param_groups:
            group["lr"] = train_digits.learning_rate(step, args.steps, args.lr, warmup=20)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def mean_ink(unet, text, seed: int) -> float:
    """Mean ink of 10 digits x 4 samples from train_digits' own Euler sampler (a quick check; the
    bench measures through ComfyUI)."""
    table, empty, _, _ = train_digits.prompt_table()
    digits = torch.arange(10).repeat_interleave(4)
    latents = train_digits.sample(unet, text, table[digits, 0], empty, steps=8, seed=seed)
    return ((latents[:, 0] + 1) / 2).clamp(0, 1).mean().item()


def full_size_lora(loras: dict[str, LoRA], compact_path: Path) -> dict[str, torch.Tensor]:
    """The LoRA factors zero-padded into the assembled checkpoint's full shapes, kohya keys.
    Each narrow axis fills the full-size indices the compact file records for its weight."""
    from safetensors import safe_open
    from support.digit_model.compact import INDEX_PREFIX, read_metadata
    from support.digit_model.narrow_sd15 import UNET_PREFIX

    layout = read_metadata(compact_path)["layout"]
    with safe_open(str(compact_path), framework="pt") as handle:
        index_sets = {
            key[len(INDEX_PREFIX) :]: handle.get_tensor(key).long()
            for key in handle.keys()
            if key.startswith(INDEX_PREFIX)
        }
    state = {}
    for name, lora in loras.items():
        entry = layout[f"{UNET_PREFIX}{name}.weight"]
        full_out, full_in, *kernel = entry["shape"]
        rows, columns = (
            torch.arange(full) if axis is None else index_sets[axis]
            for axis, full in zip(entry["axes"][:2], (full_out, full_in), strict=True)
        )
        rank = lora.down.shape[0]
        up = torch.zeros(full_out, rank)
        up[rows] = lora.up.detach()
        down = torch.zeros(rank, full_in)
        down[:, columns] = lora.down.detach()
        key = "lora_unet_" + name.replace(".", "_")
        ones = (1,) * len(kernel)
        state[f"{key}.lora_up.weight"] = up.view(full_out, rank, *ones).contiguous()
        state[f"{key}.lora_down.weight"] = down.view(rank, full_in, *ones).contiguous()
        state[f"{key}.alpha"] = torch.tensor(float(rank))  # scale alpha / rank = 1
    return state


def make_lora(target: str, args) -> dict:
    from safetensors.torch import save_file
    from support.digit_model.narrow_sd15 import load_narrow

    unet, text = load_narrow(train_digits.DEFAULT_OUT)
    before = mean_ink(unet, text, args.seed + 1)
    loras = add_loras(unet, args.rank, args.seed)
    started = time.process_time()
    losses = fine_tune(unet.train(), text, loras, target, args)
    seconds = time.process_time() - started
    after = mean_ink(unet.eval(), text, args.seed + 1)
    path = Path(args.out) / LORA_NAMES[target]
    path.parent.mkdir(parents=True, exist_ok=True)
    # One sorted JSON entry: safetensors writes several metadata entries in a random order, and
    # the same seed should give the same bytes.
    made = {"target": target, "seed": args.seed, "rank": args.rank, "steps": args.steps, "lr": args.lr}
    metadata = {"multireward_digit_lora": json.dumps(made, sort_keys=True)}
    save_file(full_size_lora(loras, train_digits.DEFAULT_OUT), str(path), metadata=metadata)
    return {
        "lora": str(path),
        "cpu_seconds": round(seconds, 1),
        "loss_first_20": round(sum(losses[:20]) / 20, 4),
        "loss_last_20": round(sum(losses[-20:]) / 20, 4),
        "mean_ink_base": round(before, 4),
        "mean_ink_lora": round(after, 4),
    }


def make_loras(out: Path, seed: int = 0, steps: int = 150, rank: int = 4, threads: int = 1) -> list[Path]:
    """Both LoRAs in `out` (the bench calls this), made unless already there."""
    args = argparse.Namespace(out=out, seed=seed, steps=steps, rank=rank, threads=threads, batch=32, lr=1e-2)
    paths = [Path(out) / LORA_NAMES[target] for target in TARGETS]
    if not all(path.exists() for path in paths):
        run(args)
    return paths


def run(args) -> list[dict]:
    train_digits.setup_imports()
    torch.set_num_threads(args.threads)
    reports = []
    for target in TARGETS:
        reports.append({"target": target, **make_lora(target, args)})
        print(json.dumps(reports[-1]), flush=True)
    return reports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the LoRA files (e.g. ComfyUI/models/loras)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
