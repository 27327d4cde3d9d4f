"""GPU check: the pack's outputs and memory with and without ComfyUI's dynamic VRAM, as a PASS/FAIL table.

    python bench/gpu_dynamic_vram.py            # a CUDA GPU, ComfyUI 0.33 at .host/comfyui-0.33.0/ComfyUI
    python bench/gpu_dynamic_vram.py --comfyui /path/to/ComfyUI-0.33.0
    python bench/gpu_dynamic_vram.py --cpu      # no GPU: checks the script (no dynamic VRAM there)

Needs ComfyUI 0.33's requirements (comfy-aimdo among them) and safetensors in the running python;
nothing is downloaded, and ComfyUI writes only to a temporary folder. Exit status 0 when every check
passes, 1 otherwise.

On a GPU it runs itself twice, in child processes: ComfyUI with dynamic VRAM (comfy-aimdo and
ModelPatcherDynamic, started as ComfyUI 0.33's main.py starts them) and with --disable-dynamic-vram
(the classic ModelPatcher). With --cpu, where ComfyUI never starts dynamic VRAM, the two runs are a
full load and a partial (lowvram) load forced on the CPU, and the memory checks are left out.

Each run builds the same SD1.5-shaped UNet from seeded random weights through ComfyUI's own loader
(comfy.sd.load_diffusion_model_state_dict, so it gets the patcher ComfyUI would give it), two
random LoRAs, random prompts, and samples: the stock KSampler, the stock LoraLoader, KL Knob at
lambda 1 and 2, Diffusion Blend 0.5/0.5, the LoRA mixer, and SRSoup (tiny settings, TAESD-shaped
VAE, colorfulness and sharpness rewards). Checks, against ground truth the pack does not compute:
- each pipeline gives the same latent in both runs (dynamic VRAM off is the reference);
- KL Knob at lambda 1 gives ComfyUI's stock LoraLoader's latent, in each run;
- every blend moves the latent well away from the plain model's (a blend silently sampling the
  base model, the failure dynamic VRAM could cause, gives 0);
- device memory, by torch's own allocator counts: a blend leaves nothing allocated after its run
  beyond what the plain run leaves, and its peak above the plain run's is within what the pack
  asked ComfyUI's memory manager for (free_memory) before merging. (main.py would also switch
  torch to cudaMallocAsync; this script keeps torch's native allocator, whose counts it reads.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COMFYUI = ROOT / ".host" / "comfyui-0.33.0" / "ComfyUI"
SAME = 1e-2  # relative L2 difference two runs of one pipeline may show (GPU kernels, fp16 merges)
MOVED = 5 * SAME  # relative L2 distance a blend must put between its image and the plain model's
# (a blend that silently samples the base model gives 0 there, and one that swaps only some
# weights lands between: MOVED well above SAME keeps the equality checks able to tell them apart)
LORA_SCALE = 2.0  # big enough that every blend moves the image by several times SAME
LEFT_OVER = 64 * 2**20  # bytes of device memory a blend may leave allocated after its run
PEAK_SLACK = 128 * 2**20  # bytes a blend's peak may exceed what it announced (allocator rounding)
BLENDS = ["stock LoraLoader", "KL Knob lambda=1", "KL Knob lambda=2", "Diffusion Blend", "LoRA mixer"]


def start_comfyui(comfyui: Path, mode: str, cpu: bool) -> None:
    """ComfyUI in this process with the pack loaded, set up as main.py would for `mode`. Dynamic
    VRAM has to be initialised before torch is imported, as main.py does."""
    sys.path[:0] = [str(comfyui), str(ROOT / "tests")]
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = cpu
    args.base_directory = tempfile.mkdtemp(prefix="multireward-gpu-check-")
    args.disable_dynamic_vram = mode != "dynamic"
    # The UNet in fp32, as on the CPU: in fp16 these random LoRAs (every linear and conv, scaled to
    # move the image well away from the plain model's) overflowed on the first GPU run, and the stock
    # LoraLoader's latent was NaN in both runs, so nothing about the blends could be compared.
    args.force_fp32 = True
    if mode == "dynamic":
        import comfy_aimdo.control

        try:  # the protocols main.py tries, newest first
            comfy_aimdo.control.init(simple_vram_headroom=None, nvml_pressure=True)
        except TypeError:
            try:
                comfy_aimdo.control.init(simple_vram_headroom=None)
            except TypeError:
                comfy_aimdo.control.init()
    import comfy.memory_management
    import comfy.model_management
    import comfy.model_patcher

    if mode == "dynamic":
        devices = comfy.model_management.get_all_torch_devices()
        try:
            started = comfy_aimdo.control.init_devices(
                (d.index, int(args.vram_headroom * 1024**3)) for d in devices
            )
        except TypeError:
            started = comfy_aimdo.control.init_devices(d.index for d in devices)
        if not started:
            raise SystemExit("dynamic VRAM: comfy-aimdo could not start on this machine")
        comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
        comfy.memory_management.aimdo_enabled = True
    import utils.extra_config  # noqa: F401  (ComfyUI's utils package, before nodes.py)

    # isort: split
    import nodes
    from support.pack_alias import install_pack_alias  # the tests' `multireward` import alias

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(ROOT))):
        raise SystemExit("ComfyUI could not load the pack")
    install_pack_alias()


def force_partial_loading() -> None:
    """ComfyUI loads every model with a budget of a third of its size (what it decides on a GPU
    short of memory; it never partially loads a model on the CPU by itself)."""
    from comfy import model_management

    original = model_management.LoadedModel.model_load

    def partial_load(self, lowvram_model_memory=0, force_patch_weights=False):
        return original(self, self.model.model_size() // 3, force_patch_weights)

    model_management.LoadedModel.model_load = partial_load


def random_unet(levels: str, device):
    """An SD1.5-shaped UNet with seeded random weights, loaded by ComfyUI's own loader."""
    import comfy.memory_management
    import comfy.ops
    import comfy.sd
    import tiny_models
    import torch
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet_config = tiny_models.sd15_unet_config(320, 768)
    if levels == "full":
        unet_config.update(tiny_models.FULL_SD15_LEVELS)
    # The checkpoint's keys and shapes, from a UNet built on the meta device with dynamic VRAM's
    # lazy weights switched off: under dynamic VRAM ComfyUI's Linear leaves its weight None until a
    # state dict is loaded, so a model built then lacks those keys and ComfyUI cannot detect it.
    lazy = comfy.memory_management.aimdo_enabled
    comfy.memory_management.aimdo_enabled = False
    try:
        unet = UNetModel(**unet_config, device="meta", operations=comfy.ops.disable_weight_init)
    finally:
        comfy.memory_management.aimdo_enabled = lazy
    shapes = unet.state_dict()
    generator = torch.Generator(device=device).manual_seed(0)
    state = {
        key: (torch.randn(value.shape, generator=generator, device=device) * 0.02).to("cpu", torch.float16)
        for key, value in shapes.items()
    }
    return comfy.sd.load_diffusion_model_state_dict(state), shapes


