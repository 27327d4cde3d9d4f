"""SRSoup against weighted sum on a small SD1.5-shaped model inside a real (in-process) ComfyUI.

    .host/comfyui-0.33.0/venv/bin/python bench/bench_srsoup_tiny.py [--seeds 3] [--steps 10] [--candidates 8]
    .host/comfyui-0.33.0/venv/bin/python bench/bench_srsoup_tiny.py --model digits --size 64 \
        --seeds 16 --steps 15 --candidates 16 --fixed 0.4,0.7 --per-chain 0.0:1.0 --jobs 2 --pictures front.png

The same CFG model, VAE and rewards the nodes use, over paired seeds: every method starts from the
same noise. --model tiny (random weights, JPEG compressibility vs colourfulness) or digits (the
learned digits checkpoint of docs/digit_model.md, "a handwritten digit 3", JPEG compressibility vs
sharpness: colourfulness is zero on grey digits). Prints queries, look-ahead passes, wall time,
hypervolume (one reference point per seed, shared by all methods) and the per-weight bias of
SRSoup against weighted sum. --jobs shares the seeds among worker processes (on a CPU, one per
core); --noise-floor adds weighted sum with other candidate noises, to see how far chance alone
moves it. Random weights make the look-ahead landscape rougher than a trained model's; the table
says where the tiny model agrees with the toy and where not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]  # as pytest's pythonpath (pyproject.toml)


def run_once(
    model, clip, vae, rewards, settings, steps: int, seed: int, size: int, prompt: str = "", text: str = ""
):
    import comfy.utils

    from multireward.comfy_adapter.srsoup import sample_front

    comfy.utils.PROGRESS_BAR_ENABLED = False
    positive = clip.encode_from_tokens_scheduled(clip.tokenize(text or "a red fox in snow"))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    latent = {"samples": torch.zeros(1, 4, size // 8, size // 8)}
    started = time.perf_counter()
    with torch.inference_mode():
        front, report = sample_front(
            model,
            positive,
            negative,
            latent,
            vae,
            rewards,
            prompt,
            settings,
            seed=seed,
            steps=steps,
            cfg=4.0,
            scheduler="normal",
        )
    return report, time.perf_counter() - started, front["samples"]


def load_model(name: str):
    """(MODEL, CLIP, VAE, the reward set against JPEG compressibility, the prompt) of a model."""
    if name == "tiny":
        import tiny_models

        from multireward.rewards.colorfulness import Colorfulness

        return (*tiny_models.tiny_sd15(0), Colorfulness(), "")
    import comfy.sd
    from digit_checkpoint import write_digit_checkpoint

    from multireward.rewards.sharpness import Sharpness

    checkpoint = write_digit_checkpoint(ROOT / ".host" / "cache")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(checkpoint))
    return model, clip, vae, Sharpness(), "a handwritten digit 3"


def methods_for(guided: int, args) -> list[tuple[str, dict]]:
    """(label, GuidanceSettings fields) of every method: weighted sum, fixed K at the --fixed
    fractions of the guided steps, per-chain K, and with --corrections the correction variants at
    40% and 70% of the guided steps."""
    methods = [("weighted_sum", {"mode": "weighted_sum"})]
    if args.noise_floor:  # weighted sum again with other candidate noises: how far chance alone moves it
        methods.append(("WS, other candidates", {"mode": "weighted_sum", "candidate_seed_offset": 1_000_003}))
    fixed = sorted({round(float(f) * guided) for f in filter(None, args.fixed.split(","))})
    for k in fixed:
        methods.append((f"fixed K={k}", {"mode": "srsoup", "soup_steps": k}))
    for pair in filter(None, args.per_chain.split(",")):
        centre, edge = (float(v) for v in pair.split(":"))
        schedule = {"soup_schedule": "per_chain", "soup_centre": centre, "soup_edge": edge}
        methods.append((f"per-chain {centre:.2f}:{edge:.2f}", {"mode": "srsoup", **schedule}))
    if args.corrections:
        for k in ((2 * guided) // 5, (7 * guided) // 10):
            for correction in ("authors", "none"):
                fields = {"mode": "srsoup", "soup_steps": k, "correction": correction}
                methods.append((f"fixed K={k} [{correction}]", fields))
    return methods


_loaded: dict = {}  # per process: the host is started and the model loaded once for all its seeds


def start_host() -> None:
    """An in-process ComfyUI host and the pack's `multireward` name (once per process)."""
    if "host" not in _loaded:
        import harness

        harness.prepare_comfy_imports()
        _loaded["host"] = harness.ComfyHost()
        torch.set_num_threads(1)


def run_seed(seed: int, args) -> dict[str, dict]:
    """Every method from one seed's noise: {label: queries, passes, seconds, scores, K per chain}."""
    start_host()
    from multireward.rewards.jpeg import JpegCompressibility
    from multireward.sampling_math.guidance import GuidanceSettings
    from multireward.sampling_math.weights import resolve_weights

    if "model" not in _loaded:
        _loaded["model"] = load_model(args.model)
    model, clip, vae, second_reward, text = _loaded["model"]
    rewards = [JpegCompressibility(), second_reward]
    weights = resolve_weights("", 2, 5)
    guided = args.steps - 1
    runs = {}
    for name, fields in methods_for(guided, args):
        fields = dict(fields)
        candidate_seed = seed + fields.pop("candidate_seed_offset", 0)
        settings = GuidanceSettings(
            weights=weights, candidates=args.candidates, seed=candidate_seed, **fields
        )
        report, seconds, latents = run_once(
            model, clip, vae, rewards, settings, args.steps, seed, args.size, text=text
        )
        runs[name] = {
            "queries": report["queries"],
            "passes": report["lookahead_passes"],
            "seconds": seconds,
            "scores": report["scores"],
            "soup_steps": settings.chain_soup_steps(guided),
        }
        if args.pictures and seed == 0:
            with torch.inference_mode():
                runs[name]["images"] = vae.decode(latents).cpu()
            runs[name]["first_weights"] = weights[:, 0].tolist()
    print(f"seed {seed} done", file=sys.stderr, flush=True)
    return runs


