"""Remote Reward against misbehaving judges, through a real ComfyUI server.

What the pack sent where is read from the judges' own records (tests/support/judges.py); when a
prompt ended is read from the server's /history.
"""

from __future__ import annotations

import json
import secrets
import string
import time

import pytest
from server_harness import ComfyServer, error_message
from support.judges import Judge

pytestmark = pytest.mark.server

KEY_VARIABLE = "MULTIREWARD_TEST_JUDGE_KEY"
KEY = "judge-key-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def server():
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_VARIABLE, KEY)  # the server inherits the test's environment
        with ComfyServer() as running:
            yield running


def judge_graph(url: str, *, api_key_env: str = KEY_VARIABLE, **settings) -> dict:
    remote = {
        "url": url,
        "label": "judge",
        "batch_size": 4,
        "max_concurrent": 1,
        "timeout_s": 30.0,
        "retries": 0,
        "backoff_s": 0.01,
        "api_key_env": api_key_env,
        "requires_prompt": True,
    }
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 2, "color": 0x3366CC},
        },
        "2": {"class_type": "MultiReward_RemoteReward", "inputs": {**remote, **settings}},
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": "a blue square"},
        },
    }


def assert_next_prompt_succeeds(server) -> None:
    with Judge() as judge:
        entry = server.run(judge_graph(judge.url + "/"))
        assert entry["status"]["status_str"] == "success", error_message(entry)
        assert len(judge.requests) == 1


def events_of(entry: dict) -> list[str]:
    return [event for event, _ in entry["status"]["messages"]]


@pytest.mark.parametrize("code", [302, 307])
def test_a_redirect_to_another_server_is_refused_and_nothing_reaches_it(server, code):
    with Judge() as elsewhere, Judge(redirects={"/score": (code, elsewhere.url + "/score")}) as judge:
        entry = server.run(judge_graph(judge.url + "/score"))
        assert elsewhere.requests == []  # the other server's own record: no key, no images
        assert entry["status"]["status_str"] == "error"
        message = error_message(entry)
        assert judge.url + "/score" in message and elsewhere.url + "/score" in message, message
        assert judge.requests[0].headers.get("Authorization") == f"Bearer {KEY}"
    assert_next_prompt_succeeds(server)


@pytest.mark.parametrize("code", [302, 307])
def test_a_redirect_within_the_configured_server_is_followed_with_the_same_post(server, code):
    with Judge(redirects={"/score": (code, "/v2/score")}) as judge:
        entry = server.run(judge_graph(judge.url + "/score"))
        assert entry["status"]["status_str"] == "success", error_message(entry)
        assert [(r.method, r.path) for r in judge.requests] == [("POST", "/score"), ("POST", "/v2/score")]
        assert all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in judge.requests)


def scan_for(server, secret: str, *texts: str) -> list[str]:
    """Where the secret shows up: the given texts, /history, /queue, the server log."""
    places = {f"text {i}": text for i, text in enumerate(texts)}
    places |= {
        "/history": json.dumps(server.get("/history")),
        "/queue": json.dumps(server.get("/queue")),
        "server log": server.log(),
    }
    return [place for place, text in places.items() if secret in text]


@pytest.mark.parametrize(
    "pasted_key",
    [
        "sk-live-" + secrets.token_hex(16),
        # Shaped like a variable name (letters, digits, _), as GitHub and Hugging Face tokens are.
        "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)),
    ],
    ids=["dashed-key", "identifier-shaped-key"],
)
def test_a_key_pasted_into_api_key_env_is_refused_and_never_echoed(server, pasted_key):
    with Judge() as judge:
        status, body = server.queue_prompt(judge_graph(judge.url + "/", api_key_env=pasted_key))
        if status == 200:  # queued: let it finish so that whatever it writes can be scanned
            server.wait_for(body["prompt_id"], timeout=60)
        assert scan_for(server, pasted_key, json.dumps(body)) == []
        assert status == 400, body
        errors = body["node_errors"]["2"]["errors"]
        assert any(error["extra_info"].get("input_name") == "api_key_env" for error in errors), errors
        assert "not repeated here" in json.dumps(errors)
        assert judge.requests == []
    assert_next_prompt_succeeds(server)


def interrupt_and_time(server, prompt_id: str) -> tuple[float, dict]:
    """Seconds from /interrupt to the end of the prompt as the server recorded it (the timestamp
    of its execution_interrupted message), and the prompt's history entry."""
    interrupted_at = time.time()
    server.post("/interrupt", {})
    entry = server.wait_for(prompt_id, timeout=15.0)
    ended_at = max(data["timestamp"] for _, data in entry["status"]["messages"]) / 1000
    return ended_at - interrupted_at, entry


@pytest.mark.parametrize(
    ("judge_settings", "remote_settings"),
    [
        ({"delay_s": 60.0}, {"timeout_s": 120.0}),  # inside one slow request
        ({"status": 500}, {"retries": 3, "backoff_s": 5.0}),  # in the 5 s wait before retry 1
    ],
    ids=["slow-request", "retry-backoff"],
)
def test_interrupt_ends_the_wait_on_the_judge_within_a_second(server, judge_settings, remote_settings):
    with Judge(**judge_settings) as judge:
        status, body = server.queue_prompt(judge_graph(judge.url + "/", **remote_settings))
        assert status == 200, body
        judge.wait_for_requests(1)
        time.sleep(0.3)  # well inside the request or the wait
        stopped_after, entry = interrupt_and_time(server, body["prompt_id"])
        print(f"the prompt ended {stopped_after:.3f} s after /interrupt")
        assert "execution_interrupted" in events_of(entry), error_message(entry)
        assert "execution_error" not in events_of(entry)
        assert stopped_after < 1.0, f"the prompt ended {stopped_after:.2f} s after /interrupt"
        assert len(judge.requests) == 1  # no retry after the interrupt
    assert_next_prompt_succeeds(server)


def test_a_bogus_dtype_is_refused_naming_the_input_and_the_allowed_values(server):
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 9}},
        "2": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": "colorfulness", "weights_file": "(none)", "dtype": "bogus"},
        },
        "3": {"class_type": "MultiReward_RewardScore", "inputs": {"images": ["1", 0], "reward": ["2", 0]}},
    }
    status, body = server.queue_prompt(graph)
    if status == 400:  # a backend that checks combo values itself (0.33) refuses before the node runs
        errors = body["node_errors"]["2"]["errors"]
        assert any(error["extra_info"].get("input_name") == "dtype" for error in errors), errors
    else:  # ComfyUI 0.3.75 leaves V3 combos to the node: the node's own check
        message = error_message(server.wait_for(body["prompt_id"], timeout=60))
        assert "dtype" in message and "bogus" in message and "auto, fp32, fp16, bf16" in message, message
    assert_next_prompt_succeeds(server)
