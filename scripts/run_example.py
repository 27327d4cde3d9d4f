#!/usr/bin/env python3
"""Set up a real ComfyUI with this pack and run a bundled example workflow on the learned digits model.

    python3 scripts/run_example.py                       # SRSoup, two rewards -> outputs/srsoup_example/
    python3 scripts/run_example.py --workflow srsoup_three_rewards --output outputs/three

No model weights can be downloaded here, so the model is the pack's small learned digits model
(docs/digit_model.md): a stock SD1.5 checkpoint assembled in seconds from the committed weights
(about 290 MB, once) and loaded by ComfyUI's own CheckpointLoaderSimple. The example runs as
written, except for the checkpoint, the digits model's prompt and its one trained size (64x64);
step and candidate counts are scaled down for a CPU unless --full is given. It writes the images,
the Pareto plot, the labelled grid and the query report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_hosts import PACK_ROOT, selected
from digit_checkpoint import write_digit_checkpoint

HOST = selected()  # MULTIREWARD_HOST=<version>; the primary host when unset
DIGIT_PROMPT = "a handwritten digit 3"
#: What the digits model needs in place of the example's SD1.5 settings: its prompt (the negative
#: prompt's words mean nothing to it, so it gets the empty one) and the one size it was trained at.
DIGIT_SETTINGS = {
    ("PrimitiveStringMultiline", "value"): DIGIT_PROMPT,
    ("CLIPTextEncode", "text"): "",
    ("EmptyLatentImage", "width"): 64,
    ("EmptyLatentImage", "height"): 64,
}

#: Scaled-down settings for a CPU: (node type, widget) -> value. For SRSoup: four weight rows, 16
#: steps, 12 candidates (on the digits model the one-hot rows then end at the front's two ends and
#: the mixed rows in order between them: docs/images/pareto_front.png).
CPU_SETTINGS = {
    ("MultiReward_SRSoupKSampler", "steps"): 16,
    ("MultiReward_SRSoupKSampler", "candidates"): 12,
    ("MultiReward_SRSoupKSampler", "grid_divisions"): 3,
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


def set_widgets(workflow: dict, object_info: dict, settings: dict = CPU_SETTINGS) -> list[str]:
    from workflows import replace_widget

    changed = []
    for (node_type, widget), value in settings.items():
        if replace_widget(workflow, node_type, widget, value, object_info):
            changed.append(f"{node_type}.{widget} = {value}")
    return changed


def run(workflow_name: str, output_dir: Path, full: bool) -> int:
    from comfy_server import ComfyServer, error_message
    from workflows import replace_widget, ui_to_api

    base_dir = HOST.root / "demo"
    checkpoint = write_digit_checkpoint(base_dir / "models" / "checkpoints")
    output_dir.mkdir(parents=True, exist_ok=True)
    workflow = json.loads((PACK_ROOT / "example_workflows" / f"{workflow_name}.json").read_text())
    with ComfyServer(base_dir, extra_args=("--output-directory", str(output_dir))) as server:
        object_info = server.get("/object_info")
        replace_widget(workflow, "CheckpointLoaderSimple", "ckpt_name", checkpoint.name, object_info)
        print("on the digits model:", ", ".join(set_widgets(workflow, object_info, DIGIT_SETTINGS)))
        if not full:
            print("scaled down for a CPU:", ", ".join(set_widgets(workflow, object_info)))
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