def write_loras(shapes) -> list[str]:
    """Two seeded random LoRAs over every linear and conv of the UNet, in ComfyUI's loras folder."""
    import folder_paths
    import tiny_models
    from safetensors.torch import save_file

    folder = Path(folder_paths.get_folder_paths("loras")[0])
    folder.mkdir(parents=True, exist_ok=True)
    weights = [(f"diffusion_model.{key}", value.shape) for key, value in shapes.items()]
    names = []
    for seed in (1, 2):
        names.append(f"gpu_check_{seed}.safetensors")
        save_file(
            tiny_models.random_unet_lora(weights, seed, 4, LORA_SCALE, convs="all"), str(folder / names[-1])
        )
    return names


def pipeline_models(model, loras: list[str]) -> dict:
    """MODEL per pipeline sampled by the stock KSampler, through the stock and the pack's nodes."""
    import nodes
    import tiny_models

    from multireward.pack_nodes.blend import DiffusionBlend, KLKnob, LoRAStochasticMixer

    slots = tiny_models.lora_slots(loras, [0.5, 0.5])
    return {
        "stock KSampler": model,
        "stock LoraLoader": nodes.LoraLoaderModelOnly().load_lora_model_only(model, loras[0], 1.0)[0],
        "KL Knob lambda=1": KLKnob.execute(model, loras[0], 1.0).result[0],
        "KL Knob lambda=2": KLKnob.execute(model, loras[0], 2.0).result[0],
        "Diffusion Blend": DiffusionBlend.execute(
            model, normalise_weights=True, blend_lambda=1.0, **slots
        ).result[0],
        "LoRA mixer": LoRAStochasticMixer.execute(model, blend_lambda=1.0, seed=0, **slots).result[0],
    }


