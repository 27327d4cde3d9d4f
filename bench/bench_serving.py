"""Rewards served by Ray Serve against the same reward loaded locally, side by side in one run.

    .host/comfyui-0.33.0/venv/bin/python bench/bench_serving.py [--images 48] [--steps 6] [--judge small]

Starts a real local Ray Serve (scripts/install_ray.py's venv, `serve run` of the shipped one-machine
config) with the same judge twice: application `judge1` with one replica, `judge2` with two. Then:

1. images/s scoring one batch of 256x256 images: the reward loaded in this process (as Reward
   Loader builds it) against Remote Reward (the pack's client) on each application, over
   batch_size x max_concurrent. For each remote row, from the replicas' own logs: the mean images
   per forward (serve.batch) and utilisation, the share of the wall time the replicas spent in
   forwards (mean over replicas).
2. SRSoup wall time (tiny SD1.5-shaped model, two rewards both the judge) with the local rewards,
   and with two Remote Reward clients on 1 and on 2 replicas.

The judge is HPSv2's architecture (OpenCLIP) with random weights: `small` is a ViT-S/16-sized
image tower (4 layers) at 224 px, `tiny` the test models' size. Ratios are against the local
reward in the same run. Everything runs with one torch thread per process, as Ray gives each
replica (its CPU share): on a shared 2-core machine two threads per process mostly wait on each
other (tests/conftest.py), which would penalise whichever side had them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(ROOT / "tests"),
    str(ROOT / "scripts"),
    str(ROOT / "tests" / "serving"),
]  # as pytest's pythonpath

import harness  # noqa: E402  (puts ComfyUI on sys.path with CPU arguments; makes `multireward` importable)

JUDGES = {
    # image tower width, layers, patch, image size; text tower width, layers
    "small": (384, 4, 16, 224, 256, 4),
    "tiny": (128, 2, 8, 32, 128, 2),
}
PROMPT = "a red fox in snow"
CLIENT_SETTINGS = [(1, 1), (4, 1), (4, 4), (16, 2)]  # (batch_size, max_concurrent)


def write_judge(path: Path, judge: str) -> None:
    """Random OpenCLIP weights in HPSv2's checkpoint layout (the pack rebuilds the model from shapes)."""
    from open_clip.model import CLIP

    width, layers, patch, image, text_width, text_layers = JUDGES[judge]
    torch.manual_seed(0)
    model = CLIP(
        embed_dim=256,
        vision_cfg={
            "width": width,
            "layers": layers,
            "patch_size": patch,
            "image_size": image,
            "head_width": 64,
        },
        text_cfg={
            "width": text_width,
            "layers": text_layers,
            "heads": text_width // 64,
            "context_length": 77,
            "vocab_size": 49408,
        },
    )
    torch.save({"state_dict": model.state_dict()}, path)


def local_judge(path: Path):
    from multireward.comfy_adapter.reward_models import ComfyModelManager
    from multireward.rewards.registry import build_reward

    return build_reward("hpsv2", str(path), manager=ComfyModelManager())  # as Reward Loader builds it


def remote_judge(url: str, batch_size: int, max_concurrent: int):
    from multireward.rewards.remote import RemoteHttpReward, RemoteSettings

    return RemoteHttpReward(
        RemoteSettings(url=url, batch_size=batch_size, max_concurrent=max_concurrent, label="judge")
    )


def replica_work(serve, app: str) -> dict:
    """replica -> (forwards, images, busy ms) so far, from the replicas' own logs."""
    return {r.replica: (len(r.batches), sum(r.batches), sum(r.batch_ms)) for r in serve.replicas(app)}


def timed_scoring(reward, images) -> float:
    started = time.perf_counter()
    reward.score(images, PROMPT)
    return time.perf_counter() - started


def throughput_rows(serve, judge_path: Path, images: torch.Tensor, repeats: int) -> list[tuple]:
    local = local_judge(judge_path)
    local.score(images[:2], PROMPT)  # warm-up
    local_seconds = statistics.median(timed_scoring(local, images) for _ in range(repeats))
    rows = [("local (this process)", "-", "-", images.shape[0] / local_seconds, 1.0, "-", "-")]
    for app, replicas in (("judge1", 1), ("judge2", 2)):
        remote_judge(serve.url(app), 4, 2).score(images[:8], PROMPT)  # warm-up every replica
        for batch_size, max_concurrent in CLIENT_SETTINGS:
            before = replica_work(serve, app)
            judge = remote_judge(serve.url(app), batch_size, max_concurrent)
            runs = [timed_scoring(judge, images) for _ in range(repeats)]
            seconds, total = statistics.median(runs), sum(runs)
            after = replica_work(serve, app)
            forwards = sum(after[r][0] - before.get(r, (0, 0, 0))[0] for r in after)
            scored = sum(after[r][1] - before.get(r, (0, 0, 0))[1] for r in after)
            busy_s = [(after[r][2] - before.get(r, (0, 0, 0))[2]) / 1000 for r in after]
            # A replica Serve replaced meanwhile would add a row: then say nothing rather than guess.
            utilisation = statistics.mean(busy_s) / total if len(busy_s) == replicas else float("nan")
            rows.append(
                (
                    f"Ray Serve, {replicas} replica{'s' if replicas > 1 else ''}",
                    batch_size,
                    max_concurrent,
                    images.shape[0] / seconds,
                    local_seconds / seconds,
                    scored / max(forwards, 1),
                    utilisation,
                )
            )
    return rows


