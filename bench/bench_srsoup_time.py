"""Where an SRSoup run's time goes, at SD1.5 shapes: model passes, look-ahead decodes, reward calls and
the pack's own work, with the full SD VAE against a TAESD-shaped decoder for the look-aheads
(SRSoup's lookahead_vae input), the two measured side by side in one run.

    nice -n 10 .host/comfyui-0.33.0/venv/bin/python bench/bench_srsoup_time.py     # CPU: small, minutes
    python3 bench/bench_srsoup_time.py --gpu          # the authors' setting on a CUDA machine, ~4 minutes
    nice -n 10 .host/comfyui-0.33.0/venv/bin/python bench/bench_srsoup_time.py --gpu --cpu --size 64 \\
        --steps 4 --candidates 3 --soup-steps 1 --budget 120          # the GPU mode's path, checked on a CPU

--gpu runs under any python with torch and ComfyUI's requirements installed (a fresh CUDA machine
has no host venv); ComfyUI itself is the primary host's checkout, .host/comfyui-0.33.0/ComfyUI, or
the one --comfyui names. Nothing is downloaded; ComfyUI writes only to a temporary folder.

Models (random weights, nothing downloaded): the full SD1.5 UNet shape (320 channels, channel_mult
1/2/4/4, 2 res blocks, context 768), the SD1.5 VAE (AutoencoderKL, ch 128, ch_mult 1/2/4/4) and a
TAESD-shaped decoder (the tests' maker), at the image size the latent implies (size / 8 latents,
size x size look-ahead images). Rewards: JPEG compressibility (the authors') and the LAION aesthetic
tower at its real ViT-L/14 shape (colourfulness instead where open_clip is missing, said so).

The run is the pack's own (comfy_adapter.srsoup.sample_front on comfy.sample, as SRSoup KSampler
runs it); timers wrap ComfyUI's UNet call (the model's unet function wrapper), the VAE objects'
decode, the rewards' score, and the denoise / score functions the maths calls, each synchronised
with the device. Rows:
- model passes: the UNet itself (look-ahead candidates and the chains, both CFG halves);
- CFG and batching: ComfyUI's CFG model around the UNet (conditioning, CFG mixing, chunking);
- look-ahead decodes, look-ahead reward calls: what guidance spends on images;
- pack's own work: the guidance maths (z-scores, directions, soups, noise) and the scoring glue;
- finals: decoding and scoring the L final images (always the main VAE);
- the rest: ComfyUI's set-up of the run (sigmas, noise, guider, moving the model).
Each decoder first gets a warm-up run (T = 2, not timed), so neither timed run pays first-call costs.
The schedule is the authors' fixed K (the nodes default to per_chain; the cost split is the same kind).

--gpu uses the authors' setting (512 x 512, N = 30, T = 50, M = 2, L = 6, K = 20) and a time budget:
after a warm-up and a short probe it predicts both runs; if they would not fit --budget seconds
(counted from the start), it cuts T (and K in proportion), says so, and also prints the seconds per
prompt extrapolated to the asked T from the measured per-image and per-step costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts"), str(ROOT / "bench")]  # as pytest's pythonpath

import harness  # noqa: E402  (puts ComfyUI on sys.path with CPU arguments; makes `multireward` importable)

STARTED = time.perf_counter()
DECODERS = ("full VAE", "TAESD")
PROMPT = "a photo of a red house on a hill at sunset"

PRESETS = {
    "cpu": {"size": 64, "candidates": 2, "steps": 3, "grid": 2, "soup_steps": 1, "rounds": 1, "budget": 0},
    "gpu": {
        "size": 512,
        "candidates": 30,
        "steps": 50,
        "grid": 5,
        "soup_steps": 20,
        "rounds": 1,
        "budget": 200,
    },
}


# ---- models ------------------------------------------------------------------------------------


def sd15_unet(dtype: torch.dtype):
    """The full SD1.5 UNet shape with random weights, as a ComfyUI MODEL."""
    import comfy.supported_models
    import tiny_models

    unet_config = {**tiny_models.sd15_unet_config(320, 768), **tiny_models.FULL_SD15_LEVELS}
    config = comfy.supported_models.SD15(unet_config)
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    fill_normal(model.diffusion_model, std=0.02)
    return tiny_models._model_patcher(model)


def sd15_vae():
    """The SD1.5 VAE (AutoencoderKL) with random weights, loaded as ComfyUI loads a VAE file."""
    import comfy.ldm.models.autoencoder
    import comfy.sd

    ddconfig = {
        "double_z": True,
        "z_channels": 4,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 128,
        "ch_mult": [1, 2, 4, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [],
        "dropout": 0.0,
    }
    autoencoder = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    fill_normal(autoencoder, std=None)
    return comfy.sd.VAE(sd=autoencoder.state_dict())


def fill_normal(module: torch.nn.Module, std: float | None) -> None:
    """ComfyUI builds modules with empty weights: small random ones (He-scaled when std is None),
    unit norm scales, zero biases. The values cycle through one block of Gaussian noise: a timing
    needs finite, normal-sized numbers, and drawing 860M fresh ones costs minutes on a busy CPU."""
    noise = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, tensor in module.named_parameters():
            if tensor.ndim == 1:
                tensor.fill_(1.0 if name.endswith("weight") else 0.0)
                continue
            scale = std if std is not None else (1.0 / tensor[0].numel()) ** 0.5
            flat = tensor.view(-1)
            for start in range(0, flat.numel(), noise.numel()):
                part = flat[start : start + noise.numel()]
                part.copy_(noise[: part.numel()]).mul_(scale)


def build_rewards(names: list[str], real: bool, workdir: Path) -> tuple[list, str]:
    import bench_rewards

    from multireward.rewards import registry

    rewards, notes = [], ""
    for name in names:
        if name not in bench_rewards.NEURAL:
            rewards.append(registry.build_reward(name))
            continue
        try:
            rewards.append(bench_rewards.build_reward(name, real, workdir))
        except ImportError as error:
            notes += f"{name} needs {error.name}, missing here: colorfulness instead. "
            rewards.append(registry.build_reward("colorfulness"))
    return rewards, notes


# ---- timing ------------------------------------------------------------------------------------


@dataclass
class Split:
    """Seconds and items per part of one run; `phase` says whether guidance is running.

    `clock` is wall time on a GPU (synchronised) and this process's CPU time on a CPU, where other
    jobs share the cores and wall time would measure them too."""

    sync: object
    clock: object
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    items: dict = field(default_factory=lambda: defaultdict(int))
    phase: str = "setup"

    @contextmanager
    def timing(self, part: str, items: int = 0):
        self.sync()
        started = self.clock()
        try:
            yield
        finally:
            self.sync()
            self.seconds[part] += self.clock() - started
            self.items[part] += items


class Instruments:
    """Timers around the UNet, the VAEs' decode, the rewards' score and the maths' denoise/score."""

    def __init__(self, device: torch.device):
        on_gpu = device.type == "cuda"
        self.sync = torch.cuda.synchronize if on_gpu else (lambda: None)
        self.clock = time.perf_counter if on_gpu else time.process_time
        self.split = Split(self.sync, self.clock)

    def unet_wrapper(self, apply_model, args):
        with self.split.timing("unet", args["input"].shape[0]):
            return apply_model(args["input"], args["timestep"], **args["c"])

    def wrap_decode(self, vae):
        original = vae.decode

        def decode(samples, *args, **kwargs):
            part = "lookahead decode" if self.split.phase == "guidance" else "final decode"
            with self.split.timing(part, samples.shape[0]):
                return original(samples, *args, **kwargs)

        vae.decode = decode

    def wrap_reward(self, reward):
        original = reward.score

        def score(images, prompt=""):
            part = "lookahead reward" if self.split.phase == "guidance" else "final reward"
            with self.split.timing(part, images.shape[0]):
                return original(images, prompt)

        reward.score = score

    def guided_sample(self, original):
        def guided_sample(denoise, score, *args, **kwargs):
            def timed_denoise(latents, sigma):
                with self.split.timing("denoise", latents.shape[0]):
                    return denoise(latents, sigma)

            def timed_score(lookahead, needed):
                with self.split.timing("score", lookahead.shape[0]):
                    return score(lookahead, needed)

            self.split.phase = "guidance"
            try:
                with self.split.timing("guided_sample"):
                    return original(timed_denoise, timed_score, *args, **kwargs)
            finally:
                self.split.phase = "finals"

        return guided_sample


