"""Every bundled example workflow runs on a real server, converted the way the frontend queues it,
on the learned digits checkpoint in place of the standard one, as the README's demo runs them."""

from __future__ import annotations

import json
import re

import pytest
from digit_checkpoint import CHECKPOINT_NAME
from harness import PACK_ROOT
from run_example import CPU_SETTINGS, DIGIT_SETTINGS, set_widgets
from server_harness import ComfyServer, error_message
from tiny_models import write_checkpoint_lora
from workflows import replace_widget, ui_to_api

from example_workflows import LORA_A, LORA_B

pytestmark = pytest.mark.server

#: A warning or deprecation notice in the server log, in any of the forms Python's logging and
#: warnings modules print them.
WARNING_LINE = re.compile(r"warn|deprecat", re.IGNORECASE)
EXAMPLES = sorted(path.stem for path in (PACK_ROOT / "example_workflows").glob("*.json"))
#: Even smaller than the demo's CPU settings: the suite runs every example.
TEST_SETTINGS = {
    **CPU_SETTINGS,
    **{
        (node, "steps"): 3
        for node in (
            "MultiReward_SRSoupKSampler",
            "BasicScheduler",
            "KSampler",
            "MultiReward_DiffusionBlendSampler",
        )
    },
    **{(node, "candidates"): 3 for node in ("MultiReward_SRSoupKSampler", "MultiReward_SRSoupSampler")},
    **{(node, "soup_steps"): 1 for node in ("MultiReward_SRSoupKSampler", "MultiReward_SRSoupSampler")},
}


@pytest.fixture(scope="module")
def server(digit_checkpoint_file):
    with ComfyServer() as running:
        folder = running.base_dir / "models" / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / digit_checkpoint_file.name).symlink_to(digit_checkpoint_file)
        # The examples name reward LoRAs a user swaps in; small random ones fit the checkpoint.
        for seed, name in enumerate((LORA_A, LORA_B), start=1):
            write_checkpoint_lora(digit_checkpoint_file, running.base_dir / "models" / "loras" / name, seed)
        running.object_info = running.get("/object_info")
        yield running


def test_examples_exist_with_thumbnails():
    assert {
        "srsoup_two_rewards",
        "srsoup_three_rewards",
        "srsoup_sampler_custom_advanced",
        "reward_score",
    } <= set(EXAMPLES)
    for name in EXAMPLES:
        assert (PACK_ROOT / "example_workflows" / f"{name}.jpg").exists(), name


def test_widgets_a_saved_workflow_lacks_get_their_defaults_as_in_the_frontend(server):
    """A workflow saved before SRSoup's schedule widgets existed: queued from the frontend it runs the
    node's default per-chain schedule (tests/browser checks the frontend), and so it does here."""
    from workflows import widget_layout

    workflow = json.loads((PACK_ROOT / "example_workflows" / "srsoup_two_rewards.json").read_text())
    sampler = next(node for node in workflow["nodes"] if node["type"] == "MultiReward_SRSoupKSampler")
    layout = widget_layout(server.object_info["MultiReward_SRSoupKSampler"])
    older = layout.index(("soup_schedule", False))  # the widgets a workflow had before
    sampler["widgets_values"] = sampler["widgets_values"][:older]
    prompt = ui_to_api(workflow, server.object_info)[str(sampler["id"])]["inputs"]
    assert (prompt["soup_schedule"], prompt["soup_centre"], prompt["soup_edge"]) == ("per_chain", 0.05, 0.8)
    assert prompt["correction"] == sampler["widgets_values"][layout.index(("correction", False))]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_on_a_real_server(server, name):
    workflow = json.loads((PACK_ROOT / "example_workflows" / f"{name}.json").read_text())
    missing = {node["type"] for node in workflow["nodes"]} - set(server.object_info)
    assert not missing, f"{name} uses node types the server lacks: {missing}"
    assert (
        replace_widget(workflow, "CheckpointLoaderSimple", "ckpt_name", CHECKPOINT_NAME, server.object_info)
        == 1
    )
    set_widgets(workflow, server.object_info, {**DIGIT_SETTINGS, **TEST_SETTINGS})
    log_start = server.log_size()
    entry = server.run(ui_to_api(workflow, server.object_info), timeout=900)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    saved = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    assert saved, f"{name} saved or previewed no image"
    # Users read any warning printed while their workflow runs as the pack being broken.
    warnings = [line for line in server.log(since=log_start).splitlines() if WARNING_LINE.search(line)]
    assert not warnings, f"{name} logged warnings:\n" + "\n".join(warnings)
