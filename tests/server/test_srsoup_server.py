"""SRSoup through a real server: the stock checkpoint loader, the flow model, interrupt."""

from __future__ import annotations

import json
import sys
import time

import pytest
from harness import PACK_ROOT
from server_harness import ComfyServer, error_message
from support.paper_costs import paper_srsoup_queries

sys.path.insert(0, str(PACK_ROOT / "tests" / "srsoup"))
from graphs import srsoup_graph

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