def rows_of(split: Split, total: float) -> dict[str, float]:
    """The run's parts, each counted once (they add up to the total)."""
    s = split.seconds
    guided = s["guided_sample"]
    return {
        "model passes (UNet)": s["unet"],
        "CFG and batching around the UNet": s["denoise"] - s["unet"],
        "look-ahead decodes": s["lookahead decode"],
        "look-ahead reward calls": s["lookahead reward"],
        "pack's own work: guidance maths": guided - s["denoise"] - s["score"],
        "pack's own work: scoring glue": s["score"] - s["lookahead decode"] - s["lookahead reward"],
        "finals: decode + rewards (main VAE)": s["final decode"] + s["final reward"],
        "the rest: ComfyUI's set-up of the run": total - guided - s["final decode"] - s["final reward"],
    }


# ---- one run -----------------------------------------------------------------------------------


@dataclass
class Setting:
    size: int
    candidates: int
    steps: int
    grid: int
    soup_steps: int


def guidance_settings(setting: Setting, num_rewards: int):
    """The authors' schedule: every chain soups the first K guided steps (fixed K, as in the paper)."""
    from multireward.sampling_math.guidance import GuidanceSettings
    from multireward.sampling_math.weights import resolve_weights

    return GuidanceSettings(
        weights=resolve_weights("", num_rewards, setting.grid),
        candidates=setting.candidates,
        soup_steps=setting.soup_steps,
        soup_schedule="fixed",
        seed=0,
    )


