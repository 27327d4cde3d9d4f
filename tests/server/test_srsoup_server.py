"""SRSoup through a real server: the stock checkpoint loader, the flow model, interrupt."""

from __future__ import annotations

import json
import time

import pytest
from server_harness import ComfyServer, error_message
from support.paper_costs import paper_srsoup_queries
from support.srsoup_graphs import srsoup_graph

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tiny_checkpoint_file):
    with ComfyServer() as running:
        folder = running.base_dir / "models" / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tiny_sd15.safetensors").symlink_to(tiny_checkpoint_file)
        yield running


@pytest.mark.parametrize("model_source", ["checkpoint", "flow"])
def test_latents_and_exact_query_counts_through_the_server(server, model_source):
    graph = srsoup_graph(model_source=model_source, checkpoint="tiny_sd15.safetensors", grid_divisions=3)
    graph["20"] = {
        "class_type": "MultiReward_SaveReport",
        "inputs": {"report": ["7", 1], "filename_prefix": f"e2e/{model_source}"},
    }
    entry = server.run(graph)
    assert entry["status"]["status_str"] == "success", error_message(entry)
    saved = entry["outputs"]["20"]["reports"][0]
    report = json.loads((server.base_dir / "output" / saved["subfolder"] / saved["filename"]).read_text())
    assert len(report["weights"]) == 4
    assert report["queries"] == paper_srsoup_queries(4, 3, 2, 4, 1)
    assert report["reward_images_seen"] == report["queries_per_reward"]
    assert report["flow_model"] is (model_source == "flow")


def wait_until_running(server, prompt_id: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        running = server.get("/queue")["queue_running"]
        if any(item[1] == prompt_id for item in running):
            return
        time.sleep(0.1)
    raise TimeoutError("the prompt never started")


def test_interrupt_stops_the_run_and_the_server_takes_the_next_prompt(server):
    long_run = srsoup_graph(steps=400, candidates=16, soup_steps=0, mode="weighted_sum", seed=99)
    status, body = server.queue_prompt(long_run)
    assert status == 200, body
    wait_until_running(server, body["prompt_id"])
    time.sleep(3.0)  # well inside the sampling loop
    interrupted_at = time.time()
    server.post("/interrupt", {})
    entry = server.wait_for(body["prompt_id"], timeout=120)
    stopped_after = time.time() - interrupted_at
    events = [event for event, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in events, events
    assert stopped_after < 10.0, f"took {stopped_after:.1f} s to stop"
    follow_up = server.run(srsoup_graph(seed=100))
    assert follow_up["status"]["status_str"] == "success", error_message(follow_up)


# ---- issue 10 item 6: the weights that kept the worker busy ------------------------------------


def four_reward_graph(**overrides) -> dict:
    """srsoup_graph with four weight-free rewards (colorfulness twice)."""
    graph = srsoup_graph(**overrides)
    for node, name in (("8", "sharpness"), ("9", "colorfulness")):
        graph[node] = {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": name, "weights_file": "(none)", "dtype": "auto"},
        }
    graph["7"]["inputs"].update(reward_3=["8", 0], reward_4=["9", 0])
    return graph


def test_the_100k_character_weights_are_refused_naming_the_limit_and_the_next_prompt_runs(server):
    text = "\n".join(f"{i},1" for i in range(15_360))  # the 15,360 distinct rows, >100k characters
    entry = server.run(srsoup_graph(weights=text), timeout=60)
    assert entry["status"]["status_str"] == "error"
    assert "weights: 15360 weight rows; at most 2048 rows (one image each)" in error_message(entry)
    follow_up = server.run(srsoup_graph(seed=101))
    assert follow_up["status"]["status_str"] == "success", error_message(follow_up)


def test_the_largest_grid_stops_within_a_second_of_interrupt_and_the_next_prompt_runs(server):
    """4 rewards, grid_divisions 20: 1,771 images. It used to spend minutes parsing its grid, deaf to
    /interrupt; now it samples at once and stops within a second (the server's own timestamps)."""
    graph = four_reward_graph(grid_divisions=20, candidates=2, steps=20, soup_schedule="per_chain", seed=102)
    warm = server.run(four_reward_graph(grid_divisions=1, seed=104))  # the model and rewards, cached
    assert warm["status"]["status_str"] == "success", error_message(warm)
    status, body = server.queue_prompt(graph)
    assert status == 200, body
    wait_until_running(server, body["prompt_id"])
    time.sleep(3.0)  # well past the weights, inside the sampling of 1,771 chains
    interrupted_at = time.time()
    server.post("/interrupt", {})
    entry = server.wait_for(body["prompt_id"], timeout=60)
    stopped = {event: data for event, data in entry["status"]["messages"]}
    assert "execution_interrupted" in stopped, list(stopped)
    assert stopped["execution_interrupted"]["node_type"] == "MultiReward_SRSoupKSampler"
    latency = stopped["execution_interrupted"]["timestamp"] / 1000 - interrupted_at
    assert latency < 1.0, f"stopped {latency:.2f} s after /interrupt"
    follow_up = server.run(srsoup_graph(seed=103))
    assert follow_up["status"]["status_str"] == "success", error_message(follow_up)