def run_seeds(args) -> list[dict[str, dict]]:
    """run_seed for every seed, in --jobs worker processes (each with one torch thread)."""
    seeds = range(args.seeds)
    if args.jobs == 1:
        return [run_seed(seed, args) for seed in seeds]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: ComfyUI's globals unshared
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        return list(pool.map(run_seed, seeds, [args] * len(seeds)))


def summarise(per_seed: list[dict[str, dict]]) -> dict[str, dict]:
    """Per method: hypervolume against weighted sum's (one reference point per seed, shared by all
    methods), as a ratio of means and as the paired per-seed ratio with its standard error, the
    seeds where it is at least weighted sum's, and the mean over seeds of the largest per-weight bias."""
    start_host()
    from support.paper_metrics import per_weight_bias

    from multireward.sampling_math.pareto import default_reference, hypervolume

    table: dict[str, dict] = {name: {"hv": [], "bias": [], "seconds": []} for name in per_seed[0]}
    for runs in per_seed:
        scores = {name: torch.tensor(run["scores"], dtype=torch.float64) for name, run in runs.items()}
        reference = default_reference(torch.cat(list(scores.values())))
        for name, run in runs.items():
            table[name]["hv"].append(hypervolume(scores[name], reference))
            table[name]["bias"].append(float(per_weight_bias(scores[name], scores["weighted_sum"]).max()))
            table[name]["seconds"].append(run["seconds"])
    baseline = table["weighted_sum"]
    for row in table.values():
        ratios = [hv / ws for hv, ws in zip(row["hv"], baseline["hv"], strict=True)]
        row["hv_of_means"] = statistics.mean(row["hv"]) / statistics.mean(baseline["hv"])
        row["paired"] = statistics.mean(ratios)
        row["paired_se"] = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else 0.0
        row["at_least"] = sum(r >= 1.0 for r in ratios)
        row["time_x"] = statistics.mean(baseline["seconds"]) / statistics.mean(row["seconds"])
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--fixed", default="0,0.2,0.4,0.7,1", help="fixed K as fractions of the guided steps")
    parser.add_argument(
        "--per-chain", default="0.0:1.0,0.2:1.0,0.4:1.0", help="per-chain schedules, centre:edge,..."
    )
    parser.add_argument("--corrections", action="store_true", help="also the correction variants")
    parser.add_argument("--model", choices=("tiny", "digits"), default="tiny")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes, seeds shared among them")
    parser.add_argument("--pictures", type=Path, help="write seed 0's images there, a row per method")
    parser.add_argument(
        "--noise-floor", action="store_true", help="also weighted sum with other candidate noises"
    )
    parser.add_argument("--save", type=Path, help="write every seed's scores and counts there (JSON)")
    args = parser.parse_args()

    per_seed = run_seeds(args)
    if args.save:
        kept = [
            {name: {k: v for k, v in run.items() if k != "images"} for name, run in runs.items()}
            for runs in per_seed
        ]
        args.save.write_text(json.dumps({"arguments": sys.argv[1:], "seeds": kept}, indent=1))
    table = summarise(per_seed)
    first = per_seed[0]
    print(
        f"{args.model} SD1.5-shaped model, {args.size}x{args.size}, {args.steps} steps, N = {args.candidates}, "
        f"L = 6, M = 2, {args.seeds} paired seeds, correction divided_by_s unless named"
    )
    print(
        f"{'method':<28}{'K per chain':>22}{'queries':>9}{'passes':>8}{'query x':>9}{'time x':>8}"
        f"{'HV / WS':>9}{'paired ± se':>15}{'>= WS':>7}{'max bias':>10}"
    )
    ws_queries = first["weighted_sum"]["queries"]
    for name, row in table.items():
        run = first[name]
        chains = ",".join(str(k) for k in run["soup_steps"])
        paired = f"{row['paired']:.3f} ± {row['paired_se']:.3f}"
        print(
            f"{name:<28}{chains:>22}{run['queries']:>9}{run['passes']:>8}{ws_queries / run['queries']:>9.2f}"
            f"{row['time_x']:>8.2f}{row['hv_of_means']:>9.3f}{paired:>15}{row['at_least']:>7}"
            f"{statistics.mean(row['bias']):>10.3f}"
        )
    if args.pictures:
        write_pictures(first, args.pictures)
    return 0


def short_label(method: str) -> str:
    """A caption-sized method name: WS, K=6, pc (the rows keep the table's order)."""
    if method.startswith("W"):
        return "WS" if method == "weighted_sum" else "WS'"
    return method.split()[1] if method.startswith("fixed") else "pc"


def write_pictures(runs: dict[str, dict], path: Path) -> None:
    """One row per method, one column per weight row (first reward's weight / second's), from one
    noise; images enlarged 2x (nearest) so the captions fit."""
    from multireward.plots.pareto_plot import labelled_grid

    chains = len(runs["weighted_sum"]["first_weights"])
    images = torch.cat([run["images"] for run in runs.values()]).movedim(-1, 1)
    images = torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest").movedim(1, -1)
    labels = [
        f"{short_label(name)} {weight:.1f}" for name, run in runs.items() for weight in run["first_weights"]
    ]
    labelled_grid(images, labels, columns=chains).save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
