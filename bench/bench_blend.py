"""Time per image of the Diffusion Blend nodes against plain sampling, measured side by side in one run.

    .host/comfyui-0.33.0/venv/bin/python bench/bench_blend.py          # tiny + SD1.5-shaped 320-channel UNet
    .host/comfyui-0.33.0/venv/bin/python bench/bench_blend.py --models tiny --rounds 5
    .host/comfyui-0.33.0/venv/bin/python bench/bench_blend.py --models sd15 --size 128 --ranks 4 32

Models (random weights, nothing downloaded):
- tiny: the tests' 32-channel one-level SD1.5-shaped UNet at 64x64; fixed per-image costs weigh
  more there.
- sd15-1level: 320 channels, context 768, one level (the stock-detectable test checkpoint's UNet).
- sd15: the full SD1.5 UNet shape (320 channels, channel_mult 1/2/4/4, 2 res blocks, context 768).
LoRAs cover every linear and 1x1 conv of the UNet (the usual attention/feed-forward LoRA), at the
given ranks. Every method goes through the pack's node classes and the stock KSampler code path
(nodes.common_ksampler), as a graph would.

Each blend runs twice: as a CPU-only host runs it (the LoRA variants' merged weights kept with the
node's MODEL from the warm-up run on, so the merges are excluded from the timed runs) and, in the
rows marked +merge, as a GPU host runs it (merged anew in every run, included). Methods are
interleaved round by round so that load on a shared machine hits them alike; each ratio is
(method time / plain time in the same round), printed as the median over rounds and, in brackets,
the lowest and highest round, for wall time and for this process's CPU time (the cost of the
method even when other jobs share the cores).
Targets (issue 6): LS <= 1.1x plain; DB-MPA <= m + 0.1; KLKnob <= 2.1, and 1.0 at lambda 0 or 1.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]  # as pytest's pythonpath (pyproject.toml)

import harness  # noqa: E402  (puts ComfyUI on sys.path with CPU arguments; makes `multireward` importable)
import tiny_models  # noqa: E402


@dataclass
class BenchModel:
    name: str
    patcher: object
    context_dim: int
    image_size: int


def build_model(name: str, image_size: int) -> BenchModel:
    import comfy.supported_models

    if name == "tiny":
        return BenchModel(name, tiny_models.tiny_sd15(0)[0], 64, 64)
    unet_config = tiny_models.sd15_unet_config(320, 768)
    if name == "sd15":
        unet_config.update(tiny_models.FULL_SD15_LEVELS)
    config = comfy.supported_models.SD15(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    tiny_models._randomise(model.diffusion_model, 0, std=0.02)
    return BenchModel(name, tiny_models._model_patcher(model), 768, image_size)


def write_lora(model: BenchModel, folder: Path, rank: int, seed: int) -> str:
    """A kohya-format LoRA over every linear and 1x1 conv weight of the UNet."""
    from safetensors.torch import save_file

    shapes = [(key, weight.shape) for key, weight in model.patcher.model.state_dict().items()]
    state = tiny_models.random_unet_lora(shapes, seed, rank, scale=0.02, convs="1x1")
    file_name = f"bench_{model.name}_r{rank}_{seed}.safetensors"
    save_file(state, str(folder / file_name))
    return file_name


def blend_models(model: BenchModel, loras: list[str]) -> dict[str, object]:
    """MODEL per blend method, each a new node output (with merges of its own), built through the
    pack's node classes."""
    from multireward.pack_nodes import blend

    base = model.patcher

    def node_model(node_class, **inputs):
        return node_class.execute(base, **inputs).result[0]

    return {
        "KLKnob lambda=0": node_model(blend.KLKnob, lora_name=loras[0], blend_lambda=0.0),
        "KLKnob lambda=1": node_model(blend.KLKnob, lora_name=loras[0], blend_lambda=1.0),
        "KLKnob lambda=2": node_model(blend.KLKnob, lora_name=loras[0], blend_lambda=2.0),
        "LS m=2": node_model(
            blend.LoRAStochasticMixer,
            **tiny_models.lora_slots(loras[:2], [0.5, 0.5]),
            blend_lambda=1.0,
            seed=0,
        ),
        "DB-MPA m=2": node_model(
            blend.DiffusionBlend,
            **tiny_models.lora_slots(loras[:2], [0.5, 0.5]),
            normalise_weights=True,
            blend_lambda=1.0,
        ),
        "DB-MPA m=3": node_model(
            blend.DiffusionBlend,
            **tiny_models.lora_slots(loras[:3], [1, 1, 1]),
            normalise_weights=True,
            blend_lambda=1.0,
        ),
    }


#: Rows run as a GPU host runs them: the LoRA variants' weights merged anew in every run.
MERGE_EACH_RUN = " +merge"


def method_models(model: BenchModel, loras: list[str]) -> dict[str, object]:
    """MODEL per method: plain, the stock LoraLoader, the blends with their merged weights kept
    between runs (a CPU-only host), and again with a merge in every run (a GPU host)."""
    import nodes

    base = model.patcher
    methods = {
        "plain": base,
        "stock LoraLoader": nodes.LoraLoaderModelOnly().load_lora_model_only(base, loras[0], 1.0)[0],
        **blend_models(model, loras),
    }
    for name, merged_each_run in blend_models(model, loras).items():
        if name != "KLKnob lambda=0":  # no patch, nothing merged
            methods[name + MERGE_EACH_RUN] = merged_each_run
    return methods


