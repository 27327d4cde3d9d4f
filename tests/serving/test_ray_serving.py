"""The pack's rewards on a real local Ray Serve (CPU, tiny weights in the real checkpoint layouts),
driven by SRSoup in a real ComfyUI server through two Remote Reward nodes.

Ground truth comes from Ray: each replica's own JSON log (what it scored, which requests it
answered, its process id) and the proxy's access log; the local reference is the same weights
loaded by Reward Loader in the same server, seeing the 8-bit pixels the protocol carries.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request

import pytest
import torch
from comfy_server import ComfyServer
from safetensors.torch import save_file
from serve_harness import LocalRayServe, application
from server_harness import SERVER_TEST_PACK, error_message
from support.paper_costs import paper_srsoup_queries
from support.reward_references import hps_tiny_model_and_transform
from support.srsoup_graphs import srsoup_graph
from test_reward_parity import contiguous, tiny_pickscore_model

pytestmark = [pytest.mark.serving, pytest.mark.server]

SERVING_TEST_PACK = os.path.join(os.path.dirname(__file__), "serving_test_pack")
KEY_VARIABLE = "MULTIREWARD_TEST_JUDGE_KEY"
WRONG_KEY_VARIABLE = "MULTIREWARD_TEST_WRONG_JUDGE_KEY"
JUDGE_KEY = secrets.token_hex(16)
PROMPT = "a red fox in snow"
# The weights files (in the server's models/rewards/serving and in the Ray apps' rewards_dir).
FILES = {"hpsv2": "HPS_v2_compressed.pt", "pickscore": "pickscore.safetensors"}
# SRSoup: N = 4 candidates, 4 weight rows, K = 1 soup step, 3 guided steps.
RUN = {"candidates": 4, "grid_divisions": 3, "soup_steps": 1, "steps": 4, "seed": 7}
WEIGHT_ROWS = 4
QUERIES = paper_srsoup_queries(4, 3, 2, WEIGHT_ROWS, 1)  # N, guided steps, rewards, L, K
# The SRSoup runs compare exactly what both sides compute: the replicas score one image per forward
# (hpsv2: max_batch_size 1; pickscore: one image per request, one request at a time) and so does
# the local reference (serving_test_pack). Same torch, same float32 forward: equal to the last bit
# in practice; the tolerance only allows for a different CPU kernel choice between processes.
SCORE_TOLERANCE = {"rel": 1e-6, "abs": 1e-9}
# Scores of a batched forward against one row at a time: a few float32 ulps of the score's size.
BATCHED_TOLERANCE = {"rel": 1e-5, "abs": 1e-6}


@pytest.fixture(scope="module")
def rewards_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rewards")
    hps, _, _ = hps_tiny_model_and_transform()
    torch.save({"state_dict": hps.state_dict()}, folder / FILES["hpsv2"])
    save_file(contiguous(tiny_pickscore_model().state_dict()), folder / FILES["pickscore"])
    return folder


@pytest.fixture(scope="module")
def ray_serve(rewards_dir):
    serve = LocalRayServe(
        [
            application(
                "hpsv2",
                replicas=2,
                reward="hpsv2",
                rewards_dir=str(rewards_dir),
                weights_file=FILES["hpsv2"],
                max_batch_size=1,
            ),
            application(
                "pickscore",
                reward="pickscore",
                rewards_dir=str(rewards_dir),
                weights_file=FILES["pickscore"],
                max_batch_size=8,
                batch_wait_timeout_s=0.1,  # long enough to gather concurrent requests on a busy CI
                api_key_env=KEY_VARIABLE,
            ),
        ],
        env={KEY_VARIABLE: JUDGE_KEY},
    )
    serve.start()  # Ray starts while ComfyUI does (server fixture)
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def server(rewards_dir, ray_serve):
    os.environ[KEY_VARIABLE], os.environ[WRONG_KEY_VARIABLE] = JUDGE_KEY, "not-the-key"
    try:
        packs = {"multireward_testing": SERVER_TEST_PACK, "multireward_serving_testing": SERVING_TEST_PACK}
        with ComfyServer(packs=packs) as running:
            folder = running.base_dir / "models" / "rewards"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "serving").symlink_to(rewards_dir, target_is_directory=True)
            seconds = ray_serve.wait_ready()
            print(f"Ray Serve ready {seconds:.1f} s after `serve run` started")
            yield running
    finally:
        os.environ.pop(KEY_VARIABLE)
        os.environ.pop(WRONG_KEY_VARIABLE)


def remote_reward(url: str, label: str, api_key_env: str = "", **settings) -> dict:
    inputs = {
        "url": url,
        "label": label,
        "batch_size": 2,
        "max_concurrent": 2,
        "timeout_s": 60.0,
        "retries": 3,
        "backoff_s": 0.5,
        "api_key_env": api_key_env,
        "requires_prompt": True,
    }
    return {"class_type": "MultiReward_RemoteReward", "inputs": {**inputs, **settings}}


def remote_graph(ray_serve, **settings) -> dict:
    graph = srsoup_graph(prompt=PROMPT, **RUN)
    graph["5"] = remote_reward(ray_serve.url("hpsv2"), "hpsv2", **settings)
    graph["6"] = remote_reward(
        ray_serve.url("pickscore"),
        "pickscore",
        KEY_VARIABLE,
        **{**settings, "batch_size": 1, "max_concurrent": 1},
    )
    return graph


def local_graph() -> dict:
    graph = srsoup_graph(prompt=PROMPT, **RUN)
    for node, reward in (("5", "hpsv2"), ("6", "pickscore")):
        graph[f"1{node}"] = {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": reward, "weights_file": f"serving/{FILES[reward]}", "dtype": "auto"},
        }
        graph[node] = {"class_type": "MultiRewardServingTest_EightBit", "inputs": {"reward": [f"1{node}", 0]}}
    return graph


def with_saved_report(graph: dict) -> dict:
    graph["20"] = {
        "class_type": "MultiReward_SaveReport",
        "inputs": {"report": ["7", 1], "filename_prefix": "serving/report"},
    }
    return graph


def saved_report(server, entry) -> dict:
    assert entry["status"]["status_str"] == "success", error_message(entry)
    saved = entry["outputs"]["20"]["reports"][0]
    return json.loads((server.base_dir / "output" / saved["subfolder"] / saved["filename"]).read_text())


def run_report(server, graph) -> dict:
    return saved_report(server, server.run(with_saved_report(graph)))


def finished(server, prompt_id: str) -> bool:
    return prompt_id in server.get(f"/history/{prompt_id}")


def images_scored(ray_serve) -> dict:
    """Images each application's replicas scored, from their own logs."""
    return {app: sum(r.images for r in ray_serve.replicas(app)) for app in ("hpsv2", "pickscore")}