def srsoup_seconds(tiny_sd15, rewards, steps: int, candidates: int, seed: int) -> tuple[float, int]:
    from bench_srsoup_tiny import run_once

    from multireward.sampling_math.guidance import GuidanceSettings
    from multireward.sampling_math.weights import resolve_weights

    settings = GuidanceSettings(
        weights=resolve_weights("", 2, 3), mode="srsoup", candidates=candidates, soup_steps=1, seed=seed
    )
    report, seconds = run_once(*tiny_sd15, rewards, settings, steps, seed, size=64, prompt=PROMPT)
    return seconds, report["queries"]


def srsoup_rows(serve, judge_path: Path, steps: int, candidates: int, repeats: int) -> list[tuple]:
    import tiny_models

    tiny_sd15 = tiny_models.tiny_sd15(0)
    local = [local_judge(judge_path), local_judge(judge_path)]
    variants = {
        "local rewards (this process)": local,
        "Remote Reward -> Ray Serve, 1 replica": [remote_judge(serve.url("judge1"), 8, 2) for _ in "ab"],
        "Remote Reward -> Ray Serve, 2 replicas": [remote_judge(serve.url("judge2"), 8, 2) for _ in "ab"],
    }
    srsoup_seconds(tiny_sd15, local, steps, candidates, seed=0)  # warm-up: first-run costs of the model
    runs: dict[str, list] = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved, so load from elsewhere falls on every variant alike
        for name, rewards in variants.items():
            runs[name].append(srsoup_seconds(tiny_sd15, rewards, steps, candidates, seed=1))
    return [(name, r[0][1], statistics.median(s for s, _ in r)) for name, r in runs.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per throughput measurement")
    parser.add_argument("--steps", type=int, default=5, help="SRSoup sampling steps")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--judge", choices=sorted(JUDGES), default="small")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row (the median is shown)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    harness.prepare_comfy_imports()
    harness.ComfyHost()
    from serve_harness import LocalRayServe, application

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    write_judge(workdir / "judge.pt", args.judge)
    common = {
        "reward": "hpsv2",
        "rewards_dir": str(workdir),
        "weights_file": "judge.pt",
        "max_batch_size": 16,
    }
    apps = [
        application("judge1", replicas=1, cpus=0.5, **common),
        application("judge2", replicas=2, cpus=0.5, **common),
    ]
    with LocalRayServe(apps) as serve:
        print(f"Ray Serve up in {serve.wait_ready():.1f} s (serve run to every replica ready)", flush=True)
        images = torch.rand(args.images, 256, 256, 3, generator=torch.Generator().manual_seed(0))
        throughput = throughput_rows(serve, workdir / "judge.pt", images, args.repeats)
        soups = srsoup_rows(serve, workdir / "judge.pt", args.steps, args.candidates, args.repeats)

    print(
        f"\njudge: {args.judge} (HPSv2 architecture, random weights), {args.images} images of 256x256, fp32, CPU"
    )
    print(f"{'scorer':<26}{'batch':>6}{'concur':>7}{'images/s':>10}{'x local':>9}{'img/fwd':>9}{'util':>7}")
    for name, batch, concurrent, rate, ratio, per_forward, utilisation in throughput:
        per_forward = per_forward if isinstance(per_forward, str) else f"{per_forward:.1f}"
        utilisation = utilisation if isinstance(utilisation, str) else f"{utilisation:.0%}"
        print(
            f"{name:<26}{batch!s:>6}{concurrent!s:>7}{rate:>10.2f}{ratio:>9.2f}{per_forward:>9}{utilisation:>7}"
        )
    local_seconds = soups[0][2]
    print(
        f"\nSRSoup, tiny SD1.5-shaped model, {args.steps} steps, N = {args.candidates}, 4 weight rows, two rewards (both the judge)"
    )
    print(f"{'rewards':<40}{'queries':>9}{'seconds':>9}{'x local':>9}")
    for name, queries, seconds in soups:
        print(f"{name:<40}{queries:>9}{seconds:>9.1f}{seconds / local_seconds:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