@contextlib.contextmanager
def merging_each_run(method: str):
    """For a ' +merge' row, merged weights never outlive the run, whatever the host."""
    from multireward.comfy_adapter import blend_model

    keeps = blend_model.keeps_merged_weights
    if method.endswith(MERGE_EACH_RUN):
        blend_model.keeps_merged_weights = lambda model_patcher: False
    try:
        yield
    finally:
        blend_model.keeps_merged_weights = keeps


TARGETS = {
    "stock LoraLoader": 1.0,
    "KLKnob lambda=0": 1.0,
    "KLKnob lambda=1": 1.0,
    "KLKnob lambda=2": 2.1,
    "LS m=2": 1.1,
    "DB-MPA m=2": 2.1,
    "DB-MPA m=3": 3.1,
}


@dataclass
class Timing:
    wall: float
    cpu: float  # this process's CPU time: what the method costs, even when other jobs share the cores


def sample_once(model_patcher, bench: BenchModel, steps: int) -> Timing:
    import nodes

    generator = torch.Generator().manual_seed(1)
    positive = [[torch.randn(1, 77, bench.context_dim, generator=generator), {}]]
    negative = [[torch.randn(1, 77, bench.context_dim, generator=generator), {}]]
    latent = {"samples": torch.zeros(1, 4, bench.image_size // 8, bench.image_size // 8)}
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    sampled = nodes.common_ksampler(
        model_patcher, 3, steps, 5.0, "euler", "normal", positive, negative, latent
    )
    elapsed = Timing(time.perf_counter() - start_wall, time.process_time() - start_cpu)
    if not torch.isfinite(sampled[0]["samples"]).all():
        raise RuntimeError("non-finite samples")
    return elapsed


@dataclass
class Row:
    name: str
    wall: float  # median seconds per image
    wall_ratios: list[float]  # per round: method time / plain time in the same round
    cpu: float
    cpu_ratios: list[float]
    target: float | None


def bench_model(bench: BenchModel, loras: list[str], steps: int, rounds: int) -> list[Row]:
    models = method_models(bench, loras)
    for name, model in models.items():  # warm up: first loads, allocator, kernels, kept merges
        with merging_each_run(name):
            sample_once(model, bench, steps)
    times: dict[str, list[Timing]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            with merging_each_run(name):
                times[name].append(sample_once(model, bench, steps))
    rows = []
    for name in models:
        pairs = list(zip(times[name], times["plain"], strict=True))
        rows.append(
            Row(
                name,
                statistics.median(t.wall for t in times[name]),
                [t.wall / p.wall for t, p in pairs],
                statistics.median(t.cpu for t in times[name]),
                [t.cpu / p.cpu for t, p in pairs],
                TARGETS.get(name.removesuffix(MERGE_EACH_RUN)),
            )
        )
    return rows


def variant_costs(bench: BenchModel, loras: list[str], repeats: int = 5) -> tuple[float, float, int]:
    """Seconds to merge one LoRA variant's weights (once per image), seconds to swap a variant in
    and out around one model call (every call), and the number of weights the LoRA touches."""
    import comfy.model_management

    from multireward.comfy_adapter.lora import VariantWeights, load_lora_variant

    patcher = bench.patcher
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    variant = load_lora_variant(patcher, loras[0], "lora_1")
    start = time.perf_counter()
    for _ in range(repeats):
        weights = VariantWeights(patcher, [variant])
        weights.merged(0)
    merge = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats * 20):
        with weights.swapped_in(0):
            pass
    swap = (time.perf_counter() - start) / (repeats * 20)
    return merge, swap, len(variant.patches)


def print_table(title: str, rows: list[Row]) -> None:
    """Median ratio over rounds and, in brackets, the lowest and highest round."""
    print(f"\n{title}")
    print(
        f"{'method':<24} {'wall s/img':>10} {'x plain [min-max]':>19} {'cpu s/img':>10} "
        f"{'x plain [min-max]':>19} {'target':>7}"
    )
    for row in rows:
        target_text = f"{row.target:.1f}" if row.target is not None else ""
        print(
            f"{row.name:<24} {row.wall:10.3f} {_spread(row.wall_ratios):>19} {row.cpu:10.3f} "
            f"{_spread(row.cpu_ratios):>19} {target_text:>7}"
        )


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["sd15-1level", "tiny"], choices=["tiny", "sd15-1level", "sd15"]
    )
    parser.add_argument(
        "--size", type=int, default=128, help="image size in pixels for the 320-channel models"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ranks", type=int, nargs="+", default=[4])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 keeps timings stable on a shared machine)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    host = harness.ComfyHost()
    import test_nodes

    test_nodes.register(host)
    folder = host.models_dir("loras")
    import comfy.model_management

    device = comfy.model_management.get_torch_device()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    for model_name in args.models:
        bench = build_model(model_name, args.size)
        for rank in args.ranks:
            loras = [write_lora(bench, folder, rank, seed) for seed in (1, 2, 3)]
            rows = bench_model(bench, loras, args.steps, args.rounds)
            merge, swap, keys = variant_costs(bench, loras)
            print(
                f"\n{model_name}, rank {rank}: merging one LoRA variant ({keys} weights) {merge * 1000:.1f} ms "
                f"once per run (kept across runs on a CPU-only host); swapping it in and out {swap * 1000:.3f} ms per model call"
            )
            print_table(
                f"{model_name} UNet, {bench.image_size}x{bench.image_size}, {args.steps} euler steps, CFG 5, "
                f"rank-{rank} LoRAs, median of {args.rounds} rounds",
                rows,
            )


if __name__ == "__main__":
    main()