@dataclass
class Measured:
    total: float  # on the split's clock
    wall: float
    rows: dict
    items: dict
    report: dict


class Bench:
    def __init__(self, options, device: torch.device, workdir: Path):
        import comfy.model_management

        dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.device = device
        self.instruments = Instruments(device)
        self.model = sd15_unet(dtype).clone()
        self.model.set_model_unet_function_wrapper(self.instruments.unet_wrapper)
        generator = torch.Generator().manual_seed(1)
        self.positive = [[torch.randn(1, 77, 768, generator=generator) * 0.5, {}]]
        self.negative = [[torch.randn(1, 77, 768, generator=generator) * 0.5, {}]]
        import tiny_models

        self.decoders = {"full VAE": sd15_vae(), "TAESD": tiny_models._taesd_vae(4, seed=3)}
        self.rewards, self.notes = build_rewards(options.rewards, options.reward_shape == "real", workdir)
        for vae in self.decoders.values():
            self.instruments.wrap_decode(vae)
        for reward in self.rewards:
            self.instruments.wrap_reward(reward)
        self.vae_dtype = comfy.model_management.vae_dtype(device)

    def run(self, setting: Setting, decoder: str) -> Measured:
        import comfy.utils

        from multireward.comfy_adapter import srsoup

        comfy.utils.PROGRESS_BAR_ENABLED = False
        settings = guidance_settings(setting, len(self.rewards))
        latent = {"samples": torch.zeros(1, 4, setting.size // 8, setting.size // 8)}
        instruments = self.instruments
        instruments.split = Split(instruments.sync, instruments.clock)
        original = srsoup.guided_sample
        srsoup.guided_sample = instruments.guided_sample(original)
        try:
            instruments.sync()
            started, wall_started = instruments.clock(), time.perf_counter()
            with torch.inference_mode():
                _, report = srsoup.sample_front(
                    self.model,
                    self.positive,
                    self.negative,
                    latent,
                    self.decoders["full VAE"],
                    self.rewards,
                    PROMPT,
                    settings,
                    seed=0,
                    steps=setting.steps,
                    cfg=5.0,
                    scheduler="normal",
                    lookahead_vae=None if decoder == "full VAE" else self.decoders[decoder],
                )
            instruments.sync()
            total, wall = instruments.clock() - started, time.perf_counter() - wall_started
        finally:
            srsoup.guided_sample = original
        split = instruments.split
        return Measured(total, wall, rows_of(split, total), dict(split.items), report)


def check_counts(measured: Measured, steps: int) -> list[str]:
    """The timers saw exactly the work the ledger accounts for."""
    report, items = measured.report, measured.items
    chains = len(report["weights"])
    expected = {
        "lookahead decode": report["lookahead_passes"],
        "lookahead reward": report["queries"],
        "final decode": chains,
        "unet": 2 * (report["lookahead_passes"] + chains * steps),
    }
    return [
        f"{part}: {items.get(part, 0)} != {want}"
        for part, want in expected.items()
        if items.get(part, 0) != want
    ]


# ---- budget ------------------------------------------------------------------------------------


def planned(setting: Setting, num_rewards: int) -> dict:
    """Images each part handles in a run of `setting` (the ledger's formulas)."""
    from multireward.sampling_math.ledger import guidance_cost

    settings = guidance_settings(setting, num_rewards)
    guided = setting.steps - 1  # the last step has no noise
    queries, passes = guidance_cost(
        settings.weights, setting.candidates, guided, settings.chain_soup_steps(guided)
    )
    chains = settings.chain_weights().shape[0]
    return {
        "unet": 2 * (passes + chains * setting.steps),
        "decode": passes,
        "reward": queries,
        "steps": setting.steps,
    }


def predict(probe: Measured, probe_setting: Setting, target: Setting, num_rewards: int) -> float:
    """Seconds of a run of `target` from a measured run: per image for the model, the decodes and
    the rewards, per step for everything else (the finals stay as measured)."""
    have, want = planned(probe_setting, num_rewards), planned(target, num_rewards)
    rows = probe.rows
    model = rows["model passes (UNet)"] + rows["CFG and batching around the UNet"]
    per_step = rows["pack's own work: guidance maths"] + rows["pack's own work: scoring glue"]
    return (
        model * want["unet"] / have["unet"]
        + rows["look-ahead decodes"] * want["decode"] / max(have["decode"], 1)
        + rows["look-ahead reward calls"] * want["reward"] / max(have["reward"], 1)
        + per_step * want["steps"] / have["steps"]
        + rows["finals: decode + rewards (main VAE)"]
        + rows["the rest: ComfyUI's set-up of the run"]
    )


def fit_to_budget(asked: Setting, probes: dict, probe_setting: Setting, options, num_rewards: int) -> Setting:
    """The asked setting, or fewer steps (K in proportion) when both runs would not fit the budget."""
    if not options.budget:
        return asked
    left = options.budget - (time.perf_counter() - STARTED) - 10.0  # 10 s for printing and exit
    needed = options.rounds * sum(predict(probes[d], probe_setting, asked, num_rewards) for d in DECODERS)
    if needed <= left:
        print(f"budget: both runs predicted {needed:.0f} s of {left:.0f} s left: full setting", flush=True)
        return asked
    steps, trial = asked.steps, asked
    while steps > 3:
        steps -= 1
        trial = Setting(
            asked.size,
            asked.candidates,
            steps,
            asked.grid,
            round(asked.soup_steps * (steps - 1) / (asked.steps - 1)),
        )
        needed = options.rounds * sum(predict(probes[d], probe_setting, trial, num_rewards) for d in DECODERS)
        if needed <= left:
            break
    print(
        f"budget: the asked T = {asked.steps} would need more than the {left:.0f} s left; REDUCED to "
        f"T = {trial.steps}, K = {trial.soup_steps} (predicted {needed:.0f} s). Seconds per prompt at "
        f"T = {asked.steps} are extrapolated below from this run's per-image and per-step costs.",
        flush=True,
    )
    return trial


# ---- unit costs --------------------------------------------------------------------------------


def unit_costs(bench: Bench, size: int) -> dict[str, float]:
    """Seconds of one image through each part at `size` (one CFG pass is two UNet images)."""
    import comfy.model_management

    clock, sync = bench.instruments.clock, bench.instruments.sync
    comfy.model_management.load_models_gpu([bench.model])
    device = bench.model.load_device
    latent = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(2))
    cond = torch.cat([bench.positive[0][0], bench.negative[0][0]]).to(device)
    base = bench.model.model

    def seconds(work) -> float:
        work()  # the first call loads weights and picks kernels
        sync()
        started = clock()
        work()
        sync()
        return clock() - started

    with torch.inference_mode():
        x = latent.expand(2, -1, -1, -1).to(device)
        sigma = torch.full((2,), 5.0, device=device)
        costs = {"unet image": seconds(lambda: base.apply_model(x, sigma, c_crossattn=cond)) / 2}
        for decoder, vae in bench.decoders.items():
            costs[f"{decoder} decode"] = seconds(lambda vae=vae: vae.decode(latent))
        images = bench.decoders["full VAE"].decode(latent)
        for reward in bench.rewards:
            costs[f"{reward.name} image"] = seconds(lambda reward=reward: reward.score(images, PROMPT))
    return costs


def print_projection(costs: dict[str, float], setting: Setting, rewards: list, unit: str) -> None:
    """Seconds per prompt of `setting` from the unit costs and the ledger's counts, per decoder."""
    from multireward.sampling_math.weights import resolve_weights

    weights = resolve_weights("", len(rewards), setting.grid)
    counts = planned(setting, len(rewards))
    guided, chains = setting.steps - 1, weights.shape[0]
    # Queries per reward: the M exemplars during the K soup steps, then every chain that weighs it.
    per_reward = [
        setting.candidates
        * (setting.soup_steps + (guided - setting.soup_steps) * int((weights[:, m] > 0).sum()))
        for m in range(len(rewards))
    ]
    parts = {
        "model passes (UNet)": counts["unet"] * costs["unet image"],
        "look-ahead reward calls": sum(
            n * costs[f"{r.name} image"] for n, r in zip(per_reward, rewards, strict=True)
        ),
        "finals: decode + rewards (main VAE)": chains
        * (costs["full VAE decode"] + sum(costs[f"{r.name} image"] for r in rewards)),
    }
    print(
        f"\nprojection for {setting.size}x{setting.size}, N = {setting.candidates}, T = {setting.steps}, "
        f"L = {chains}, K = {setting.soup_steps} from one image per part measured at that size ({unit}): "
        + ", ".join(f"{name} {value:.3g}" for name, value in costs.items())
        + f"\ncounts: {counts['unet']} UNet images, {counts['decode']} look-ahead decodes, "
        f"{counts['reward']} reward queries ({', '.join(map(str, per_reward))}); the pack's own work is "
        "left out (well under 1% in every measured run)"
    )
    rows = {
        "look-ahead decodes": {d: counts["decode"] * costs[f"{d} decode"] for d in DECODERS},
        **{name: dict.fromkeys(DECODERS, value) for name, value in parts.items()},
    }
    totals = {d: sum(row[d] for row in rows.values()) for d in DECODERS}
    full, cheap = DECODERS
    print(f"{'part':<40}{full:>12}{'share':>8}{cheap:>12}{'share':>8}")
    for name, row in rows.items():
        a, b = row[full], row[cheap]
        print(f"{name:<40}{a:>12.1f}{a / totals[full]:>8.1%}{b:>12.1f}{b / totals[cheap]:>8.1%}")
    ratio = totals[full] / totals[cheap]
    print(
        f"{'total per prompt':<40}{totals[full]:>12.1f}{'':>8}{totals[cheap]:>12.1f}{'':>8}  full / TAESD {ratio:.2f}"
    )


# ---- output ------------------------------------------------------------------------------------


def median_rows(runs: list[Measured]) -> dict:
    return {name: statistics.median(run.rows[name] for run in runs) for name in runs[0].rows}


def print_table(results: dict[str, list[Measured]], unit: str) -> None:
    rows = {decoder: median_rows(runs) for decoder, runs in results.items()}
    totals = {decoder: statistics.median(run.total for run in runs) for decoder, runs in results.items()}
    full, cheap = DECODERS
    print(
        f"\n{'part (' + unit + ')':<40}{'full VAE':>12}{'share':>8}{'TAESD':>12}{'share':>8}{'full / TAESD':>14}"
    )
    for name in rows[full]:
        a, b = rows[full][name], rows[cheap][name]
        ratio = f"{a / b:.2f}" if b > 1e-6 else "-"
        print(f"{name:<40}{a:>12.2f}{a / totals[full]:>8.1%}{b:>12.2f}{b / totals[cheap]:>8.1%}{ratio:>14}")
    ratio = totals[full] / totals[cheap]
    print(f"{'total per prompt':<40}{totals[full]:>12.2f}{'':>8}{totals[cheap]:>12.2f}{'':>8}{ratio:>14.2f}")
    print(f"\nlook-ahead decoder saving: {ratio:.2f}x less time per prompt with the TAESD-shaped decoder")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="the authors' setting on ComfyUI's default device")
    parser.add_argument("--cpu", action="store_true", help="with --gpu: run that mode on the CPU anyway")
    for name in ("size", "candidates", "steps", "grid", "soup_steps", "rounds"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help="overrides the preset")
    parser.add_argument(
        "--unit-costs",
        action="store_true",
        help="instead of runs: one image through each part at --size, projected onto the setting's counts",
    )
    parser.add_argument("--budget", type=float, help="seconds from start for the whole script (0: none)")
    parser.add_argument(
        "--comfyui",
        type=Path,
        help="the ComfyUI 0.33 checkout to run (default .host/comfyui-0.33.0/ComfyUI)",
    )
    parser.add_argument("--rewards", nargs="+", default=["jpeg_compressibility", "laion_aesthetic"])
    parser.add_argument(
        "--reward-shape",
        choices=("real", "tiny"),
        help="neural rewards at their published shape (ViT-L/14 for the aesthetic tower) or tiny; "
        "default real with --gpu, tiny on a CPU, where a ViT-L costs seconds per image",
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads on a CPU (default 1: its CPU time stays clean)"
    )
    options = parser.parse_args()
    preset = PRESETS["gpu" if options.gpu else "cpu"]
    options.reward_shape = options.reward_shape or ("real" if options.gpu and not options.cpu else "tiny")
    for key, value in preset.items():
        if getattr(options, key) is None:
            setattr(options, key, value)

    if options.comfyui:
        harness.COMFYUI_DIR = options.comfyui.resolve()
    # A fresh CUDA machine has ComfyUI's checkout but no host venv: any python will do there.
    harness.prepare_comfy_imports(any_python=options.gpu and not options.cpu)
    if options.gpu and not options.cpu:
        from comfy.cli_args import args

        args.cpu = False  # read when comfy.model_management is first imported, just below
    harness.install_pack_alias()
    import comfy.model_management

    device = comfy.model_management.get_torch_device()
    if options.threads or device.type == "cpu":
        torch.set_num_threads(options.threads or 1)
    asked = Setting(options.size, options.candidates, options.steps, options.grid, options.soup_steps)
    with tempfile.TemporaryDirectory() as workdir:
        bench = Bench(options, device, Path(workdir))
        name = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} threads"
        )
        print(
            f"device: {name}; torch {torch.__version__}; UNet {next(bench.model.model.parameters()).dtype}, "
            f"VAE {bench.vae_dtype}; rewards: {', '.join(r.name for r in bench.rewards)} "
            f"({options.reward_shape} shapes). {bench.notes}"
            f"\nasked: {asked.size}x{asked.size}, N = {asked.candidates}, T = {asked.steps}, "
            f"L = {asked.grid + 1}, K = {asked.soup_steps}, M = {len(bench.rewards)}; "
            f"models built in {time.perf_counter() - STARTED:.0f} s",
            flush=True,
        )
        unit = "seconds" if device.type == "cuda" else "CPU seconds"
        if options.unit_costs:
            print_projection(unit_costs(bench, asked.size), asked, bench.rewards, unit)
            print(f"script total: {time.perf_counter() - STARTED:.0f} s")
            return 0
        setting = asked
        for decoder in DECODERS:  # a warm-up: every model on the device, kernels picked, caches filled
            bench.run(Setting(asked.size, asked.candidates, 2, asked.grid, 0), decoder)
        print(f"warm-up done at {time.perf_counter() - STARTED:.0f} s", flush=True)
        if options.budget:  # a short probe of both decoders to budget by
            probe_setting = Setting(asked.size, asked.candidates, 3, asked.grid, 1)
            probes = {decoder: bench.run(probe_setting, decoder) for decoder in DECODERS}
            print(f"probe done at {time.perf_counter() - STARTED:.0f} s", flush=True)
            setting = fit_to_budget(asked, probes, probe_setting, options, len(bench.rewards))

        results = {decoder: [] for decoder in DECODERS}
        for round_index in range(options.rounds):
            order = DECODERS if round_index % 2 == 0 else DECODERS[::-1]  # alternate who goes first
            for decoder in order:
                results[decoder].append(bench.run(setting, decoder))
                run = results[decoder][-1]
                print(
                    f"round {round_index + 1}, {decoder}: {run.total:.1f} s ({run.wall:.1f} s wall)",
                    flush=True,
                )

    report = results["TAESD"][0].report
    problems = [p for runs in results.values() for run in runs for p in check_counts(run, setting.steps)]
    print(
        f"\nrun: {setting.size}x{setting.size}, N = {setting.candidates}, T = {setting.steps} "
        f"({report['guided_steps']} guided), L = {len(report['weights'])}, K = {setting.soup_steps}; "
        f"{report['lookahead_passes']} look-ahead passes, {report['queries']} reward queries per prompt; "
        f"median of {options.rounds} round(s); report: look-aheads decoded by "
        f"{results['full VAE'][0].report['lookahead_decoder']} / {report['lookahead_decoder']}"
    )
    print("counts: " + ("timers saw exactly the ledger's work" if not problems else "; ".join(problems)))
    print_table(results, unit)
    if setting != asked:
        for decoder in DECODERS:
            seconds = predict(results[decoder][0], setting, asked, len(bench.rewards))
            print(
                f"extrapolated to T = {asked.steps}, K = {asked.soup_steps}: {decoder} {seconds:.1f} s per prompt"
            )
    print(f"script total: {time.perf_counter() - STARTED:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
