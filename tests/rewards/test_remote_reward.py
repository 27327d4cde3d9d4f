"""remote_http against the reference server: batching, concurrency, API key, and every failure
mode ending in a clear error that names the URL."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from support.judges import Judge
from support.reward_references import as_comfy_images, random_uint8_images


@pytest.fixture
def serve():
    """Start reference servers with given behaviours; stop them after the test."""
    from multireward.rewards.reference_server import ServerBehaviour, make_server

    servers = []

    def start(**behaviour):
        server = make_server(behaviour=ServerBehaviour(**behaviour))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", server.behaviour

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def remote(url, **settings):
    from multireward.rewards.remote import RemoteHttpReward, RemoteSettings

    defaults = {"batch_size": 3, "timeout_s": 5.0, "retries": 2, "backoff_s": 0.01, "max_concurrent": 2}
    return RemoteHttpReward(RemoteSettings(url=url, **{**defaults, **settings}))


IMAGES = as_comfy_images(random_uint8_images(7, 16, 16, seed=3))
PROMPT = "a red house"


def test_scores_come_back_in_order_batched_and_at_most_max_concurrent(serve):
    from multireward.rewards.colorfulness import colorfulness

    # Each answer takes long enough for the two requests to overlap; the client's timeout is long
    # enough that a loaded CI machine never turns a slow answer into a retry (a fifth request).
    url, behaviour = serve(delay_s=0.5)
    reward = remote(url, batch_size=2, max_concurrent=2, timeout_s=120.0)
    scores = reward.score(IMAGES, PROMPT)
    assert scores.tolist() == pytest.approx(colorfulness(IMAGES).tolist(), abs=1e-3)
    assert behaviour.requests == 4  # 7 images in batches of 2
    assert behaviour.max_in_flight == 2
    assert reward.images_seen == 7


def test_api_key_comes_from_the_named_environment_variable(serve, monkeypatch):
    from multireward.rewards.base import RewardError

    url, _ = serve(api_key="s3cret")
    monkeypatch.setenv("MULTIREWARD_TEST_KEY", "s3cret")
    assert remote(url, api_key_env="MULTIREWARD_TEST_KEY").score(IMAGES, PROMPT).shape == (7,)
    monkeypatch.setenv("MULTIREWARD_TEST_KEY", "wrong")
    with pytest.raises(RewardError, match=r"refused the request: HTTP 401.*API key") as error:
        remote(url, api_key_env="MULTIREWARD_TEST_KEY").score(IMAGES, PROMPT)
    assert url in str(error.value) and "wrong" not in str(error.value)
    monkeypatch.delenv("MULTIREWARD_TEST_KEY")
    with pytest.raises(RewardError, match=r"'MULTIREWARD_TEST_KEY'.*not set"):
        remote(url, api_key_env="MULTIREWARD_TEST_KEY").score(IMAGES, PROMPT)


def test_a_server_that_is_down_fails_after_the_retries_naming_the_url():
    import socket

    from multireward.rewards.base import RewardError

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/score"
    reward = remote(url, retries=2, backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(RewardError, match=r"after 3 attempt\(s\): cannot reach the server") as error:
        reward.score(IMAGES[:2], PROMPT)
    assert url in str(error.value)
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 then 0.1
    assert reward.requests_sent == 3


def test_a_slow_server_times_out_after_the_retries(serve):
    from multireward.rewards.base import RewardError

    url, _ = serve(delay_s=1.0)
    with pytest.raises(RewardError, match=r"after 2 attempt\(s\): no answer within 0.2 s") as error:
        remote(url, timeout_s=0.2, retries=1).score(IMAGES[:2], PROMPT)
    assert url in str(error.value)


@pytest.mark.parametrize(
    ("fault", "message"),
    [("malformed", "not JSON"), ("no_scores", 'lacks a "scores" list'), ("error500", "HTTP 500")],
)
def test_malformed_answers_are_retried_then_reported(serve, fault, message):
    from multireward.rewards.base import RewardError

    url, behaviour = serve(fault=fault)
    with pytest.raises(RewardError, match=message) as error:
        remote(url, retries=2, max_concurrent=1).score(IMAGES[:3], PROMPT)
    assert url in str(error.value)
    assert behaviour.requests == 3


def test_a_wrong_number_of_scores_is_an_error_at_once(serve):
    from multireward.rewards.base import RewardError

    url, behaviour = serve(fault="wrong_count")
    with pytest.raises(RewardError, match="returned 4 scores for 3 images") as error:
        remote(url, retries=3, max_concurrent=1).score(IMAGES[:3], PROMPT)
    assert url in str(error.value) and behaviour.requests == 1


def test_a_server_warming_up_is_retried_until_it_answers(serve):
    url, behaviour = serve(fail_first=2)
    scores = remote(url, retries=2, max_concurrent=1, batch_size=8).score(IMAGES, PROMPT)
    assert scores.shape == (7,) and behaviour.requests == 3


def test_nan_scores_name_the_reward(serve):
    from multireward.rewards.base import RewardError

    url, _ = serve(fault="nan")
    with pytest.raises(RewardError, match="reward 'vlm-judge' gave non-finite scores"):
        remote(url, label="vlm-judge").score(IMAGES[:2], PROMPT)


def test_empty_prompt_is_refused_when_the_judge_needs_one(serve):
    from multireward.rewards.base import RewardError

    url, behaviour = serve()
    with pytest.raises(RewardError, match="prompt is empty"):
        remote(url).score(IMAGES[:2], "  ")
    assert behaviour.requests == 0
    assert remote(url, needs_prompt=False).score(IMAGES[:2], "").shape == (2,)


def test_remote_reward_node_scores_in_a_graph_next_to_another_reward(comfy, serve):
    url, _ = serve()
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 3, "color": 0x3366CC},
        },
        "2": {
            "class_type": "MultiReward_RemoteReward",
            "inputs": {
                "url": url,
                "label": "judge",
                "batch_size": 2,
                "max_concurrent": 2,
                "timeout_s": 5.0,
                "retries": 1,
                "backoff_s": 0.01,
                "api_key_env": "",
                "requires_prompt": True,
            },
        },
        "3": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": "colorfulness", "weights_file": "(none)", "dtype": "auto"},
        },
        "4": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {
                "images": ["1", 0],
                "reward": ["2", 0],
                "reward_2": ["3", 0],
                "prompt": "a blue square",
            },
        },
    }
    result = comfy.run(graph)
    table = result.output("4", 1)
    assert "judge" in table and "colorfulness" in table
    remote_scores = result.output_list("4", 0)
    assert remote_scores == pytest.approx([remote_scores[0]] * 3) and remote_scores[0] > 0
    graph["4"]["inputs"]["prompt"] = ""
    failed = comfy.run(graph, expect_success=False)
    assert not failed.success and "prompt is empty" in str(failed.error)


def test_remote_scores_equal_the_local_measure_on_png_rounded_images(serve):
    from multireward.rewards.colorfulness import colorfulness

    url, _ = serve()
    images = torch.rand(3, 8, 8, 3)
    rounded = (images * 255).round() / 255
    assert remote(url).score(images, PROMPT).tolist() == pytest.approx(
        colorfulness(rounded).tolist(), rel=1e-6
    )


def test_retry_waits_double_and_add_up_to_at_most_a_minute():
    from multireward.rewards.remote import MAX_TOTAL_BACKOFF_S, retry_waits

    assert MAX_TOTAL_BACKOFF_S == 60.0
    assert retry_waits(3, 5.0) == [5.0, 10.0, 20.0]
    assert retry_waits(3, 30.0) == [30.0, 30.0]  # the second shortened, the third dropped
    assert retry_waits(20, 600.0) == [60.0]
    assert retry_waits(20, 0.0) == [0.0] * 20
    assert retry_waits(0, 1.0) == []


@pytest.mark.parametrize(
    ("url", "other", "same"),
    [
        ("http://judge.example/score", "http://JUDGE.example:80/v2", True),
        ("https://judge.example/", "https://judge.example:443/x", True),
        ("http://judge.example/", "https://judge.example/", False),  # another scheme
        ("http://judge.example/", "http://judge.example:8080/", False),
        ("http://judge.example/", "http://judge.example.evil.test/", False),
        ("http://judge.example/", "http://judge.example:notaport/", False),
    ],
)
def test_same_origin_means_same_scheme_host_and_port(url, other, same):
    from multireward.rewards.remote import same_origin

    assert same_origin(url, other) is same


PASTED_KEYS = [
    "sk-proj-" + "9fQ2xLr7Tb" * 4,
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",  # GitHub's documented example token
    "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH",
    "5f4dcc3b5aa765d61d8327deb882cf99",
    "AKIAIOSFODNN7EXAMPLE",  # AWS's documented example access key id
]


@pytest.mark.parametrize("pasted_key", PASTED_KEYS)
def test_a_key_pasted_into_api_key_env_is_refused_and_never_repeated(pasted_key):
    import traceback

    from multireward.rewards.base import RewardError

    with pytest.raises(RewardError, match="not repeated here") as error:
        remote("http://127.0.0.1:9/", api_key_env=pasted_key)
    assert pasted_key not in "".join(traceback.format_exception(error.value))  # the chain included


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "hf_token", "JUDGE_KEY_2024", "MY_VLM_JUDGE_API_KEY"])
def test_an_unset_variable_name_is_named_in_the_error(name, monkeypatch):
    from multireward.rewards.base import RewardError

    monkeypatch.delenv(name, raising=False)
    with pytest.raises(RewardError, match=f"environment variable '{name}' is not set"):
        remote("http://127.0.0.1:9/", api_key_env=name)
    monkeypatch.setenv(name, "the-key")
    assert remote("http://127.0.0.1:9/", api_key_env=name).settings.api_key_env == name


class StopWhenAsked:
    """A host whose Cancel is an Event: the ModelManager stop check a remote reward is given."""

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def check_interrupt(self) -> None:
        if self.cancel.is_set():
            raise InterruptedError("cancelled")


def test_a_stop_ends_a_slow_request_at_once_and_frees_its_thread():
    from multireward.rewards.remote import RemoteHttpReward, RemoteSettings

    host = StopWhenAsked()
    with Judge(delay_s=60.0) as judge:
        reward = RemoteHttpReward(RemoteSettings(url=judge.url + "/", timeout_s=120.0), manager=host)

        cancelled_at = []

        def cancel_during_the_request():
            judge.wait_for_requests(1)
            time.sleep(0.2)
            cancelled_at.append(time.monotonic())
            host.cancel.set()

        threading.Thread(target=cancel_during_the_request, daemon=True).start()
        with pytest.raises(InterruptedError):
            reward.score(IMAGES[:2], PROMPT)
        stopped = time.monotonic()
        assert stopped - cancelled_at[0] < 1.0
        while any(t.name.startswith("remote-reward") for t in threading.enumerate()):
            assert time.monotonic() - stopped < 1.0, "a worker still waits on the judge"
            time.sleep(0.01)
