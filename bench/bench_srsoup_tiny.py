"""SRSoup against weighted sum on a small SD1.5-shaped model inside a real (in-process) ComfyUI.

    .host/comfyui-0.33.0/venv/bin/python bench/bench_srsoup_tiny.py [--seeds 3] [--steps 10] [--candidates 8]
    .host/comfyui-0.33.0/venv/bin/python bench/bench_srsoup_tiny.py --model digits --size 64

The same CFG model, VAE and rewards the nodes use, over paired seeds: every method starts from the
same noise. --model tiny (random weights, JPEG compressibility vs colourfulness) or digits (the
learned digits checkpoint of docs/digit_model.md, "a handwritten digit 3", JPEG compressibility vs
sharpness: colourfulness is zero on grey digits). Prints queries, look-ahead passes, wall time,
hypervolume (one reference point per seed, shared by all methods) and the per-weight bias of
SRSoup against weighted sum. Random weights make the look-ahead landscape rougher than a trained
model's; the table says where the tiny model agrees with the toy and where not.
"""

from __future__ import annotations

import argparse
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
        _, report = sample_front(
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
    return report, time.perf_counter() - started


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
    """(label, GuidanceSettings fields) of every method: weighted sum, fixed K, per-chain K, and
    with --corrections the correction variants at 40% and 70% of the guided steps."""
    methods = [("weighted_sum", {"mode": "weighted_sum"})]
    for k in sorted({0, guided // 5, (2 * guided) // 5, (7 * guided) // 10, guided}):
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument(
        "--per-chain", default="0.0:1.0,0.2:1.0,0.4:1.0", help="per-chain schedules, centre:edge,..."
    )
    parser.add_argument("--corrections", action="store_true", help="also the correction variants")
    parser.add_argument("--model", choices=("tiny", "digits"), default="tiny")
    args = parser.parse_args()

    import harness

    harness.prepare_comfy_imports()
    harness.ComfyHost()
    from support.paper_metrics import per_weight_bias

    from multireward.rewards.jpeg import JpegCompressibility
    from multireward.sampling_math.guidance import GuidanceSettings
    from multireward.sampling_math.pareto import default_reference, hypervolume
    from multireward.sampling_math.weights import resolve_weights

    torch.set_num_threads(1)
    model, clip, vae, second_reward, text = load_model(args.model)
    rewards = [JpegCompressibility(), second_reward]
    weights = resolve_weights("", 2, 5)
    guided = args.steps - 1
    methods = methods_for(guided, args)
    rows: dict[str, list] = {name: [] for name, _ in methods}
    soup_steps = {}
    for seed in range(args.seeds):
        runs = {}
        for name, fields in methods:
            settings = GuidanceSettings(weights=weights, candidates=args.candidates, seed=seed, **fields)
            soup_steps[name] = settings.chain_soup_steps(guided)
            runs[name] = run_once(model, clip, vae, rewards, settings, args.steps, seed, args.size, text=text)
        scores = {
            name: torch.tensor(report["scores"], dtype=torch.float64) for name, (report, _) in runs.items()
        }
        reference = default_reference(torch.cat(list(scores.values())))
        baseline = scores["weighted_sum"]
        for name, (report, seconds) in runs.items():
            rows[name].append(
                (
                    report["queries"],
                    report["lookahead_passes"],
                    seconds,
                    hypervolume(scores[name], reference),
                    float(per_weight_bias(scores[name], baseline).max()),
                )
            )
    ws = rows["weighted_sum"]
    ws_hv = statistics.mean(r[3] for r in ws)
    ws_time = statistics.mean(r[2] for r in ws)
    print(
        f"{args.model} SD1.5-shaped model, {args.size}x{args.size}, {args.steps} steps, N = {args.candidates}, "
        f"L = 6, M = 2, {args.seeds} paired seeds, correction divided_by_s unless named"
    )
    print(
        f"{'method':<28}{'K per chain':>22}{'queries':>9}{'passes':>8}{'query x':>9}{'time x':>8}"
        f"{'HV / WS':>9}{'max bias':>10}"
    )
    for name, values in rows.items():
        queries, passes = values[0][0], values[0][1]
        hv = statistics.mean(v[3] for v in values)
        seconds = statistics.mean(v[2] for v in values)
        bias = statistics.mean(v[4] for v in values)
        chains = ",".join(str(k) for k in soup_steps[name])
        print(
            f"{name:<28}{chains:>22}{queries:>9}{passes:>8}{ws[0][0] / queries:>9.2f}"
            f"{ws_time / seconds:>8.2f}{hv / ws_hv:>9.3f}{bias:>10.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