def requests_answered(ray_serve, app: str) -> dict:
    return {r.replica: len(r.scoring_requests) for r in ray_serve.replicas(app)}


@pytest.fixture(scope="module")
def local_report(server) -> dict:
    return run_report(server, local_graph())


def test_health_route_and_a_bad_request(server, ray_serve):
    with urllib.request.urlopen(ray_serve.url("hpsv2"), timeout=10) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["reward"] == "hpsv2"
    base = ray_serve.url("")  # Serve's own routes, as docs/serving.md shows them
    with urllib.request.urlopen(base + "-/routes", timeout=10) as response:
        assert {"/hpsv2", "/pickscore"} <= set(json.loads(response.read()))
    with urllib.request.urlopen(base + "-/healthz", timeout=10) as response:
        assert response.status == 200
    request = urllib.request.Request(ray_serve.url("hpsv2"), data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and b"not JSON" in refused.value.read()


def test_srsoup_on_two_ray_routes_matches_the_same_rewards_loaded_locally(server, ray_serve, local_report):
    seen_before = images_scored(ray_serve)
    answered_before = requests_answered(ray_serve, "hpsv2")
    remote = run_report(server, remote_graph(ray_serve))

    assert remote["rewards"] == local_report["rewards"] == ["hpsv2", "pickscore"]
    assert remote["queries_per_reward"] == local_report["queries_per_reward"]
    assert remote["queries"] == local_report["queries"] == QUERIES
    assert remote["pareto_indices"] == local_report["pareto_indices"]
    for remote_row, local_row in zip(remote["scores"], local_report["scores"], strict=True):
        assert remote_row == pytest.approx(local_row, **SCORE_TOLERANCE)
    # What the replicas themselves scored: every guidance query, plus each final image once.
    seen = images_scored(ray_serve)
    for index, app in enumerate(("hpsv2", "pickscore")):
        assert seen[app] - seen_before[app] == remote["queries_per_reward"][index] + WEIGHT_ROWS
    # What made the scores comparable: every forward on Ray held one image.
    assert {size for r in ray_serve.replicas() for size in r.batches} == {1}
    # Both replicas of the two-replica route answered scoring requests in this run.
    answered = requests_answered(ray_serve, "hpsv2")
    assert len(answered) == 2
    assert all(answered[replica] > answered_before.get(replica, 0) for replica in answered), answered


def test_killing_a_replica_mid_run_loses_no_score(server, ray_serve, local_report):
    failures_before = [s for m, s in ray_serve.proxy_requests("/hpsv2") if s >= 500]
    # Other retry settings than the parity run, so ComfyUI runs the graph again instead of caching it.
    status, body = server.queue_prompt(with_saved_report(remote_graph(ray_serve, retries=4, backoff_s=0.25)))
    assert status == 200, body
    killed = ray_serve.kill_replica_mid_request("hpsv2", lambda: not finished(server, body["prompt_id"]))
    report = saved_report(server, server.wait_for(body["prompt_id"]))

    assert report["queries"] == local_report["queries"] == QUERIES
    assert report["queries_per_reward"] == local_report["queries_per_reward"]
    for remote_row, local_row in zip(report["scores"], local_report["scores"], strict=True):
        assert remote_row == pytest.approx(local_row, **SCORE_TOLERANCE)
    # Ray's side: the request the replica held failed at the proxy (and Remote Reward retried it),
    # and Serve replaced the dead replica.
    failures = [s for m, s in ray_serve.proxy_requests("/hpsv2") if s >= 500]
    assert len(failures) > len(failures_before), "the kill cost no request: it did not hit one in flight"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = ray_serve.replicas("hpsv2", alive_only=True)
        if len([r for r in alive if r.ready]) == 2 and killed.replica not in {r.replica for r in alive}:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Serve did not replace replica {killed.replica}")


def test_a_wrong_key_gets_401_and_the_error_names_the_url(server, ray_serve):
    url = ray_serve.url("pickscore")
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 2, "color": 0x3366CC},
        },
        "2": remote_reward(url, "pickscore", WRONG_KEY_VARIABLE),
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": PROMPT},
        },
    }
    unauthorised_before = [s for m, s in ray_serve.proxy_requests("/pickscore") if s == 401]
    entry = server.run(graph)
    message = error_message(entry)
    assert entry["status"]["status_str"] == "error"
    assert "HTTP 401" in message and url in message, message
    assert "not-the-key" not in json.dumps(entry) and JUDGE_KEY not in json.dumps(entry)
    unauthorised = [s for m, s in ray_serve.proxy_requests("/pickscore") if s == 401]
    assert len(unauthorised) == len(unauthorised_before) + 1  # refused at once, not retried
    graph["2"] = remote_reward(url, "pickscore", KEY_VARIABLE)
    entry = server.run(graph)
    assert entry["status"]["status_str"] == "success", error_message(entry)


def test_a_replica_scores_the_images_of_concurrent_requests_in_one_forward(server, ray_serve, rewards_dir):
    from multireward.rewards.registry import build_reward
    from multireward.rewards.remote import RemoteHttpReward, RemoteSettings

    images = torch.rand(12, 32, 32, 3, generator=torch.Generator().manual_seed(5))
    eight_bit = (images * 255).round() / 255
    expected = build_reward("pickscore", str(rewards_dir / FILES["pickscore"])).score(eight_bit, PROMPT)
    judge = RemoteHttpReward(
        RemoteSettings(
            url=ray_serve.url("pickscore"), batch_size=4, max_concurrent=3, api_key_env=KEY_VARIABLE
        )
    )
    batches_before = [size for r in ray_serve.replicas("pickscore") for size in r.batches]
    scores = judge.score(images, PROMPT)
    assert scores.tolist() == pytest.approx(expected.tolist(), **BATCHED_TOLERANCE)
    batches = [size for r in ray_serve.replicas("pickscore") for size in r.batches][len(batches_before) :]
    assert sum(batches) == 12 and max(batches) > 4, batches  # images of two requests in one forward
