"""What the blend nodes do to pictures: KL Knob, Diffusion Blend and the LoRA Stochastic Mixer on
the learned digits model with two LoRAs that pull in opposite directions ("thick" and "thin"
strokes, scripts/make_digit_loras.py), measured by ink (the mean darkness of the image) and by
whether the digit stays readable (nearest-centroid reader on load_digits).

    nice -n 10 .host/comfyui-0.33.0/venv/bin/python bench/bench_blend_digits.py
    nice -n 10 .host/comfyui-0.33.0/venv/bin/python bench/bench_blend_digits.py --grid docs/images/blend_digits.png

Everything goes through ComfyUI's stock nodes and the pack's node classes: the assembled digits
checkpoint by CheckpointLoaderSimple, prompts by CLIPTextEncode ("a handwritten digit 0" .. "9"),
the stock KSampler code path (nodes.common_ksampler: Euler, 8 steps, cfg 4, 64x64, a batch of
--samples noises per digit), VAE Decode. Rows: the base model, stock LoraLoaderModelOnly with each
LoRA, KL Knob (thick) at lambda 0 .. 2, Diffusion Blend at weights thick/thin 1/0 .. 0/1, and the
mixer at the same weights for several mixer seeds. Needs scikit-learn (load_digits) for the reader.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]  # as pytest's pythonpath (pyproject.toml)

import harness  # noqa: E402  (puts ComfyUI on sys.path with CPU arguments; makes `multireward` importable)
import tiny_models  # noqa: E402

DIGITS = list(range(10))
LAMBDAS = [0.0, 0.5, 1.0, 1.5, 2.0]
THICK_WEIGHTS = [1.0, 0.75, 0.5, 0.25, 0.0]  # thick's weight; thin's is 1 - it


@dataclass
class Row:
    name: str
    images: torch.Tensor  # [digits * samples, 64, 64, 3]
    ink: float = 0.0
    readable: float = 0.0  # share of images the reader reads as the prompted digit
    per_seed_ink: list[float] = field(default_factory=list)  # mixer rows: one per mixer seed


class DigitsBench:
    def __init__(self, host, samples: int, steps: int):
        import nodes
        from digit_checkpoint import write_digit_checkpoint
        from make_digit_loras import make_loras
        from sklearn.datasets import load_digits
        from support.digit_model.recognise import class_centroids

        checkpoint = write_digit_checkpoint(host.models_dir("checkpoints"))
        self.loras = [path.name for path in make_loras(host.models_dir("loras"))]  # thick, thin
        self.model, clip, self.vae = nodes.CheckpointLoaderSimple().load_checkpoint(checkpoint.name)[:3]
        encode = nodes.CLIPTextEncode().encode
        self.positives = [encode(clip, f"a handwritten digit {digit}")[0] for digit in DIGITS]
        self.negative = encode(clip, "")[0]
        self.samples, self.steps = samples, steps
        data = load_digits()
        self.centroids = class_centroids(torch.tensor(data.images), torch.tensor(data.target))

    def draw(self, model_patcher) -> torch.Tensor:
        """Every digit, `samples` noises each (seed 0), decoded: [digits * samples, 64, 64, 3]."""
        import nodes

        latent = {"samples": torch.zeros(self.samples, 4, 8, 8)}
        images = []
        for positive in self.positives:
            sampled = nodes.common_ksampler(
                model_patcher, 0, self.steps, 4.0, "euler", "normal", positive, self.negative, latent
            )[0]
            images.append(self.vae.decode(sampled["samples"]).detach().float().clamp(0, 1))
        return torch.cat(images)

    def measure(self, name: str, images: list[torch.Tensor]) -> Row:
        """Ink and readability over all images; the first set's images are the row's pictures."""
        from support.digit_model.recognise import image_to_ink, nearest_centroid

        prompted = torch.tensor(DIGITS).repeat_interleave(self.samples)
        inks, read = [], []
        for batch in images:
            ink = image_to_ink(batch)
            inks.append(ink.mean().item())
            read.append((nearest_centroid(ink, self.centroids) == prompted).float().mean().item())
        per_seed = inks if len(inks) > 1 else []
        return Row(name, images[0], statistics.mean(inks), statistics.mean(read), per_seed)


def blend_rows(bench: DigitsBench, mixer_seeds: list[int]) -> list[Row]:
    import nodes

    from multireward.pack_nodes import blend

    thick, thin = bench.loras
    base = bench.model
    stock = nodes.LoraLoaderModelOnly().load_lora_model_only

    def node_model(node_class, **inputs):
        return node_class.execute(base, **inputs).result[0]

    rows = [
        bench.measure("base model", [bench.draw(base)]),
        bench.measure("stock LoRA thick", [bench.draw(stock(base, thick, 1.0)[0])]),
        bench.measure("stock LoRA thin", [bench.draw(stock(base, thin, 1.0)[0])]),
    ]
    for blend_lambda in LAMBDAS:
        model = node_model(blend.KLKnob, lora_name=thick, blend_lambda=blend_lambda)
        rows.append(bench.measure(f"KL Knob thick, lambda {blend_lambda:g}", [bench.draw(model)]))
    for weight in THICK_WEIGHTS:
        slots = tiny_models.lora_slots([thick, thin], [weight, 1.0 - weight])
        model = node_model(blend.DiffusionBlend, **slots, normalise_weights=True, blend_lambda=1.0)
        rows.append(bench.measure(f"DB-MPA {weight:g}/{1 - weight:g}", [bench.draw(model)]))
    for weight in THICK_WEIGHTS:
        slots = tiny_models.lora_slots([thick, thin], [weight, 1.0 - weight])
        draws = [
            bench.draw(node_model(blend.LoRAStochasticMixer, **slots, blend_lambda=1.0, seed=seed))
            for seed in mixer_seeds
        ]
        rows.append(bench.measure(f"mixer {weight:g}/{1 - weight:g}", draws))
    return rows


def print_table(rows: list[Row], samples: int, steps: int, mixer_seeds: list[int]) -> None:
    print(
        f"\ndigits model, 64x64, Euler {steps} steps, cfg 4, 10 digits x {samples} noises per row; "
        f"mixer: mean over mixer seeds {mixer_seeds}"
    )
    print(f"{'row':<28} {'ink':>6} {'readable':>9}  per mixer seed ink")
    for row in rows:
        seeds = " ".join(f"{ink:.3f}" for ink in row.per_seed_ink)
        print(f"{row.name:<28} {row.ink:6.3f} {row.readable:9.0%}  {seeds}")


def save_grid(rows: list[Row], samples: int, path: Path) -> None:
    """One line per row: digits 0..9 at the first noise, the row's name on the left."""
    from PIL import Image, ImageDraw

    label_width, size = 190, 64
    grid = Image.new("RGB", (label_width + size * len(DIGITS), size * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for line, row in enumerate(rows):
        draw.text((4, line * size + size // 2 - 6), row.name, fill="black")
        for column, image in enumerate(row.images[::samples]):
            pixels = (image.numpy() * 255).round().astype("uint8")
            grid.paste(Image.fromarray(pixels), (label_width + column * size, line * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.convert("L").save(path, optimize=True)  # grey digits: a third of the RGB file's size
    print(f"grid: {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2, help="noises per digit (a batch, seed 0)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--mixer-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", type=Path, help="write a picture grid (PNG) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    host = harness.ComfyHost()
    import test_nodes

    test_nodes.register(host)
    started = time.perf_counter()
    bench = DigitsBench(host, args.samples, args.steps)
    rows = blend_rows(bench, args.mixer_seeds)
    print_table(rows, args.samples, args.steps, args.mixer_seeds)
    print(f"\n{time.perf_counter() - started:.0f} s wall")
    if args.grid:
        save_grid([row for row in rows if not row.name.startswith("stock")], args.samples, args.grid)


if __name__ == "__main__":
    main()
