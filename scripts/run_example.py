#!/usr/bin/env python3
"""Set up a real ComfyUI with this pack and run a bundled example workflow on the tiny default model.

    python3 scripts/run_example.py                       # SRSoup, two rewards -> outputs/srsoup_example/
    python3 scripts/run_example.py --workflow srsoup_three_rewards --output outputs/three

No model weights can be downloaded here, so the default model is a stock-detectable SD1.5-shaped
checkpoint with random weights, built once (about 250 MB) and loaded by ComfyUI's own
CheckpointLoaderSimple. Its images are noise-like; the point is the whole path: the example
workflow, the real server, the sampler, the rewards, the images, the Pareto plot and the report.
Sizes and step counts are scaled down for a CPU unless --full is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_hosts import HOSTS_DIR, PACK_ROOT, selected

HOST = selected()  # MULTIREWARD_HOST=<version>; the primary host when unset
TINY_CHECKPOINT = "tiny_sd15.safetensors"

#: Scaled-down settings for the tiny model on a CPU: (node type, widget) -> value.
CPU_SETTINGS = {
    ("EmptyLatentImage", "width"): 64,
    ("EmptyLatentImage", "height"): 64,
    ("MultiReward_SRSoupKSampler", "steps"): 8,
    ("MultiReward_SRSoupKSampler", "candidates"): 6,
    ("MultiReward_SRSoupKSampler", "soup_steps"): 3,
    ("MultiReward_SRSoupSampler", "candidates"): 6,
    ("MultiReward_SRSoupSampler", "soup_steps"): 3,
    ("BasicScheduler", "steps"): 8,
    ("KSampler", "steps"): 8,
    ("MultiReward_DiffusionBlendSampler", "steps"): 8,
}


def ensure_host() -> None:
    subprocess.run([sys.executable, str(PACK_ROOT / "scripts" / "install_host.py"), HOST.version], check=True)


def running_in_host_venv() -> bool:
    return Path(sys.prefix).resolve() == HOST.venv.resolve()


def build_tiny_checkpoint() -> Path:
    sys.path.insert(0, str(PACK_ROOT / "tests"))
    import harness
    import tiny_models

    harness.prepare_comfy_imports()
    return tiny_models.write_sd15_checkpoint(HOSTS_DIR / "cache" / "tiny_sd15_checkpoint.safetensors")


def scale_down(workflow: dict, object_info: dict, settings: dict = CPU_SETTINGS) -> list[str]:
    from workflows import replace_widget

    changed = []
    for (node_type, widget), value in settings.items():
        if replace_widget(workflow, node_type, widget, value, object_info):
            changed.append(f"{node_type}.{widget} = {value}")
    return changed


def run(workflow_name: str, output_dir: Path, full: bool) -> int:
    from comfy_server import ComfyServer, error_message
    from workflows import replace_widget, ui_to_api

    checkpoint = build_tiny_checkpoint()
    base_dir = HOST.root / "demo"
    (base_dir / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    link = base_dir / "models" / "checkpoints" / TINY_CHECKPOINT
    if not link.exists():
        link.symlink_to(checkpoint)
    output_dir.mkdir(parents=True, exist_ok=True)
    workflow = json.loads((PACK_ROOT / "example_workflows" / f"{workflow_name}.json").read_text())
    with ComfyServer(base_dir, extra_args=("--output-directory", str(output_dir))) as server:
        object_info = server.get("/object_info")
        replace_widget(workflow, "CheckpointLoaderSimple", "ckpt_name", TINY_CHECKPOINT, object_info)
        if not full:
            print("scaled down for a CPU:", ", ".join(scale_down(workflow, object_info)))
        print(
            f"running example_workflows/{workflow_name}.json on a real ComfyUI at {server.url} ...",
            flush=True,
        )
        entry = server.run(ui_to_api(workflow, object_info), timeout=3600)
        if entry["status"]["status_str"] != "success":
            print(
                f"the workflow failed: {error_message(entry)}\nserver log: {server.log_path}", file=sys.stderr
            )
            return 1
        for node_output in entry["outputs"].values():
            for text in node_output.get("text", []):
                print(text)
    print(f"\noutputs written to {output_dir}:")
    for path in sorted(p for p in output_dir.rglob("*") if p.is_file()):
        print("  ", path.relative_to(output_dir))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workflow", default="srsoup_two_rewards", help="name of a file in example_workflows/"
    )
    parser.add_argument("--output", type=Path, default=PACK_ROOT / "outputs" / "srsoup_example")
    parser.add_argument("--full", action="store_true", help="keep the workflow's own sizes and step counts")
    args = parser.parse_args()
    if not running_in_host_venv():
        ensure_host()
        os.execv(str(HOST.python), [str(HOST.python), __file__, *sys.argv[1:]])
    return run(args.workflow, args.output.resolve(), args.full)


if __name__ == "__main__":
    sys.exit(main())
