"""End to end: a real ComfyUI server with the pack, driven over HTTP like the frontend does."""

from __future__ import annotations

import node_reference
import pytest
from harness import COMFYUI_CHECKS_COMBO_VALUES
from server_harness import ComfyServer, error_message

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server():
    with ComfyServer() as running:
        yield running
    assert running.process.poll() is not None, "the server was not stopped"


def score_graph(reward_name="jpeg_compressibility", image_node=None) -> dict:
    return {
        "1": image_node
        or {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0x808080},
        },
        "2": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": reward_name, "weights_file": "(none)", "dtype": "auto"},
        },
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": ""},
        },
    }


def test_pack_loads_without_import_failures(server):
    log = server.log()
    assert "IMPORT FAILED" not in "\n".join(line for line in log.splitlines() if "multireward" in line), log
    info = server.get("/object_info/MultiReward_RewardScore")
    assert info["MultiReward_RewardScore"]["category"] == "multireward/rewards"


def test_node_reference_matches_the_running_pack(server):
    """docs/nodes.md is what this ComfyUI's /object_info says of the pack's nodes, on each version."""
    written = (node_reference.PACK_ROOT / "docs" / "nodes.md").read_text()
    current = node_reference.render(server.get("/object_info"))
    assert current == written, "docs/nodes.md is stale: run scripts/node_reference.py"


def test_scores_come_back_through_the_server(server):
    entry = server.run(score_graph())
    assert entry["status"]["status_str"] == "success"
    text = entry["outputs"]["3"]["text"][0]
    lines = text.splitlines()
    assert lines[0].split()[-1] == "jpeg_compressibility"
    assert len(lines) == 3  # header + two images
    assert all(float(line.split()[-1]) < 0 for line in lines[1:])


def _next_prompt_works(server) -> None:
    follow_up = server.run(
        score_graph(
            image_node={
                "class_type": "EmptyImage",
                "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 7},
            }
        )
    )
    assert follow_up["status"]["status_str"] == "success"


def test_an_empty_image_batch_is_a_clear_error_and_the_server_goes_on(server):
    entry = server.run(score_graph(image_node={"class_type": "MultiRewardTest_EmptyImages", "inputs": {}}))
    assert entry["status"]["status_str"] == "error"
    assert "empty image batch" in error_message(entry)
    _next_prompt_works(server)


def test_an_unknown_reward_is_a_clear_error_naming_the_input_and_the_server_goes_on(server):
    status, body = server.queue_prompt(score_graph(reward_name="no_such_reward"))
    if COMFYUI_CHECKS_COMBO_VALUES:
        # ComfyUI refuses the prompt before it runs; the frontend shows this on the node.
        assert status == 400, body
        (error,) = body["node_errors"]["2"]["errors"]
        assert error["message"] == "Value not in list"
        assert (
            "reward_name: 'no_such_reward' not in" in error["details"] and "colorfulness" in error["details"]
        )
    else:
        assert status == 200, body
        message = error_message(server.wait_for(body["prompt_id"]))
        assert "reward_name" in message and "no_such_reward" in message
    _next_prompt_works(server)


def test_non_image_input_is_refused_at_validation_naming_the_input(server):
    graph = score_graph()
    graph["4"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    graph["3"]["inputs"]["images"] = ["4", 0]
    status, body = server.queue_prompt(graph)
    assert status == 400
    errors = body["node_errors"]["3"]["errors"]
    assert any(error["extra_info"].get("input_name") == "images" for error in errors), errors
    assert server.run(score_graph())["status"]["status_str"] == "success"