def sample_srsoup(model, positive, negative, latent, steps: int):
    """SRSoup KSampler with tiny settings: two rewards, the two one-hot chains, four candidates."""
    import tiny_models

    from multireward.pack_nodes.srsoup import SRSoupKSampler
    from multireward.rewards.colorfulness import Colorfulness
    from multireward.rewards.sharpness import Sharpness

    output = SRSoupKSampler.execute(
        model, positive, negative, latent, tiny_models._taesd_vae(4, 2), seed=7, steps=max(2, steps // 2),
        cfg=5.0, scheduler="normal", reward=Colorfulness(), reward_2=Sharpness(), prompt="", weights="",
        grid_divisions=1, mode="srsoup", candidates=4, soup_steps=1, guided_start=0, guided_end=10000,
        correction="divided_by_s",
    )  # fmt: skip
    return output.result[0]


def record_pack_requests(requests: list[int]) -> None:
    """Every request for device memory the pack makes to ComfyUI's memory manager (free_memory,
    asked before a LoRA variant is merged), less the minimum inference memory ComfyUI adds to it."""
    import comfy.model_management as model_management

    free_memory = model_management.free_memory

    def recording(memory_required, device, *args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.endswith("comfy_adapter.lora") and device.type == "cuda":
            requests.append(int(memory_required - model_management.minimum_inference_memory()))
        return free_memory(memory_required, device, *args, **kwargs)

    model_management.free_memory = recording


def sample_measured(sample, requests: list[int]) -> tuple:
    """The pipeline's latent and, on CUDA, torch's count of allocated device memory (its own
    caching allocator, not the pack's arithmetic): peak during the run and left after it, with the
    bytes the pack announced to ComfyUI during the run."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    requests.clear()
    latent = sample()["samples"].float().cpu()
    if not cuda:
        return latent, None
    torch.cuda.synchronize()
    memory = {
        "peak": torch.cuda.max_memory_allocated(),
        "after": torch.cuda.memory_allocated(),
        "announced": sum(requests),
    }
    return latent, memory


def run_pipelines(levels: str, size: int, steps: int, unload_each: bool) -> dict:
    """Every pipeline's latent, and how ComfyUI ran each (its patcher, partial loading, seen at
    every model call). `unload_each`: every pipeline starts from an unloaded model."""
    import comfy.memory_management
    import comfy.model_management
    import torch

    model, shapes = random_unet(levels, comfy.model_management.get_torch_device())
    loading: set[bool] = set()

    def record_loading(apply_model, args):
        loading.add(bool(apply_model.__self__.model_lowvram))
        return apply_model(args["input"], args["timestep"], **args["c"])

    model = model.clone()
    model.set_model_unet_function_wrapper(record_loading)
    generator = torch.Generator().manual_seed(3)
    positive = [[torch.randn(1, 77, 768, generator=generator), {}]]
    negative = [[torch.randn(1, 77, 768, generator=generator), {}]]
    latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
    models = pipeline_models(model, write_loras(shapes))
    samplers = {
        name: _ksampler(patched, positive, negative, latent, steps) for name, patched in models.items()
    }
    samplers["SRSoup"] = lambda: sample_srsoup(model, positive, negative, latent, steps)
    requests: list[int] = []
    record_pack_requests(requests)
    outputs, partially_loaded, memory, seconds = {}, {}, {}, {}
    for name, sample in samplers.items():
        if unload_each:
            comfy.model_management.unload_all_models()
            model.detach()
        loading.clear()
        start = time.perf_counter()
        outputs[name], memory[name] = sample_measured(sample, requests)
        seconds[name] = time.perf_counter() - start
        partially_loaded[name] = sorted(loading)
    return {
        "outputs": outputs,
        "memory": memory,
        "pipeline_seconds": seconds,
        "patcher": type(model).__name__,
        "dynamic_vram": bool(getattr(comfy.memory_management, "aimdo_enabled", False)),
        "partially_loaded": partially_loaded,
    }


def _ksampler(model, positive, negative, latent, steps: int):
    import nodes

    return lambda: nodes.common_ksampler(model, 5, steps, 5.0, "euler", "normal", positive, negative, latent)[
        0
    ]


def child(args) -> None:
    start_comfyui(args.comfyui, args.child, args.cpu)
    import comfy.model_management

    if not args.cpu and comfy.model_management.get_torch_device().type != "cuda":
        raise SystemExit("no CUDA device: run with --cpu")
    if args.child == "partial":
        force_partial_loading()
    import torch

    start = time.perf_counter()
    result = run_pipelines(args.levels, args.size, args.steps, unload_each=args.child == "partial")
    result["seconds"] = time.perf_counter() - start
    torch.save(result, args.out)


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def mode_rows(runs: dict[str, dict]) -> list[tuple]:
    """Each run really ran as its name says."""
    rows = []
    for name, run in runs.items():
        if name == "dynamic":
            ok = run["dynamic_vram"] and run["patcher"] == "ModelPatcherDynamic"
            rows.append(("dynamic run: ModelPatcherDynamic with comfy-aimdo", run["patcher"], "", ok))
        elif name == "partial":
            partial = sum(True in loading for loading in run["partially_loaded"].values())
            ok = partial == len(run["partially_loaded"])
            rows.append(("partial run: every pipeline partially loaded", f"{partial}", "all", ok))
        else:
            ok = not run["dynamic_vram"] and run["patcher"] == "ModelPatcher"
            rows.append((f"{name} run: ModelPatcher, no dynamic VRAM", run["patcher"], "", ok))
    return rows


def output_rows(runs: dict[str, dict]) -> list[tuple]:
    """Ground truth for the outputs: each pipeline equals itself in the other run (dynamic VRAM off,
    or full loading); KL Knob at lambda 1 equals ComfyUI's stock LoraLoader in each run; every blend
    moved its image away from the plain model's (by far more than the equality bound)."""
    (name_a, a), (name_b, b) = runs.items()
    rows = []
    for name, run in runs.items():  # NaN would fail every bound below, but say so plainly
        finite = sum(bool(output.isfinite().all()) for output in run["outputs"].values())
        rows.append((f"latents with finite values ({name})", finite, ">=", len(run["outputs"])))
    for pipeline, output in a["outputs"].items():
        difference = relative(output, b["outputs"][pipeline])
        rows.append((f"{pipeline}: {name_a} = {name_b}", difference, "<=", SAME))
    for name, run in runs.items():
        outputs = run["outputs"]
        difference = relative(outputs["KL Knob lambda=1"], outputs["stock LoraLoader"])
        rows.append((f"KL Knob lambda=1 = stock LoraLoader ({name})", difference, "<=", SAME))
        for pipeline in BLENDS:
            moved = relative(outputs[pipeline], outputs["stock KSampler"])
            rows.append((f"{pipeline} moved from plain ({name})", moved, ">=", MOVED))
    return [
        (
            check,
            f"{value:.2e}" if isinstance(value, float) else str(value),
            f"{sign} {bound:g}",
            _holds(value, sign, bound),
        )
        for check, value, sign, bound in rows
    ]


def memory_rows(runs: dict[str, dict]) -> list[tuple]:
    """Device memory, counted by torch's allocator: a blend leaves nothing allocated after its run
    beyond what the plain model's run leaves (merged weights live for one run on a GPU), and its
    peak above the plain run's peak is no more than it announced to ComfyUI's memory manager
    (free_memory) before merging. CUDA only."""
    rows = []
    for name, run in runs.items():
        memory = run["memory"]
        plain = memory["stock KSampler"]
        if plain is None:
            continue
        for pipeline in BLENDS[1:]:
            used = memory[pipeline]
            left = used["after"] - plain["after"]
            rows.append((f"{pipeline} left after its run ({name}), MiB", left, "<=", LEFT_OVER))
            extra = used["peak"] - plain["peak"]
            bound = used["announced"] + max(PEAK_SLACK, plain["peak"] // 20)
            rows.append((f"{pipeline} peak over plain ({name}), MiB", extra, "<=", bound))
    return [
        (check, f"{value / 2**20:.0f}", f"{sign} {bound / 2**20:.0f}", _holds(value, sign, bound))
        for check, value, sign, bound in rows
    ]


def _holds(value: float, sign: str, bound: float) -> bool:
    return value <= bound if sign == "<=" else value >= bound


def print_runs(runs: dict[str, dict]) -> None:
    for name, run in runs.items():
        partial = [pipeline for pipeline, loading in run["partially_loaded"].items() if True in loading]
        print(
            f"{name} run: {run['patcher']}, dynamic VRAM {run['dynamic_vram']}, {run['seconds']:.1f} s from "
            f"building the model to the last latent; partially loaded: {', '.join(partial) or 'none'}"
        )
        print(
            "  seconds per pipeline: " + ", ".join(f"{k} {v:.1f}" for k, v in run["pipeline_seconds"].items())
        )
        plain = run["memory"]["stock KSampler"]
        if plain is not None:
            print("  device memory (torch allocator), MiB: pipeline, peak, left after, announced by the pack")
            for pipeline, used in run["memory"].items():
                print(
                    f"  {pipeline:<18} {used['peak'] / 2**20:8.0f} {used['after'] / 2**20:8.0f} "
                    f"{used['announced'] / 2**20:8.0f}"
                )


def compare(runs: dict[str, dict]) -> bool:
    print_runs(runs)
    rows = mode_rows(runs) + output_rows(runs) + memory_rows(runs)
    width = max(len(row[0]) for row in rows)
    print(f"\n{'check':<{width}}  {'value':>9}  {'bound':>11}  result")
    for check, value, bound, passed in rows:
        print(f"{check:<{width}}  {value:>9}  {bound:>11}  {'PASS' if passed else 'FAIL'}")
    failed = sum(not row[3] for row in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} checks passed" + (f"; {failed} FAILED" if failed else ""))
    return failed == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--comfyui", type=Path, default=Path(os.environ.get("MULTIREWARD_COMFYUI", DEFAULT_COMFYUI))
    )
    parser.add_argument("--cpu", action="store_true", help="no GPU: compare a full and a forced partial load")
    parser.add_argument(
        "--levels",
        choices=["full", "one"],
        default=None,
        help="UNet levels (default: full on a GPU, one on a CPU)",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="image size (default: 512 on a GPU, 64 on a CPU)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="sampling steps (default: 8 on a GPU, 4 on a CPU)"
    )
    parser.add_argument("--child", choices=["dynamic", "classic", "full", "partial"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.levels = args.levels or ("one" if args.cpu else "full")
    args.size = args.size or (64 if args.cpu else 512)
    args.steps = args.steps or (4 if args.cpu else 8)
    if args.child:
        child(args)
        return 0
    modes = ["full", "partial"] if args.cpu else ["dynamic", "classic"]
    print(
        f"ComfyUI {args.comfyui}; {args.levels}-level SD1.5-shaped UNet, {args.size}px, {args.steps} steps; runs: {', '.join(modes)}"
    )
    if args.cpu:
        print(
            "--cpu: dynamic VRAM (ModelPatcherDynamic, comfy-aimdo) is NOT used here; ComfyUI starts it only on "
            "NVIDIA GPUs. The two runs are a full load and a forced partial (lowvram) load on the CPU; the "
            "device-memory checks need CUDA and are left out."
        )
    started = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for mode in modes:
            out = Path(folder) / f"{mode}.pt"
            command = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--out",
                str(out),
                "--comfyui",
                str(args.comfyui),
            ]
            command += ["--levels", args.levels, "--size", str(args.size), "--steps", str(args.steps)]
            command += ["--cpu"] if args.cpu else []
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(
                    f"{mode} run FAILED (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
                )
                return 1
            import torch

            runs[mode] = torch.load(out, weights_only=True)
    passed = compare(runs)
    print(f"wall time {time.perf_counter() - started:.0f} s (both runs, ComfyUI start-up included)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
